r"""Mesh/time refinement: manufactured solutions, self-convergence, observed orders of convergence (EOC).

Refining the structured mesh keeps the rectangle and the image (its bilinear interpolant), so every level
discretises the same continuum problem. With errors :math:`e_k` at sizes :math:`h_k = h_0 2^{-k}` (or
:math:`\tau_k`), :math:`\mathrm{EOC}_k = \log_2(e_{k-1}/e_k)`. Self-convergence uses
:math:`e_k = \|w_k - w_{k+1}\|` (successive differences), whose ratios show the same order.

Manufactured solution (Neumann-compatible on :math:`[0,L]^2`, :math:`c_m = \cos(m\pi x/L)`, :math:`v(0)=0`):

.. math:: u^* = e^{-t/2}\big(\tfrac12 + \tfrac14 c_1(x)c_1(y)\big),\qquad
          v^* = \tfrac15\sin(t)\,c_1(x)c_2(y),

with the source :math:`s = \partial_t w^* - \nabla\cdot(D(w^*)\nabla w^*) - R(w^*, f)` computed by UFL.

Functions: :func:`space_convergence` / :func:`time_convergence` (MMS, every time scheme; L² or H¹ errors),
:func:`self_convergence_image` / :func:`time_self_convergence_image` (a real image, in h and in τ),
:func:`functional_convergence` (the learning functional :math:`J` and its pyadjoint gradient).
``fem-crossdiff refinement-study`` (:mod:`.refinement_study`) runs them all.
"""
import math

import numpy as np
import ufl
import firedrake as fd

from ..fem import Evolution, image_mesh, image_to_function, pixel_space, prolong
from ..model import make_model
from .continuous_adjoint import GradientProblem

__all__ = ["manufactured", "mms_model", "mms_error", "space_convergence", "time_convergence",
           "self_convergence_image", "time_self_convergence_image", "functional_convergence", "STUDY_SOLVER"]


#: Tight tolerances so that solver error never pollutes an observed order.
STUDY_SOLVER = {"ksp_rtol": 1e-12, "ksp_atol": 1e-15, "snes_rtol": 1e-12, "snes_atol": 1e-14}


def _scalar_space(w):
    """The scalar Q1 space on the mesh of ``w``."""
    return pixel_space(w.function_space().mesh())


def manufactured(mesh, t):
    """UFL :math:`w^*(x, t)` on ``mesh`` (domain ``[0, L]``²), ``t`` a UFL scalar."""
    x, y = ufl.SpatialCoordinate(mesh)
    H, W = mesh.image_shape
    Lx, Ly = W - 1.0, H - 1.0
    c = lambda m, s, L: ufl.cos(m * math.pi * s / L)  # noqa: E731
    u = ufl.exp(-t / 2) * (0.5 + 0.25 * c(1, x, Lx) * c(1, y, Ly))
    v = 0.2 * ufl.sin(t) * c(1, x, Lx) * c(2, y, Ly)
    return ufl.as_vector([u, v])


def _source(t, dm, f):
    """:math:`s = \\partial_t w^* - \\nabla\\cdot(D(w^*)\\nabla w^*) - R(w^*, f)` (single stage)."""
    tv = ufl.variable(t)
    w = manufactured(dm.mesh, tv)
    return ufl.diff(w, tv) - ufl.div(ufl.dot(dm.D(w, 0), ufl.grad(w))) - dm.reaction(w, f, 0)


def mms_model(name="nonlinear-cross"):
    """The model used for manufactured solutions: nonlinear, cross-coupled, with reaction."""
    if name == "nonlinear-cross":
        return make_model(name, d11=1.0, d12=-0.2, d21=0.3, d22=0.6, k=0.15, lam=0.5, mu=0.3, time=0.5, steps=4)
    if name == "perona-malik":
        return make_model(name, k=0.3, lam=0.5, time=0.5, steps=4)
    return make_model(name, time=0.5, steps=4)


def mms_error(model, refine, steps, scheme, cells=4, time=0.5, norm="L2"):
    """:math:`\\|w_h(T) - w^*(T)\\|` (``norm`` "L2" or "H1" seminorm) on the mesh with ``cells·2**refine``
    cells per side."""
    mesh = image_mesh((cells + 1, cells + 1), refine)
    ev = Evolution(model, mesh, time=time, steps=steps, scheme=scheme, solver_parameters=STUDY_SOLVER,
                   source=_source, quadrature_degree=4)
    w0 = fd.Function(ev.W).interpolate(manufactured(mesh, 0.0))
    ev.set_initial(fd.Function(ev.V).interpolate(w0[0]))
    ev.run()
    return fd.errornorm(manufactured(mesh, fd.Constant(time)), ev.w, norm_type=norm)


