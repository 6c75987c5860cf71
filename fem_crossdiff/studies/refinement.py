r"""The refinement study: errors and observed orders in :math:`h` and :math:`\tau` against the manufactured
solution for every time scheme, self-convergence on a real image, self-convergence of :math:`J` and
:math:`\nabla J` (``fem-crossdiff refinement-study``; results in ``demos/STUDIES.md``)."""
import time as _time

import numpy as np

from ..fem import SCHEMES
from ..imaging.data import check_image_name
from .cases import study_model, study_pair
from .manufactured import (functional_convergence, mms_model, self_convergence_image, space_convergence,
                           time_convergence, time_self_convergence_image)
from .tables import eoc, format_table

__all__ = ["refinement_study"]


def refinement_study(quick=False, image="coins", size=16, log=print):
    r"""Errors and EOCs in h and τ: manufactured solution (every scheme), real image, J and ∇J.

    Returns a dict of named series ``{name: (sizes, errors, expected order)}``.
    """
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
    for scheme, order in (("semi-implicit", 1), ("implicit", 1), ("crank-nicolson", 2), ("split", 1)):
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
