r"""One semi-implicit time step as a single pyadjoint block.

A step solves :math:`F(w^{n+1}; w^n, P, f) = a(w^n, P; w^{n+1}, \varphi) - L(w^n, P, f; \varphi) = 0`
(:meth:`Evolution.semi_implicit_forms`). Given :math:`\bar w^{n+1} = \partial J/\partial w^{n+1}`, its adjoint is

.. math:: A(w^n, P)^T\lambda = \bar w^{n+1}, \qquad
          \frac{\partial J}{\partial m} = -\frac{\partial}{\partial m} F(w^{n+1}; w^n, P, f)[\lambda]
          \quad (m = w^n, f, P).

pyadjoint's generic ``NonlinearVariationalSolveBlock`` derives, replaces and preprocesses these forms again for
every step of every image (most of the adjoint's time on small images); this block builds them once, on
placeholder functions, and only copies the step's saved values into the placeholders. The forward step itself
is the :class:`~fem_crossdiff.fem.evolution.Evolution`'s (fast path where it applies), run unannotated; where
the fast path runs, the adjoint solve uses its matrix too (:math:`A^T` filled for the step and solved by the
forward's KSP: :meth:`~fem_crossdiff.fast.FastSemiImplicitSolver.solve_transpose`) and, for the learned
models, the two derivative forms are one C pass (:mod:`fem_crossdiff.fast.adjoint`); otherwise Firedrake
assembles :math:`A^T` and the forms. Tested against the generic blocks and by Taylor tests
(``tests/test_learning.py``). The Evolution is used through its public interface only
(``discrete``, ``semi_implicit_forms``, ``solver_parameters``, ``fast``, ``dt``, ``model``, ``W``, ``V``).
"""
import warnings

import firedrake as fd
import ufl
from firedrake.assemble import get_assembler
from pyadjoint import Block

from ..fast import SlowPathWarning
from .solvers import linear_solver_parameters

__all__ = ["StepForms", "SemiImplicitStepBlock"]


