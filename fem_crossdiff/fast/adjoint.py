r"""The derivative forms of a semi-implicit step's adjoint on the structured image mesh, in one C pass.

The step's residual tested with the adjoint :math:`\lambda` (:mod:`fem_crossdiff.fem.taping`) is

.. math:: F[\lambda] = (w^{n+1} - w^n, \lambda) + \tau\lambda_c(u^{n+1} - f, \lambda_u) + \tau\mu(v^{n+1}, \lambda_v)
          + \tau\sum_{ij}\big(M_{ij}\,o_{ij}(w^n)\,\nabla w^{n+1}_j, \nabla\lambda_i\big) - \tau(\psi(v^n), \lambda_u),

:math:`o_{11} = G = g_{11}(s)h_{11}(v)`, :math:`o_{22} = g_{22}(v)`, :math:`o_{12} = o_{21} = \sqrt{G g_{22}}`,
:math:`s = |\nabla u^n|`, :math:`v = v^n`. With :math:`E_{ij} = \nabla\lambda_i\cdot\nabla w^{n+1}_j` at the
Gauss points, :math:`\partial F/\partial p` is a weighted sum over the Gauss points for every parameter (for
the RBF weights, of the basis functions times :math:`\partial F/\partial o`), and
:math:`\bar w^n = -\partial F/\partial w^n[\lambda]` is :math:`\mathcal M\lambda` minus a stiffness-type action
through :math:`s` and a mass-type vector through :math:`v`. ``step_adjoint.c`` computes all of them
in one pass over the cells (RBF values, slopes and basis moments by the fast path's two-``exp`` Horner form),
instead of Firedrake's assembly of the two forms ``-derivative(F[λ], m)``; it equals that assembly to round-off
(``tests/test_fastassembly.py``). Models: RBF :math:`g_{11}(|\nabla u|)`, RBF :math:`g_{22}(v)`, and
:math:`h_{11}(v)`, :math:`\psi(v)` RBF or absent (the learned models, :meth:`FastStepAdjoint.supports`); the
others keep Firedrake's assembly.
"""
import ctypes
import functools
import math

import numpy as np

from ..model.influence import GRAD_EPS2, HORNER_CENTRES, HORNER_Z_MAX
from .compile import compile_kernel, pointer

__all__ = ["FastStepAdjoint", "step_adjoint_kernel"]


@functools.lru_cache(maxsize=None)
def step_adjoint_kernel():
    """The compiled ``step_adjoint.c`` (a ctypes function), or None if it cannot be built here (then warned once)."""
    dp, ip = ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int32)
    return compile_kernel("step_adjoint.c", "fem_crossdiff_step_adjoint", [ctypes.c_int64, ip] + [dp] * 12,
                          ZMAX=repr(HORNER_Z_MAX), EPS2=repr(GRAD_EPS2))


class FastStepAdjoint:
    r""":math:`\bar w^n = -\partial F/\partial w^n[\lambda]` (nodes, 2) and
    :math:`-\partial F/\partial p[\lambda]` (the stage's parameter vector, in
    :func:`~fem_crossdiff.learning.parametrisation.pack` order) of one step on the grid of ``q1``."""

    def __init__(self, q1, model):
        self.q1, self.model = q1, model
        self.corners = np.ascontiguousarray(q1.corners, dtype=np.int32)
        self.tables = [np.ascontiguousarray(t, dtype=np.float64) for t in (q1.to_gauss, q1.to_dx, q1.to_dy)]
        self.weight = q1.h ** 2 / 4                       # every Gauss point's weight (2×2 rule on an h-square)
        self.kernel = step_adjoint_kernel()
        self.calls = 0

    @staticmethod
    def supports(model):
        """True for the learned models' structure: RBF g11(|∇u|), RBF g22(v), h11(v) and ψ(v) RBF or absent, each
        RBF with a number of centres the Horner form takes (:data:`~fem_crossdiff.model.influence.HORNER_CENTRES`)."""
        g11, g22, h11 = model.g11, model.g22, model.h11
        rbfs = [g for g in (g11, g22, h11) if g.kind == "rbf"]
        return (g11.kind == "rbf" and g11.variable == "grad_u" and g22.kind == "rbf" and g22.variable == "v"
                and (h11.kind == "one" or (h11.kind == "rbf" and h11.variable == "v"))
                and all(g.centres in HORNER_CENTRES for g in rbfs)
                and (model.psi is None or model.psi.centres in HORNER_CENTRES))

    @classmethod
    def create(cls, q1, model):
        """A :class:`FastStepAdjoint`, or None if the model is not supported or the kernel cannot be built."""
        if not cls.supports(model) or 4 * q1.nnodes >= 2 ** 31 or step_adjoint_kernel() is None:
            return None
        return cls(q1, model)

    def __call__(self, w_old, w_new, adj, f, stage, tau):
        """``(wbar, grad)`` for the states ``w_old``, ``w_new`` and adjoint ``adj`` (nodes, 2 each), data ``f``
        (nodes,), stage numbers ``stage`` (a dictionary) and step ``tau``."""
        m = self.model
        keys = m.functions
        rbfd = np.zeros((4, 4))
        a = []
        for row, (key, g) in zip(rbfd, keys):
            if g.kind == "rbf":
                row[:] = g.centre_values[0], 1.0 / g.width, g.floor, g.centres
                a += g.horner_coefficients(stage[g.parameter(key)])
        d11, d22, rho, beta = stage["d11"], stage["d22"], stage["rho"], stage["beta"]
        r = math.sqrt(d11 * d22)
        coef = np.array([self.weight, tau, d11, d22, rho * r + beta, rho * r - beta])
        nmom = sum(g.centres for _, g in keys if g.kind == "rbf")
        sums, wbar = np.zeros(6 + nmom), np.zeros((self.q1.nnodes, 2))
        arrays = [np.ascontiguousarray(x, dtype=np.float64) for x in (w_old, w_new, adj, f)]
        self.kernel(self.q1.ncells, pointer(self.corners, ctypes.c_int32), *map(pointer, arrays),
                    *map(pointer, self.tables), pointer(coef), pointer(rbfd), pointer(np.asarray(a, dtype=np.float64)),
                    pointer(sums), pointer(wbar))
        self.calls += 1
        I11, I22, I12, I21, I_lam, I_mu = sums[:6]
        dF = {"d11": I11 + rho * r / (2 * d11) * (I12 + I21), "d22": I22 + rho * r / (2 * d22) * (I12 + I21),
              "rho": r * (I12 + I21), "beta": I12 - I21, "lam": I_lam, "mu": I_mu}
        start = 6
        for key, g in keys:
            if g.kind == "rbf":
                dF[g.parameter(key)] = sums[start:start + g.centres] * np.exp(-0.5 * np.arange(g.centres) ** 2)
                start += g.centres
        grad = -tau * np.concatenate([np.atleast_1d(dF[name]) for name in m.parameter_names])
        return wbar, grad