def space_convergence(model, scheme="crank-nicolson", levels=4, steps0=4, cells=4, time=0.5, dt_factor=None,
                      norm="L2"):
    """MMS errors for refine = 0..levels-1, the time step divided by ``dt_factor`` whenever h is halved.

    Default ``dt_factor``: 2 for Crank–Nicolson (:math:`\\tau\\propto h`), 4 for the first-order schemes
    (:math:`\\tau\\propto h^2`), so that the time error never hides the :math:`O(h^2)` L² error in space.
    """
    factor = dt_factor or (2 if scheme == "crank-nicolson" else 4)
    errs = [mms_error(model, r, steps0 * factor ** r, scheme, cells, time, norm) for r in range(levels)]
    return np.array(errs)


def time_convergence(model, scheme, levels=4, steps0=2, refine=1, cells=4, time=0.5):
    """Time self-convergence on one mesh: :math:`\\|w_{\\tau} - w_{\\tau/2}\\|` for τ = T/steps0 · 2^-k."""
    mesh = image_mesh((cells + 1, cells + 1), refine)
    finals = []
    for k in range(levels + 1):
        ev = Evolution(model, mesh, time=time, steps=steps0 * 2 ** k, scheme=scheme,
                       solver_parameters=STUDY_SOLVER, source=_source, quadrature_degree=4)
        w0 = fd.Function(ev.W).interpolate(manufactured(mesh, 0.0))
        ev.set_initial(fd.Function(ev.V).interpolate(w0[0]))
        finals.append(fd.Function(ev.run()))
    return np.array([fd.errornorm(finals[k + 1], finals[k]) for k in range(levels)])


def self_convergence_image(img, model, levels=3, scheme="semi-implicit", steps=None, dt_factor=1):
    """Space self-convergence on a real image: :math:`\\|w_h - w_{h/2}\\|_{L^2}`, the coarse solution
    prolonged exactly to the finer mesh (nested Q1 spaces) and compared there. The number of steps is
    multiplied by ``dt_factor`` whenever h is halved (1: fixed τ)."""
    sols = []
    steps = model.steps if steps is None else steps
    for r in range(levels + 1):
        mesh = image_mesh(img.shape, r)
        ev = Evolution(model, mesh, steps=steps * dt_factor ** r, scheme=scheme, solver_parameters=STUDY_SOLVER)
        sols.append(fd.Function(ev.run(image_to_function(img, ev.V))))
    diffs = []
    for r in range(levels):
        fine = sols[r + 1]
        coarse = [prolong(fd.Function(_scalar_space(sols[r])).interpolate(sols[r][i]), _scalar_space(fine))
                  for i in range(2)]
        diffs.append(math.sqrt(sum(fd.errornorm(fine[i], coarse[i]) ** 2 for i in range(2))))
    return np.array(diffs)


def time_self_convergence_image(img, model, scheme="semi-implicit", levels=3, steps0=4, refine=0, time=None):
    """Time self-convergence on a real image: :math:`\\|w_\\tau(T) - w_{\\tau/2}(T)\\|_{L^2}` for
    :math:`\\tau = T/(\\text{steps0}\\,2^k)`, :math:`k = 0..\\text{levels}-1`, on one mesh."""
    mesh = image_mesh(img.shape, refine)
    finals = []
    for k in range(levels + 1):
        ev = Evolution(model, mesh, time=time, steps=steps0 * 2 ** k, scheme=scheme, solver_parameters=STUDY_SOLVER)
        finals.append(fd.Function(ev.run(image_to_function(img, ev.V))))
    return np.array([fd.errornorm(finals[k + 1], finals[k]) for k in range(levels)])


def functional_convergence(model, clean, noisy, direction="h", levels=3, steps=8, refine=0, scheme="semi-implicit"):
    r"""Self-convergence of the learning functional :math:`J` and of its (pyadjoint) gradient.

    ``direction="h"``: refine = ``refine`` .. ``refine+levels`` at fixed ``steps``; ``"dt"``: steps
    ``steps·2^k`` on the mesh ``refine``. Returns a dict with the values ``J``, the gradients ``g`` and the
    successive differences ``dJ`` = :math:`|J_k - J_{k+1}|`, ``dg`` = :math:`\|g_k - g_{k+1}\|/\|g_{last}\|`.
    """
    Js, gs, costs = [], [], []
    for k in range(levels + 1):
        r, n = (refine + k, steps) if direction == "h" else (refine, steps * 2 ** k)
        gp = GradientProblem(model, clean, noisy, refine=r, steps=n, scheme=scheme)
        J, g = gp.discrete_gradient()
        Js.append(J)
        gs.append(g)
        costs.append(gp.timings["discrete"])
    Js, gs = np.array(Js), np.array(gs)
    return dict(J=Js, g=gs, cost=np.array(costs), dJ=np.abs(np.diff(Js)),
                dg=np.linalg.norm(np.diff(gs, axis=0), axis=1) / np.linalg.norm(gs[-1]))
