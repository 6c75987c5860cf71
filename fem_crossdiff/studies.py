r"""Verification studies: continuous versus discrete adjoint, and mesh/time refinement.

Commands (added to ``fem-crossdiff`` by :func:`add_commands`):

* ``adjoint-study``: the gradient :math:`\nabla J` of the learning functional from pyadjoint (discrete
  adjoint), from the hand-derived continuous adjoint (:mod:`fem_crossdiff.adjoint`) and from central finite
  differences, on sequences of meshes and time steps; relative gaps, observed orders, costs, a log-log plot.
* ``refinement-study``: errors and observed orders in :math:`h` and :math:`\tau` against the manufactured
  solution for every time scheme, self-convergence on a real image, self-convergence of :math:`J` and
  :math:`\nabla J`, and the model on an unstructured gmsh mesh of a region of interest.

Outputs (PNG, JSON) go to ``out/demos/`` by default.
"""
import inspect
import json
import os
import time as _time

import numpy as np

__all__ = ["OUT", "STUDY_MODELS", "study_pair", "study_model", "gradients", "adjoint_study", "adjoint_tables",
           "plot_adjoint_study", "refinement_study", "plot_refinement_study", "roi_mesh", "roi_denoise",
           "add_commands", "eoc", "format_table"]

OUT = os.path.join("out", "demos")


def eoc(errors):
    """Observed orders :math:`\\log_2(e_{k-1}/e_k)` for errors at successively halved sizes (here, not in
    :mod:`~fem_crossdiff.refinement`, so that the CLI imports this module before PETSc starts)."""
    e = np.asarray(errors, dtype=float)
    return np.log2(e[:-1] / e[1:])


