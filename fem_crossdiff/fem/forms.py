r"""A :class:`~fem_crossdiff.model.family.CrossDiffusionModel` realised on a mesh, in UFL.

The parameters of a stage live in one spatially constant vector-valued DG0 ``Function`` (components in
:func:`~fem_crossdiff.learning.parametrisation.pack` order), which is that stage's pyadjoint ``Control``: one
control per stage keeps the adjoint cheap (pyadjoint's cost grows with the number of controls each solve depends
on), and the derivative with respect to the constant parameter is the sum of the cell values of :math:`dJ/dP`. (Not the real space "R":
Firedrake does not support test functions on a vector-valued "R" space, which the derivative forms need.) The
weak form of :math:`\partial_t w = \nabla\cdot(D(w)\nabla w) + R(w, f)` with Neumann boundaries is

.. math:: (\partial_t w, \varphi) + (D(w)\nabla w, \nabla\varphi) - (R(w, f), \varphi) = 0
          \quad\forall \varphi\in (Q_1)^2 .
"""
import functools
import operator

import numpy as np
import ufl
import firedrake as fd
from firedrake.adjoint import stop_annotating

from ..model import PSI_PARAMETER

__all__ = ["DiscreteModel"]


class DiscreteModel:
    """UFL for one model on one mesh: :meth:`D`, :meth:`reaction`, parameters in one DG0 function per stage."""

    def __init__(self, model, mesh):
        self.model, self.mesh = model, mesh
        self.size = sum(n for _, n, _ in model.stage_layout)
        Z = fd.VectorFunctionSpace(mesh, "DG", 0, dim=self.size)
        with stop_annotating():
            self.stage_functions = [fd.Function(Z, name=f"parameters_stage{k}") for k in range(len(model.stages))]
        self.params = [self.components(P) for P in self.stage_functions]
        self.set_stages(model.stages)

    def components(self, P):
        """name -> UFL component of ``P`` (a list of components for RBF weights)."""
        out, i = {}, 0
        for name, n, is_list in self.model.stage_layout:
            out[name] = [P[i + m] for m in range(n)] if is_list else P[i]
            i += n
        return out

    # -- parameter values -------------------------------------------------------------------------
    def set_stages(self, stages):
        """Copy numbers into the (spatially constant) stage functions; not annotated: these are control values."""
        if len(stages) != len(self.stage_functions):
            raise ValueError(f"expected {len(self.stage_functions)} stages, got {len(stages)}")
        with stop_annotating():
            for P, stage in zip(self.stage_functions, stages):
                P.dat.data_wo_with_halos[...] = self.model.pack_stage(stage)[None, :]

    def get_stages(self):
        """Current parameter values as a list of stage dictionaries (plain floats and lists)."""
        return [self.get_stage(k) for k in range(len(self.stage_functions))]

    def get_stage(self, k):
        """Current parameter values of stage ``k`` as a dictionary (what a time step needs)."""
        return self.model.unpack_stage(self.stage_functions[k].dat.data_ro_with_halos[0])

    def controls(self):
        """One control per stage: the vector-valued DG0 function holding its parameters (constant in space)."""
        return list(self.stage_functions)

    def gradient_vector(self, cofunctions):
        """dJ/dp in :func:`~fem_crossdiff.learning.parametrisation.pack` order from dJ/dP (P constant in space: sum
        the cell values)."""
        local = np.concatenate([c.dat.data_ro.sum(axis=0) for c in cofunctions])
        return self.mesh.comm.allreduce(local)

    # -- UFL ------------------------------------------------------------------------------------------
    def influence(self, which, w, k, params=None):
        """:math:`g_{11}h_{11}` or :math:`g_{22}` at the state ``w`` for stage ``k`` as UFL (``which`` is "11"
        or "22"), None if constant 1; ``params`` (as :attr:`params` ``[k]``) replaces the stage's own parameters."""
        p = self.params[k] if params is None else params
        factors = [g for g in (self._factor(ij, w, p) for ij in self.model.factors(which)) if g is not None]
        return functools.reduce(operator.mul, factors) if factors else None

    def _factor(self, ij, w, p):
        g = self.model.influence(ij)
        if g.kind == "one":
            return None
        par = p[g.parameter(ij)]
        if g.variable == "v":
            return g.evaluate(w[1], par, lib=ufl)
        return g.of_grad2(ufl.inner(ufl.grad(w[0]), ufl.grad(w[0])), par, lib=ufl)

    def D(self, w, k=0, params=None):
        r""":math:`D(w) = G^{1/2} M G^{1/2}` of stage ``k`` (or with ``params``) as a UFL 2×2 matrix."""
        p = self.params[k] if params is None else params
        g11, g22 = self.influence("11", w, k, p), self.influence("22", w, k, p)
        if g11 is None and g22 is None:
            off, g11, g22 = 1, 1, 1
        elif g22 is None:
            off, g22 = ufl.sqrt(g11), 1
        elif g11 is None:
            off, g11 = ufl.sqrt(g22), 1
        else:
            off = ufl.sqrt(g11 * g22)
        c = p["rho"] * ufl.sqrt(p["d11"] * p["d22"])
        return ufl.as_matrix([[p["d11"] * g11, (c + p["beta"]) * off],
                              [(c - p["beta"]) * off, p["d22"] * g22]])

    def psi(self, w, k=0, params=None):
        r"""The reaction :math:`\psi(v)` of the :math:`u`-equation at the state ``w`` (UFL), 0 if the model has none."""
        psi = self.model.psi
        if psi is None:
            return 0
        p = self.params[k] if params is None else params
        return psi.evaluate(w[1], p[PSI_PARAMETER], lib=ufl)

    def reaction(self, w, f, k=0):
        r""":math:`R(w, f) = (\lambda (f - u) + \psi(v), -\mu v)` of stage ``k``."""
        p = self.params[k]
        return ufl.as_vector([p["lam"] * (f - w[0]) + self.psi(w, k), -p["mu"] * w[1]])

    def is_linear(self):
        """True when D does not depend on the state (the semi-implicit matrix is then constant):
        :attr:`~fem_crossdiff.model.family.CrossDiffusionModel.state_dependent`, the one predicate."""
        return not self.model.state_dependent

    def stage_of_step(self, n, steps):
        """Index of the stage acting on step ``n`` (0-based) of ``steps``."""
        return n * len(self.params) // steps