class StepForms:
    """The step's forms on placeholders :math:`w^n, w^{n+1}, f, P, \\lambda`, compiled once per Evolution."""

    def __init__(self, ev):
        self.ev = ev
        self._warned = False
        dm = ev.discrete
        self.w_old, self.w_new, self.adj = (fd.Function(ev.W) for _ in range(3))
        self.f = fd.Function(ev.F)
        self.P = fd.Function(dm.stage_functions[0].function_space())
        self.set_parameters(dm.stage_functions[0])
        a, L = ev.semi_implicit_forms(0, params=dm.components_of(self.P), w_old=self.w_old, f=self.f)
        phi = a.arguments()[0]
        F = ufl.action(a, self.w_new) - L
        F_adj = ufl.replace(F, {phi: self.adj})                     # F[λ], a number
        # assemblers built once: assembling a form object again would preprocess (differentiate) it again
        self.minus_dF = [get_assembler(-fd.derivative(F_adj, m)) for m in (self.w_old, self.f, self.P)]
        params = linear_solver_parameters(ev.solver_parameters)
        self.mat_type = params.pop("mat_type", "aij")
        self.adjoint_operator = get_assembler(fd.adjoint(a), mat_type=self.mat_type)
        self.A_T = self.adjoint_operator.assemble()
        self.adjoint_solver = fd.LinearSolver(self.A_T, solver_parameters=params,
                                              options_prefix=f"fem_crossdiff_adjoint_{id(self)}_")
        problem = fd.LinearVariationalProblem(a, L, self.w_new)
        self.forward_solver = fd.LinearVariationalSolver(problem, solver_parameters={**params, "mat_type":
                                                                                     self.mat_type},
                                                         options_prefix=f"fem_crossdiff_replay_{id(self)}_")

    @property
    def tau(self):
        return float(self.ev.dt.values()[0])

    def fast_adjoint(self):
        """The C derivative forms (:class:`~fem_crossdiff.fast.adjoint.FastStepAdjoint`) where the forward ran on
        the fast path and the model is supported, else None (Firedrake assembles the forms)."""
        fast = self.ev.fast
        return None if fast is None else fast.step_adjoint()

    def derivatives(self, need_state=True):
        r"""``(grad, wbar)`` after :meth:`adjoint_solve`: :math:`-\partial F/\partial P[\lambda]` as the stage's
        parameter vector (this rank's cells) and :math:`\bar w^n = -\partial F/\partial w^n[\lambda]` as a
        cofunction (None unless ``need_state``). By the C kernel where it applies, else Firedrake's assembly."""
        fast = self.fast_adjoint()
        if fast is None:
            self.firedrake_ready()
            grad = self.minus_dF[2].assemble().dat.data_ro.sum(axis=0)
            return grad, (self.minus_dF[0].assemble().copy(deepcopy=True) if need_state else None)
        wbar, grad = fast(self.w_old.dat.data_ro, self.w_new.dat.data_ro, self.adj.dat.data_ro,
                          self.f.dat.data_ro, self.stage_numbers(), self.tau)
        if not need_state:
            return grad, None
        out = fd.Cofunction(self.ev.W.dual())
        out.dat.data_wo[...] = wbar
        return grad, out

    def load(self, w_old, f, P):
        """Copy a step's state and data into the placeholders (plain array copies: ``assign`` costs a parallel
        loop) and take its stage parameters ``P`` (:meth:`set_parameters`)."""
        for mine, theirs in ((self.w_old, w_old), (self.f, f)):
            mine.dat.data_wo[...] = theirs.dat.data_ro
        self.set_parameters(P)

    def set_parameters(self, P):
        """The step's stage parameters, a DG0 function constant in space: the fast path reads only their numbers
        (:meth:`stage_numbers`); the cell-by-cell copy into the placeholder, as large as the mesh times the number
        of parameters, is made only when Firedrake assembles a form (:meth:`firedrake_ready`)."""
        self._P_source, self._P_copied, self._numbers = P, False, None

    def stage_numbers(self):
        """The step's stage parameters as a dictionary of numbers (unpacked once per step)."""
        if self._numbers is None:
            self._numbers = self.ev.model.unpack_stage(self._P_source.dat.data_ro[0])
        return self._numbers

    def firedrake_ready(self):
        """Copy the stage parameters into the placeholder ``P`` (once per step) before Firedrake assembles."""
        if not self._P_copied:
            self.P.dat.data_wo[...] = self._P_source.dat.data_ro
            self._P_copied = True

    def adjoint_solve(self, rhs, stage, fields=None):
        r""":math:`A(w^n, P)^T\lambda = \bar w^{n+1}` (``rhs``) into :attr:`adj`, the placeholders loaded. By the
        fast path's matrix if the forward used it (:math:`A^T` filled for the step, from the forward's Gauss-point
        ``fields`` if kept), else (or if that solve did not converge) by Firedrake's assembly of :math:`A^T`."""
        fast = self.ev.fast
        if fast is not None:
            with rhs.dat.vec_ro as b, self.adj.dat.vec_wo as x:
                reason = fast.solve_transpose(self.w_old.dat.data_ro, stage, self.tau, self.stage_numbers(), b, x,
                                              fields)
            if reason > 0:
                return
            if not self._warned:
                warnings.warn(f"fem_crossdiff: the fast path's transposed solve did not converge ({reason}); "
                              "solving the adjoint step with Firedrake's assembly instead", SlowPathWarning,
                              stacklevel=3)
                self._warned = True
        self.firedrake_ready()
        self.adjoint_operator.assemble(tensor=self.A_T)
        self.adjoint_solver.solve(self.adj, rhs)


class SemiImplicitStepBlock(Block):
    """:math:`w^{n+1}` from the dependencies :math:`(w^n, f, P_k)`; adjoint as in the module docstring."""

    def __init__(self, forms, w_old, f, P, stage=0, **kwargs):
        super().__init__(**kwargs)
        self.forms, self.stage = forms, stage
        for dep in (w_old, f, P):
            self.add_dependency(dep)

    def __str__(self):
        return "semi-implicit cross-diffusion step"

    def recompute_component(self, inputs, block_variable, idx, prepared):
        fm = self.forms
        fm.load(*inputs)
        fm.firedrake_ready()
        fm.forward_solver.solve()
        return fm.w_new.copy(deepcopy=True)

    def prepare_evaluate_adj(self, inputs, adj_inputs, relevant_dependencies):
        fm = self.forms
        fm.load(*inputs)
        fm.w_new.dat.data_wo[...] = self.get_outputs()[0].saved_output.dat.data_ro
        fm.adjoint_solve(adj_inputs[0], self.stage)
        wanted = {i for i, _ in relevant_dependencies}
        if fm.fast_adjoint() is None or not {0, 2} & wanted:
            return None
        grad, wbar = fm.derivatives(need_state=0 in wanted)
        prepared = {0: wbar}
        if 2 in wanted:
            dP = prepared[2] = fd.Cofunction(fm.P.function_space().dual())
            dP.dat.data_wo[...] = grad / max(len(dP.dat.data_ro), 1)   # P is constant in space: the sum is dJ/dP
        return prepared

    def evaluate_adj_component(self, inputs, adj_inputs, block_variable, idx, prepared=None):
        if prepared is not None and idx in prepared:
            return prepared[idx]
        self.forms.firedrake_ready()
        return self.forms.minus_dF[idx].assemble()