def format_table(headers, rows, floatfmt=".3e"):
    """Plain-text table: ``rows`` of values (floats formatted with ``floatfmt``, one format or one per column;
    None shown as "-")."""
    fmts = list(floatfmt) if isinstance(floatfmt, (list, tuple)) else [floatfmt] * len(headers)

    def cell(x, fmt):
        if x is None or (isinstance(x, (float, np.floating)) and not np.isfinite(x)):
            return "-"
        if isinstance(x, (float, np.floating)):
            return format(float(x), fmt or ".3e")
        return str(x)
    cells = [[cell(x, f) for x, f in zip(row, fmts)] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    line = lambda vals: "  ".join(str(v).rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


#: Models of the adjoint study (see :func:`study_model`).
STUDY_MODELS = ("learned-v", "learned", "learned-modulated", "learned-reacting", "nonlinear-cross")
HERE = os.path.dirname(os.path.abspath(__file__))
MESHES = os.path.join(os.path.dirname(HERE), "meshes")


# ------------------------------------------------------------------------------ data and models
def study_pair(image="coins", size=32, origin=(128, 128), sigma255=25.0, seed=0):
    """(clean, noisy): a ``size``² crop at ``origin`` (row, col) of a bundled picture, Gaussian noise σ/255."""
    from .data import load, noisy_pair
    img = load(image)
    r, c = origin
    clean = np.ascontiguousarray(img[r:r + size, c:c + size])
    if clean.shape != (size, size):
        raise ValueError(f"crop {size}² at {origin} does not fit image '{image}' of shape {img.shape}")
    return noisy_pair(clean, sigma255, seed)


def study_model(name="learned-v", centres=5, time=2.0, steps=8):
    r"""A two-stage learned-type model with generic (perturbed) parameters, or nonlinear-cross.

    * ``"learned"``: :func:`~fem_crossdiff.learning.learned_template` as is — :math:`g_{11}(|\nabla u|)`
      Perona–Malik-like, :math:`g_{22}(v)` — with :math:`\rho,\beta,\lambda,\mu,d_{22}` and the RBF weights
      perturbed;
    * ``"learned-v"``: the same with :math:`g_{11}` an RBF of :math:`v` too (fitted to
      :math:`1/(1+(v/0.08)^2)`), the structure of Gilboa's NCDF and of the Araújo et al. models;
    * ``"learned-modulated"``: ``"learned"`` with the factor :math:`h_{11}(v)` of the :math:`u`-diffusivity
      (:func:`~fem_crossdiff.learning.with_modulation`, weights nonzero);
    * ``"learned-reacting"``: ``"learned-modulated"`` with the reaction :math:`\psi(v)` in the :math:`u`-equation
      (:func:`~fem_crossdiff.learning.with_psi`, signed weights nonzero);
    * ``"nonlinear-cross"``: Araújo et al.'s model with reaction, one stage.
    """
    from .learning import FLOOR, fit_rbf, learned_template, with_psi
    from .models import CrossDiffusionModel, Influence, make_model
    if name == "nonlinear-cross":
        return make_model("nonlinear-cross", d11=1.0, d12=-0.2, d21=0.3, d22=0.6, k=0.05, lam=0.1, mu=0.2,
                          time=time, steps=steps)
    if name not in STUDY_MODELS:
        raise ValueError(f"unknown study model '{name}'; expected one of {', '.join(STUDY_MODELS)}")
    d = learned_template(stages=2, centres=centres, time=time, steps=steps,
                         modulation=centres if name in ("learned-modulated", "learned-reacting") else 0)
    d = (with_psi(d, centres) if name == "learned-reacting" else d).to_dict()
    d.pop("certificate")
    d.pop("format", None)
    if name == "learned-v":
        g = Influence("rbf", "v", floor=FLOOR, centres=centres, span=0.2)
        d["g11"] = dict(g.__dict__)
        w = fit_rbf(g, lambda s: 1 / (1 + (s / 0.08) ** 2))
        for st in d["stages"]:
            st["w11"] = w.tolist()
    bump = lambda w, a: (np.asarray(w) + a * np.linspace(0.5, 1.0, len(w))).tolist()  # noqa: E731
    s0, s1 = d["stages"][0], d["stages"][1]
    s0.update(rho=0.2, lam=0.1, mu=0.2, w11=bump(s0["w11"], 0.05), w22=bump(s0["w22"], 0.1))
    s1.update(d22=0.7, beta=-0.3, lam=0.05, mu=0.1, w11=bump(s1["w11"], 0.1), w22=bump(s1["w22"], 0.05))
    if name in ("learned-modulated", "learned-reacting"):
        s0.update(w11h=bump(s0["w11h"], 0.3))
        s1.update(w11h=bump(s1["w11h"], 0.6))
    if name == "learned-reacting":
        s0.update(wpsi=bump(s0["wpsi"], -0.5))
        s1.update(wpsi=(-np.asarray(bump(s1["wpsi"], 0.4))[::-1]).tolist())
    d["name"] = f"study-{name}"
    return CrossDiffusionModel.from_dict(d, name)


# ---------------------------------------------------------------------------------- adjoint study
def gradients(model, clean, noisy, *, refine=0, steps=8, scheme="semi-implicit", adjoint_theta=1.0,
              state_term="explicit", fd=False, eps=1e-6):
    """J and its gradient three ways on one (h, τ) level, with the wall time of each method."""
    from .adjoint import GradientProblem, relative_gap
    gp = GradientProblem(model, clean, noisy, refine=refine, steps=steps, scheme=scheme,
                         adjoint_theta=adjoint_theta, state_term=state_term)
    t0 = _time.perf_counter()
    gp.loss()
    t_forward = _time.perf_counter() - t0
    J, gd = gp.discrete_gradient()
    _, gc = gp.continuous_gradient()
    gf = gp.fd_gradient(eps=eps) if fd else None
    return dict(refine=refine, steps=steps, scheme=scheme, h=2.0 ** -refine, tau=gp.ev.time / steps, J=J,
                disc=gd, cont=gc, fd=gf, gap=relative_gap(gc, gd),
                gap_fd=relative_gap(gd, gf) if fd else None, gap_cont_fd=relative_gap(gc, gf) if fd else None,
                t_forward=t_forward, t_disc=gp.timings["discrete"], t_cont=gp.timings["continuous"],
                t_fd=gp.timings.get("fd"))


def adjoint_study(model, clean, noisy, *, steps0=4, dt_levels=5, h_levels=3, h_steps=16, joint_levels=3,
                  cn_levels=4, fd_refine=0, fd_steps=8, state_term="explicit", log=print):
    r"""Gradients on four sequences of levels; returns ``{series: [level dicts]}``.

    * ``dt``: refine 0, steps ``steps0·2^k`` (gap expected :math:`O(\tau)`);
    * ``h``: steps ``h_steps``, refine 0..h_levels-1 (gap expected to tend to a non-zero :math:`C_0\tau`);
    * ``joint``: refine r, steps ``steps0·2^r`` (gap :math:`O(\tau) = O(h)` → 0);
    * ``cn``: Crank–Nicolson state and adjoint (θ = ½, :math:`D'` implicit), refine 0 (gap :math:`O(\tau^2)`).

    Finite differences on the levels with refine ≤ ``fd_refine`` and steps ≤ ``fd_steps``.
    """
    cache = {}

    def level(refine, steps, scheme="semi-implicit"):
        key = (refine, steps, scheme)
        if key not in cache:
            cn = scheme == "crank-nicolson"
            cache[key] = gradients(model, clean, noisy, refine=refine, steps=steps, scheme=scheme,
                                   adjoint_theta=0.5 if cn else 1.0, state_term="implicit" if cn else state_term,
                                   fd=refine <= fd_refine and steps <= fd_steps)
            r = cache[key]
            log(f"  {scheme:>14} refine {refine} steps {steps:4d}: gap {r['gap']:.3e}"
                + (f", disc-FD {r['gap_fd']:.1e}" if r["fd"] is not None else "")
                + f"  ({r['t_disc']:.2f} s discrete, {r['t_cont']:.2f} s continuous)")
        return cache[key]

    log("compiling (one throw-away level per scheme, so that the costs below exclude code generation) ...")
    gradients(model, clean, noisy, refine=0, steps=steps0, state_term=state_term)
    if cn_levels:
        gradients(model, clean, noisy, refine=0, steps=steps0, scheme="crank-nicolson", adjoint_theta=0.5,
                  state_term="implicit")
    res = {"dt": [level(0, steps0 * 2 ** k) for k in range(dt_levels)],
           "h": [level(r, h_steps) for r in range(h_levels)],
           "joint": [level(r, steps0 * 2 ** r) for r in range(joint_levels)],
           "cn": [level(0, steps0 * 2 ** k, "crank-nicolson") for k in range(cn_levels)]}
    return res


def _h_differences(levels):
    r""":math:`\|e_r - e_{r+1}\|/\|g_{disc}\|` with :math:`e = g_{cont} - g_{disc}` (how fast the gap settles in h)."""
    e = [lv["cont"] - lv["disc"] for lv in levels]
    ref = np.linalg.norm(levels[-1]["disc"])
    return np.array([np.linalg.norm(e[r] - e[r + 1]) / ref for r in range(len(e) - 1)])


def adjoint_tables(res):
    """The printed tables of :func:`adjoint_study` (gaps, observed orders, costs)."""
    out = []
    head = ["refine", "steps", "tau", "J", "|g_disc|", "gap c-d", "EOC", "disc-FD", "cont-FD",
            "t_fwd s", "t_disc s", "t_cont s", "t_FD s"]
    titles = {"dt": "time refinement, h = 1 pixel (semi-implicit state; implicit-Euler adjoint)",
              "h": "mesh refinement at fixed tau",
              "joint": "joint refinement (h, tau halved together)",
              "cn": "time refinement, Crank-Nicolson state and adjoint"}
    for key, levels in res.items():
        if not levels:
            continue
        gaps = np.array([lv["gap"] for lv in levels])
        rates = [None] + list(eoc(gaps)) if len(gaps) > 1 else [None]
        rows = [[lv["refine"], lv["steps"], lv["tau"], lv["J"], float(np.linalg.norm(lv["disc"])), lv["gap"], rt,
                 lv["gap_fd"], lv["gap_cont_fd"], lv["t_forward"], lv["t_disc"], lv["t_cont"], lv["t_fd"]]
                for lv, rt in zip(levels, rates)]
        table = format_table(head, rows, [None, None, ".4g", ".5e", ".3e", ".3e", ".2f", ".1e", ".1e",
                                          ".2f", ".2f", ".2f", ".2f"])
        out.append(f"\n{titles[key]}\n{table}")
        if key == "h" and len(levels) > 1:
            d = _h_differences(levels)
            r = [None] + list(eoc(d)) if len(d) > 1 else [None]
            out.append("  settling of the gap in h: ||e_r - e_{r+1}||/||g|| = "
                       + ", ".join(f"{x:.2e}" for x in d) + "   EOC " + ", ".join("-" if x is None else f"{x:.2f}"
                                                                          for x in r))
    return "\n".join(out)


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
            d = _h_differences(lv)
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _jsonable(res):
    def conv(x):
        if isinstance(x, np.ndarray):
            return x.tolist()
        if isinstance(x, (np.floating, np.integer)):
            return x.item()
        return x
    return {k: [{kk: conv(vv) for kk, vv in lv.items()} for lv in v] for k, v in res.items()}


#: Integer options of :func:`adjoint_study`: (least admissible value, meaning).
STUDY_COUNTS = {"steps0": (1, "coarsest number of time steps, T = 2"),
                "dt_levels": (1, "time refinements on the pixel mesh"),
                "h_levels": (1, "mesh refinements at fixed steps"),
                "h_steps": (1, "steps of the fixed-tau mesh refinement"),
                "joint_levels": (1, "joint refinements in h and tau"),
                "cn_levels": (0, "Crank-Nicolson time refinements, 0: none"),
                "fd_refine": (0, "finite differences on levels with refine <= this"),
                "fd_steps": (0, "... and steps <= this")}
#: Fewer levels for ``--quick`` (a 16² crop).
QUICK_LEVELS = dict(dt_levels=4, h_levels=3, h_steps=8, joint_levels=3, cn_levels=3)


def run_adjoint_study(model_name="learned-v", image="coins", size=32, sigma255=25.0, seed=0, out=OUT, quick=False,
                      log=print, **kwargs):
    """Build the model and data, run :func:`adjoint_study`, print the tables, save plot and JSON."""
    from .learning import pack
    os.makedirs(out, exist_ok=True)
    if quick:
        size = min(size, 16)
        kwargs = {**QUICK_LEVELS, **kwargs}
    model = study_model(model_name)
    clean, noisy = study_pair(image, size, sigma255=sigma255, seed=seed)
    log(f"adjoint study: model {model.name} ({len(model.stages)} stages, {len(pack(model))} parameters), "
        f"{image} crop {size}x{size}, sigma {sigma255:g}/255, T = {model.time:g}")
    t0 = _time.perf_counter()
    res = adjoint_study(model, clean, noisy, log=log, **kwargs)
    log(adjoint_tables(res))
    tag = f"adjoint_study_{model_name}"
    png = plot_adjoint_study(res, os.path.join(out, tag + ".png"),
                             f"{model.name}: continuous vs discrete adjoint ({image} {size}², σ={sigma255:g})")
    with open(os.path.join(out, tag + ".json"), "w") as fh:
        json.dump(_jsonable(res), fh)
    log(f"\nwrote {png} and {tag}.json  ({_time.perf_counter() - t0:.0f} s)")
    return res


# ------------------------------------------------------------------------------- refinement study
def refinement_study(quick=False, image="coins", size=16, log=print):
    r"""Errors and EOCs in h and τ: manufactured solution (every scheme), real image, J and ∇J.

    Returns a dict of named series ``{name: (sizes, errors, expected order)}``.
    """
    from .refinement import (functional_convergence, mms_model, self_convergence_image, space_convergence,
                             time_convergence, time_self_convergence_image)
    from .data import check_image_name
    from .timestepping import SCHEMES
    check_image_name(image)                                 # before the manufactured-solution runs, not after
    L = 3 if quick else 4
    series = {}

    def record(name, sizes, errs, order, kind):
        series[name] = dict(sizes=np.asarray(sizes, float), errors=np.asarray(errs, float), order=order, kind=kind)

    mms = mms_model("nonlinear-cross")
    rows = []
    for scheme in SCHEMES:
        t0 = _time.perf_counter()
        e = space_convergence(mms, scheme, levels=L)
        record(f"MMS h, {scheme} (L2)", 0.25 * 2.0 ** -np.arange(L), e, 2, "h")
        rows.append([scheme, "L2, tau ~ h" + ("" if scheme == "crank-nicolson" else "^2"), *_fmt_rates(e), 2,
                     _time.perf_counter() - t0])
    t0 = _time.perf_counter()
    e = space_convergence(mms, "crank-nicolson", levels=L, norm="H1")
    record("MMS h, crank-nicolson (H1)", 0.25 * 2.0 ** -np.arange(L), e, 1, "h")
    rows.append(["crank-nicolson", "H1 seminorm", *_fmt_rates(e), 1, _time.perf_counter() - t0])
    log("\nManufactured solution (nonlinear-cross with reaction), error at T vs h  [4x4 cells x 2^r]")
    log(format_table(["scheme", "norm", "errors", "EOC", "expected", "time s"], rows,
                     [None, None, None, None, None, ".1f"]))

    rows = []
    for scheme, order in (("semi-implicit", 1), ("implicit", 1), ("crank-nicolson", 2)):
        t0 = _time.perf_counter()
        d = time_convergence(mms, scheme, levels=L)
        record(f"MMS tau, {scheme}", 0.25 * 2.0 ** -np.arange(L), d, order, "tau")
        rows.append([scheme, *_fmt_rates(d), order, _time.perf_counter() - t0])
    log("\nManufactured solution, time self-convergence ||w_tau - w_tau/2|| at T (refine 1)")
    log(format_table(["scheme", "differences", "EOC", "expected", "time s"], rows, [None] * 4 + [".1f"]))

    img, noisy = study_pair(image, size)
    model = study_model("nonlinear-cross")
    rows = []
    Lh = 2 if quick else 3
    for scheme in SCHEMES:
        t0 = _time.perf_counter()
        d = self_convergence_image(img, model, levels=Lh, scheme=scheme, steps=8)
        record(f"image h, {scheme}", 2.0 ** -np.arange(Lh), d, 2, "h")
        dt = time_self_convergence_image(img, model, scheme, levels=L - 1, steps0=4)
        record(f"image tau, {scheme}", 0.5 * 2.0 ** -np.arange(L - 1), dt, 2 if scheme == "crank-nicolson" else 1,
               "tau")
        rows.append([scheme, *_fmt_rates(d), *_fmt_rates(dt), _time.perf_counter() - t0])
    t0 = _time.perf_counter()
    d = self_convergence_image(img, model, levels=Lh, scheme="crank-nicolson", steps=8, dt_factor=2)
    record("image h, crank-nicolson, tau ~ h", 2.0 ** -np.arange(Lh), d, 2, "h")
    rows.append(["crank-nicolson, tau ~ h", *_fmt_rates(d), "", "", _time.perf_counter() - t0])
    log(f"\nReal image ({image} {size}x{size} crop, nonlinear-cross, T=2): self-convergence "
        "||w_h - w_h/2|| (8 steps) and ||w_tau - w_tau/2|| (refine 0)")
    log(format_table(["scheme", "h: differences", "EOC", "tau: differences", "EOC", "time s"], rows,
                     [None, None, None, None, None, ".1f"]))

    lm = study_model("learned-v")
    t0 = _time.perf_counter()
    fh = functional_convergence(lm, img, noisy, "h", levels=Lh, steps=8)
    ft = functional_convergence(lm, img, noisy, "dt", levels=L - 1, steps=4)
    record("J h", 2.0 ** -np.arange(Lh), fh["dJ"], 2, "h")
    record("dJ h", 2.0 ** -np.arange(Lh), fh["dg"], 2, "h")
    record("J tau", 0.5 * 2.0 ** -np.arange(L - 1), ft["dJ"], 1, "tau")
    record("dJ tau", 0.5 * 2.0 ** -np.arange(L - 1), ft["dg"], 1, "tau")
    rows = [["J, h (8 steps)", *_fmt_rates(fh["dJ"]), 2], ["grad J, h", *_fmt_rates(fh["dg"]), 2],
            ["J, tau (refine 0)", *_fmt_rates(ft["dJ"]), 1], ["grad J, tau", *_fmt_rates(ft["dg"]), 1]]
    log(f"\nLearning functional (model {lm.name}, {image} {size}x{size}, sigma 25): |J_k - J_k+1| and "
        f"||g_k - g_k+1||/||g|| (pyadjoint)   [{_time.perf_counter() - t0:.1f} s]")
    log(format_table(["quantity", "differences", "EOC", "expected"], rows))
    return series


def _fmt_rates(e):
    e = np.asarray(e, float)
    return " ".join(f"{x:.2e}" for x in e), " ".join(f"{x:5.2f}" for x in eoc(e))


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
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------- region of interest
def roi_mesh(path=None):
    """The unstructured all-quad gmsh mesh ``meshes/roi_disc.msh`` (coins pixel coordinates), ready for
    :class:`~fem_crossdiff.timestepping.Evolution` (``image_shape`` set to the coins picture's)."""
    import firedrake as fd
    from .data import load
    path = path or os.path.join(MESHES, "roi_disc.msh")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: not found; make it with `python meshes/make_meshes.py` (needs gmsh)")
    mesh = fd.Mesh(path)
    mesh.image_shape = load("coins").shape
    return mesh


def _roi_pixels(shape, centre=(207.0, 107.0), radius=36.0, margin=1.0):
    """(rows, cols, xy) of the pixel centres at distance ≤ radius − margin from the ROI centre."""
    H, W = shape
    rows, cols = np.mgrid[0:H, 0:W]
    x, y = cols.astype(float), (H - 1 - rows).astype(float)
    inside = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= (radius - margin) ** 2
    return rows[inside], cols[inside], np.c_[x[inside], y[inside]]


def roi_denoise(model="perona-malik", levels=2, sigma255=25.0, seed=0, out=OUT, compare_full=True, log=print,
                path=None):
    r"""Denoise the disc-shaped region of interest of ``coins`` on its own unstructured mesh and its uniform
    refinements (``firedrake.MeshHierarchy``, ``levels`` times, h ≈ 1.5·2^-l pixels).

    The noisy picture enters as its bilinear interpolant at the mesh vertices, the ROI boundary gets the
    natural (no-flux) condition. PSNR is measured at the pixel centres inside the disc (point evaluation on a
    ``VertexOnlyMesh``) on every level, beside the self-convergence :math:`\|u_l - P u_{l-1}\|_{L^2}` (P the
    exact Q1 prolongation) and the same model run on the whole picture's structured pixel mesh.
    """
    import firedrake as fd
    from .data import load, noisy_pair
    from .models import make_model
    from .images import image_to_function
    from .timestepping import Evolution, denoise
    psnr = lambda a, b: float(10 * np.log10(1.0 / np.mean((np.asarray(a) - np.asarray(b)) ** 2)))  # noqa: E731
    clean, noisy = noisy_pair(load("coins"), sigma255, seed)
    m = make_model(model) if isinstance(model, str) else model
    hierarchy = fd.MeshHierarchy(roi_mesh(path), levels)
    rows, cols, xy = _roi_pixels(clean.shape)
    c, f = clean[rows, cols], noisy[rows, cols]
    res = dict(model=m.name, pixels=len(xy), psnr_noisy=psnr(c, f), levels=[])
    prev = None
    for lvl, mesh in enumerate(hierarchy):
        mesh.image_shape = clean.shape
        t0 = _time.perf_counter()
        ev = Evolution(m, mesh)
        u = fd.Function(ev.V).interpolate(ev.run(image_to_function(noisy, ev.V))[0])
        elapsed = _time.perf_counter() - t0
        vom = fd.VertexOnlyMesh(mesh, xy, redundant=True)
        at_vom = fd.Function(fd.FunctionSpace(vom, "DG", 0)).interpolate(u)
        pix = fd.Function(fd.FunctionSpace(vom.input_ordering, "DG", 0)).interpolate(at_vom).dat.data_ro.copy()
        diff = None
        if prev is not None:
            fine = fd.Function(ev.V)
            fd.prolong(prev, fine)
            diff = fd.errornorm(u, fine)
        res["levels"].append(dict(level=lvl, cells=mesh.num_cells(), vertices=mesh.num_vertices(),
                                  psnr=psnr(c, pix), self_diff=diff, time=elapsed))
        prev = u
    if compare_full:
        t0 = _time.perf_counter()
        full = denoise(noisy, m)
        res.update(psnr_full=psnr(c, full[rows, cols]), time_full=_time.perf_counter() - t0,
                   roi_vs_full=float(np.sqrt(np.mean((pix - full[rows, cols]) ** 2))))
    rows_t = [[lv["level"], lv["cells"], lv["vertices"], lv["psnr"], lv["self_diff"], lv["time"]]
              for lv in res["levels"]]
    diffs = [lv["self_diff"] for lv in res["levels"][1:]]
    log(f"\nRegion of interest: disc r=36 px in coins (meshes/roi_disc.msh, gmsh all-quad, refined uniformly), "
        f"model {m.name}, sigma {sigma255:g}; PSNR at the {len(xy)} ROI pixel centres (noisy "
        f"{res['psnr_noisy']:.2f} dB)")
    log(format_table(["level", "quads", "vertices", "PSNR dB", "||u_l - P u_l-1||", "time s"], rows_t,
                     [None, None, None, ".2f", ".3e", ".2f"]))
    if len(diffs) > 1:
        log("  self-convergence EOC: " + ", ".join(f"{x:.2f}" for x in eoc(diffs)))
    if compare_full:
        log(f"  same model on the whole {clean.shape[0]}x{clean.shape[1]} picture (pixel mesh): PSNR on the ROI "
            f"pixels {res['psnr_full']:.2f} dB ({res['time_full']:.1f} s); RMS difference to the finest ROI run "
            f"{res['roi_vs_full']:.4f}")
    if out:
        os.makedirs(out, exist_ok=True)
        _plot_roi(hierarchy[0], noisy, prev, os.path.join(out, "roi_denoise.png"), res)
    return res


def _plot_roi(base, noisy, u, path, res):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from firedrake.pyplot import tripcolor, triplot
    from .images import image_to_function
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


# ------------------------------------------------------------------------------------------- CLI
def add_commands(sub):
    s = sub.add_parser("adjoint-study", help="continuous vs discrete adjoint vs finite differences under refinement")
    s.add_argument("--model", default="learned-v", choices=STUDY_MODELS)
    s.add_argument("--image", default="coins")
    s.add_argument("--size", type=int, default=32, help="crop size in pixels (default 32)")
    s.add_argument("--sigma", type=float, default=25.0)
    defaults = inspect.signature(adjoint_study).parameters
    for name, (least, text) in STUDY_COUNTS.items():
        quick = f"; --quick: {QUICK_LEVELS[name]}" if name in QUICK_LEVELS else ""
        s.add_argument("--" + name.replace("_", "-"), type=int,
                       help=f"{text} (default {defaults[name].default}{quick}; at least {least})")
    s.add_argument("--state-term", default="explicit", choices=["explicit", "implicit"],
                   help="D'(w) term of the implicit-Euler adjoint (default explicit)")
    s.add_argument("--quick", action="store_true", help="16x16 crop, fewer levels (unless given)")
    s.add_argument("--out", default=OUT)
    s.set_defaults(func=_cmd_adjoint_study)

    s = sub.add_parser("refinement-study", help="errors and observed orders in h and dt (MMS, real image, J, grad J)")
    s.add_argument("--quick", action="store_true", help="fewer levels")
    s.add_argument("--image", default="coins")
    s.add_argument("--no-roi", action="store_true", help="skip the gmsh region-of-interest run")
    s.add_argument("--out", default=OUT)
    s.set_defaults(func=_cmd_refinement_study)


def _cmd_adjoint_study(args):
    from .cli import check_counts
    counts = {name: getattr(args, name) for name in STUDY_COUNTS if getattr(args, name) is not None}
    check_counts(**{name: (value, STUDY_COUNTS[name][0]) for name, value in counts.items()})
    run_adjoint_study(args.model, args.image, args.size, args.sigma, out=args.out, quick=args.quick,
                      state_term=args.state_term, **counts)


def _cmd_refinement_study(args):
    os.makedirs(args.out, exist_ok=True)
    t0 = _time.perf_counter()
    series = refinement_study(quick=args.quick, image=args.image)
    png = plot_refinement_study(series, os.path.join(args.out, "refinement_study.png"))
    if not args.no_roi:
        roi_denoise(out=args.out, compare_full=not args.quick)
    print(f"\nwrote {png}  ({_time.perf_counter() - t0:.0f} s)")
