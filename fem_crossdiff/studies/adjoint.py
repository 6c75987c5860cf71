r"""The adjoint study: the gradient :math:`\nabla J` of the learning functional from pyadjoint (discrete adjoint),
from the hand-derived continuous adjoint (:mod:`.continuous_adjoint`) and from central finite differences, on
sequences of meshes and time steps; relative gaps, observed orders, costs, a log-log plot
(``fem-crossdiff adjoint-study``; results in ``demos/STUDIES.md``)."""
import json
import os
import time as _time

import numpy as np

from ..learning.parametrisation import pack
from .cases import OUT, QUICK_LEVELS, STUDY_LEVELS, study_model, study_pair
from .continuous_adjoint import GradientProblem, relative_gap
from .plots import plot_adjoint_study
from .tables import eoc, format_table, h_differences, jsonable

__all__ = ["gradients", "adjoint_study", "adjoint_tables", "run_adjoint_study"]


def gradients(model, clean, noisy, *, refine=0, steps=8, scheme="semi-implicit", adjoint_theta=1.0,
              state_term="explicit", fd=False, eps=1e-6):
    """J and its gradient three ways on one (h, τ) level, with the wall time of each method."""
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


def adjoint_study(model, clean, noisy, *, steps0=STUDY_LEVELS["steps0"], dt_levels=STUDY_LEVELS["dt_levels"],
                  h_levels=STUDY_LEVELS["h_levels"], h_steps=STUDY_LEVELS["h_steps"],
                  joint_levels=STUDY_LEVELS["joint_levels"], cn_levels=STUDY_LEVELS["cn_levels"],
                  fd_refine=STUDY_LEVELS["fd_refine"], fd_steps=STUDY_LEVELS["fd_steps"], state_term="explicit",
                  log=print):
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
            d = h_differences(levels)
            r = [None] + list(eoc(d)) if len(d) > 1 else [None]
            out.append("  settling of the gap in h: ||e_r - e_{r+1}||/||g|| = "
                       + ", ".join(f"{x:.2e}" for x in d) + "   EOC " + ", ".join("-" if x is None else f"{x:.2f}"
                                                                          for x in r))
    return "\n".join(out)





def run_adjoint_study(model_name="learned-v", image="coins", size=32, sigma255=25.0, seed=0, out=OUT, quick=False,
                      log=print, **kwargs):
    """Build the model and data, run :func:`adjoint_study`, print the tables, save plot and JSON."""
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
        json.dump(jsonable(res), fh)
    log(f"\nwrote {png} and {tag}.json  ({_time.perf_counter() - t0:.0f} s)")
    return res
