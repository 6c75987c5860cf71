"""The studies' figures (matplotlib, Agg): computation lives in the study modules, drawing here."""
import numpy as np

from .tables import eoc, h_differences

__all__ = ["plot_adjoint_study", "plot_refinement_study", "plot_roi"]


def plot_adjoint_study(res, path, title=""):
    """Log-log plot of the gaps against τ (left) and h (right), with reference slopes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.3))
    for key, style, label in (("dt", "o-", "semi-implicit / implicit Euler"), ("cn", "s-", "Crank–Nicolson / CN")):
        lv = res.get(key) or []
        if lv:
            tau = np.array([x["tau"] for x in lv])
            gap = np.array([x["gap"] for x in lv])
            a.loglog(tau, gap, style, label=f"gap, {label}")
            p = 1 if key == "dt" else 2
            a.loglog(tau, gap[-1] * (tau / tau[-1]) ** p, "k:", lw=0.8)
            a.annotate(f"slope {p}", (tau[0], gap[-1] * (tau[0] / tau[-1]) ** p), fontsize=8)
    fdl = [x for x in (res.get("dt") or []) + (res.get("h") or []) if x["gap_fd"] is not None]
    if fdl:
        a.loglog([x["tau"] for x in fdl], [x["gap_fd"] for x in fdl], "x", ms=8, label="pyadjoint vs FD")
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator
    for ax, key in ((a, "tau"), (b, "h")):
        ticks = sorted({x[key] for v in res.values() for x in v})
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([f"{t:g}" for t in ticks]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    a.set_xlabel(r"$\tau$")
    a.set_ylabel(r"$\|g_{cont}-g_{disc}\|/\|g_{disc}\|$")
    a.legend(fontsize=8)
    a.grid(True, which="both", alpha=0.3)
    lv = res.get("h") or []
    if lv:
        h = np.array([x["h"] for x in lv])
        b.loglog(h, [x["gap"] for x in lv], "o-", label=rf"gap, fixed $\tau$ = {lv[0]['tau']:g}")
        if len(lv) > 1:
            d = h_differences(lv)
            b.loglog(h[1:], d, "^-", label=r"$\|e_h - e_{h/2}\|/\|g\|$ (settling)")
            b.loglog(h[1:], d[-1] * (h[1:] / h[-1]) ** 2, "k:", lw=0.8)
            b.annotate("slope 2", (h[1], d[-1] * (h[1] / h[-1]) ** 2), fontsize=8)
    lj = res.get("joint") or []
    if lj:
        h = np.array([x["h"] for x in lj])
        gj = np.array([x["gap"] for x in lj])
        b.loglog(h, gj, "s-", label=r"gap, joint ($\tau\propto h$)")
        b.loglog(h, gj[-1] * (h / h[-1]), "k--", lw=0.8)
        b.annotate("slope 1", (h[0], gj[-1] * h[0] / h[-1]), fontsize=8)
    b.set_xlabel("h (pixels)")
    b.legend(fontsize=8)
    b.grid(True, which="both", alpha=0.3)
    fig.suptitle(title or "continuous vs discrete adjoint gradient")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path



def plot_refinement_study(series, path):
    """Log-log panels: MMS in h, MMS in τ, real image, learning functional."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    groups = [("MMS h", "manufactured solution: error vs h", "h"), ("MMS tau", "manufactured: self-conv. in τ", "τ"),
              ("image", "real image: self-convergence", "h or τ"), ("J", "learning functional J, ∇J", "h or τ")]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    for ax, (prefix, title, xl) in zip(axes, groups):
        for name, s in series.items():
            if not (name.startswith(prefix) or (prefix == "J" and name.startswith("dJ"))):
                continue
            x, e = s["sizes"], s["errors"]
            ax.loglog(x, e, "o-" if s["kind"] == "h" else "s--", label=f"{name} (EOC {eoc(e)[-1]:.2f})")
            ax.loglog(x, e[-1] * (x / x[-1]) ** s["order"], "k:", lw=0.7)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xl)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path



def plot_roi(base, noisy, u, path, res):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from firedrake.pyplot import tripcolor, triplot
    from ..fem import image_to_function
    V = u.function_space()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    triplot(base, axes=axes[0], interior_kw=dict(linewidths=0.3), boundary_kw=dict(colors="r"))
    axes[0].set_title(f"gmsh ROI mesh, level 0 ({base.num_cells()} quads)")
    finest = res["levels"][-1]
    for ax, fun, t in ((axes[1], image_to_function(noisy, V), f"noisy ({res['psnr_noisy']:.2f} dB)"),
                       (axes[2], u, f"{res['model']}, level {finest['level']} ({finest['psnr']:.2f} dB)")):
        tripcolor(fun, axes=ax, cmap="gray", vmin=0, vmax=1)
        ax.set_title(t)
    for ax in axes:
        ax.set_aspect("equal")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
