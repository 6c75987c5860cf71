r"""Mesh/time refinement: manufactured solutions, self-convergence, observed orders of convergence (EOC).

Refining the structured mesh keeps the rectangle and the image (its bilinear interpolant), so every level
discretises the same continuum problem. With errors :math:`e_k` at sizes :math:`h_k = h_0 2^{-k}` (or
:math:`\tau_k`), :math:`\mathrm{EOC}_k = \log_2(e_{k-1}/e_k)`. Self-convergence uses
:math:`e_k = \|w_k - w_{k+1}\|` (successive differences), whose ratios show the same order.

Manufactured solution (Neumann-compatible on :math:`[0,L]^2`, :math:`c_m = \cos(m\pi x/L)`, :math:`v(0)=0`):

.. math:: u^* = e^{-t/2}\big(\tfrac12 + \tfrac14 c_1(x)c_1(y)\big),\qquad
          v^* = \tfrac15\sin(t)\,c_1(x)c_2(y),

with the source :math:`s = \partial_t w^* - \nabla\cdot(D(w^*)\nabla w^*) - R(w^*, f)` computed by UFL.
"""
import math

import numpy as np
import ufl
import firedrake as fd

from .images import image_mesh, image_to_function, pixel_space, prolong
from .models import make_model
from .timestepping import Evolution

__all__ = ["eoc", "manufactured", "mms_error", "space_convergence", "time_convergence",
           "self_convergence_image", "STUDY_SOLVER"]

#: Tight tolerances so that solver error never pollutes an observed order.
STUDY_SOLVER = {"ksp_rtol": 1e-12, "ksp_atol": 1e-15, "snes_rtol": 1e-12, "snes_atol": 1e-14}


def ev_V(w):
    return pixel_space(w.function_space().mesh())


def eoc(errors):
    """Observed orders :math:`\\log_2(e_{k-1}/e_k)` for errors at successively halved sizes."""
    e = np.asarray(errors, dtype=float)
    return np.log2(e[:-1] / e[1:])


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


def mms_error(model, refine, steps, scheme, cells=4, time=0.5):
    """:math:`\\|w_h(T) - w^*(T)\\|_{L^2}` on the mesh with ``cells·2**refine`` cells per side."""
    mesh = image_mesh((cells + 1, cells + 1), refine)
    ev = Evolution(model, mesh, time=time, steps=steps, scheme=scheme, solver_parameters=STUDY_SOLVER,
                   source=_source, quadrature_degree=4)
    w0 = fd.Function(ev.W).interpolate(manufactured(mesh, 0.0))
    ev.set_initial(fd.Function(ev.V).interpolate(w0[0]))
    ev.run()
    return fd.errornorm(manufactured(mesh, fd.Constant(time)), ev.w, norm_type="L2")


def space_convergence(model, scheme="crank-nicolson", levels=4, steps0=4, cells=4, time=0.5):
    """MMS errors for refine = 0..levels-1, time step halved with h (so CN error is O(h²) overall)."""
    errs = [mms_error(model, r, steps0 * 2 ** r, scheme, cells, time) for r in range(levels)]
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


def self_convergence_image(img, model, levels=3, scheme="semi-implicit", steps=None):
    """Space self-convergence on a real image: :math:`\\|w_h - w_{h/2}\\|_{L^2}`, the coarse solution
    prolonged exactly to the finer mesh (nested Q1 spaces) and compared there."""
    sols = []
    for r in range(levels + 1):
        mesh = image_mesh(img.shape, r)
        ev = Evolution(model, mesh, steps=steps, scheme=scheme, solver_parameters=STUDY_SOLVER)
        sols.append(fd.Function(ev.run(image_to_function(img, ev.V))))
    diffs = []
    for r in range(levels):
        fine = sols[r + 1]
        coarse = [prolong(fd.Function(ev_V(sols[r])).interpolate(sols[r][i]), ev_V(fine)) for i in range(2)]
        diffs.append(math.sqrt(sum(fd.errornorm(fine[i], coarse[i]) ** 2 for i in range(2))))
    return np.array(diffs)
