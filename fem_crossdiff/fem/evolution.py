r"""Time stepping for :math:`\partial_t w = \nabla\cdot(D(w)\nabla w) + R(w, f)`, :math:`w(0) = (f, 0)`.

Schemes, with :math:`\tau = T/N` and :math:`(\cdot,\cdot)` the :math:`L^2` product on the Q1 space:

* ``"semi-implicit"`` (default, linear per step, first order): coefficients lagged, linear reaction implicit,
  a learned reaction :math:`\psi(v)` (:class:`~fem_crossdiff.model.family.CrossDiffusionModel`) explicit,

  .. math:: (w^{n+1}-w^n, \varphi) + \tau (D(w^n)\nabla w^{n+1}, \nabla\varphi)
            - \tau (R(w^{n+1}, f) + (\psi(v^n) - \psi(v^{n+1}), 0), \varphi) = 0 ;

* ``"implicit"`` (backward Euler, Newton, first order) and ``"crank-nicolson"`` (second order), both the
  θ-scheme :math:`(w^{n+1}-w^n,\varphi) + \tau[\theta A(w^{n+1}) + (1-\theta) A(w^n)](\varphi) = 0` with
  :math:`A(w)(\varphi) = (D(w)\nabla w,\nabla\varphi) - (R(w,f) + s,\varphi)`.

An optional source :math:`s(t)` serves manufactured solutions: ``source(t, discrete, f)`` returns UFL for
the time ``Constant`` ``t``, the :class:`~fem_crossdiff.fem.forms.DiscreteModel` and the data ``f``.

Semi-implicit steps on one rank take the fast path of :mod:`fem_crossdiff.fast` where it applies (same matrix,
same solver options); when pyadjoint records, each step is one :class:`~fem_crossdiff.fem.taping.SemiImplicitStepBlock`.
"""
import warnings

import numpy as np
import ufl
import firedrake as fd
from firedrake.exceptions import ConvergenceError
from pyadjoint import get_working_tape
from pyadjoint.tape import annotate_tape, stop_annotating

from ..errors import InputError, ModelError
from ..fast import KSP_REASONS, FastPathError, FastSemiImplicitSolver, SlowPathWarning
from .certify import certify
from .forms import DiscreteModel
from .functions import dof_coordinates, pixel_space
from .solvers import DIRECT_SOLVER, LINEAR_SOLVER, NEWTON_SOLVER, QUADRATURE_DEGREE
from .taping import SemiImplicitStepBlock, StepForms

__all__ = ["Evolution", "EvolutionError", "SCHEMES"]

SCHEMES = {"semi-implicit": None, "implicit": 1.0, "crank-nicolson": 0.5}

class EvolutionError(InputError):
    """The time stepping failed for these parameters (solver divergence, non-finite state); says at which step
    and what to try."""


class Evolution:
    """Evolve :math:`w = (u, v)` from :math:`(f, 0)` to time ``time`` in ``steps`` steps, on one mesh.

    Build once, :meth:`run` many times (forms are compiled and solvers set up once). Parameters live in
    ``self.discrete`` (one DG0 function per stage): change them with ``self.discrete.set_stages`` between runs.

    Semi-implicit steps on one rank without a source, when pyadjoint is not recording, take the fast path
    of :mod:`fem_crossdiff.fast` (the same matrix and solver options, assembled without UFL); ``fast=False``
    always uses the UFL solvers. When pyadjoint records, a semi-implicit step is one
    :class:`~fem_crossdiff.fem.taping.SemiImplicitStepBlock` (``step_block=False``: pyadjoint's generic blocks).
    """

    def __init__(self, model, mesh, *, time=None, steps=None, scheme="semi-implicit", solver_parameters=None,
                 source=None, quadrature_degree=QUADRATURE_DEGREE, fast=True, step_block=True):
        if scheme not in SCHEMES:
            raise ModelError(f"unknown time scheme '{scheme}'; expected one of {', '.join(SCHEMES)}")
        self.model = model
        certify(model)
        self.time, self.steps = model.check_run(model.time if time is None else time,
                                                model.steps if steps is None else steps)
        self.scheme, self.mesh = scheme, mesh
        self.discrete = DiscreteModel(model, mesh)
        self.V, self.W = pixel_space(mesh), pixel_space(mesh, self.discrete.components)
        #: The data's space: scalar Q1 for a grey image, (Q1)³ for a colour model's.
        self.F = self.V if self.discrete.channels == 1 else pixel_space(mesh, self.discrete.channels)
        self.f = fd.Function(self.F, name="f")
        self.w = fd.Function(self.W, name="w")
        self.w_old = fd.Function(self.W, name="w_old")
        self.t = fd.Constant(0.0)
        self.dt = fd.Constant(self.time / self.steps)
        self.source = source
        self.dx = ufl.dx(degree=quadrature_degree, domain=mesh)
        defaults = LINEAR_SOLVER if scheme == "semi-implicit" else NEWTON_SOLVER
        self.solver_parameters = {**defaults, **(solver_parameters or {})}
        self._ufl_solvers = None   # built on first use (the fast path does not need them)
        # fast path: semi-implicit, one rank, no source, standard quadrature; built on first use
        self._fast_ok = (fast and scheme == "semi-implicit" and source is None and mesh.comm.size == 1
                         and quadrature_degree == QUADRATURE_DEGREE and FastSemiImplicitSolver.supports(model))
        self._fast = None
        self._direct_solvers = None             # built if an iterative solve ever fails (_retry_directly)
        #: Taped semi-implicit steps are one block each (:mod:`fem_crossdiff.fem.taping`), else pyadjoint's
        #: generic solve blocks; also what the reverse sweep of :mod:`fem_crossdiff.learning.sweep` needs.
        self.step_blocks = step_block and scheme == "semi-implicit" and source is None
        self._step_forms = None

    # -- forms -------------------------------------------------------------------------------------
    def _operator(self, w, phi, k, t):
        """:math:`A(w)(\\varphi) = (D(w)\\nabla w, \\nabla\\varphi) - (R(w, f) + s(t), \\varphi)` (the whole reaction)."""
        dm, dx = self.discrete, self.dx
        rhs = dm.reaction(w, self.f, k)
        if self.source is not None:
            rhs = rhs + self.source(t, dm, self.f)
        return (ufl.inner(ufl.dot(dm.D(w, k), ufl.grad(w)), ufl.grad(phi)) - ufl.inner(rhs, phi)) * dx

    @property
    def _solvers(self):
        """The UFL solvers, one per stage (created on first use: allocating their matrices takes time)."""
        if self._ufl_solvers is None:
            self._ufl_solvers = [self._make_solver(k) for k in range(self.discrete.nstages)]
        return self._ufl_solvers

    def semi_implicit_forms(self, k, params=None, w_old=None, f=None):
        r"""Bilinear and linear forms ``(a, L)`` of the semi-implicit step of stage ``k`` (what the fast path
        assembles without UFL, see :mod:`fem_crossdiff.fast`): the diffusion lagged, the model's ``reaction``
        :math:`R` linearly implicit (:math:`R(w^n) + R'(w^n)(w^{n+1} - w^n)`, exact for the linear fidelity and decay
        of the built-in family), its ``explicit_reaction`` :math:`E` at :math:`w^n`:

        .. math:: (w^{n+1} - w^n, arphi) + 	au(D(w^n)
abla w^{n+1}, 
ablaarphi)
                  - 	au(R'(w^n) w^{n+1}, arphi) = 	au(R(w^n) - R'(w^n)w^n + E(w^n), arphi).

        ``params`` (UFL, as ``discrete.params[k]``), ``w_old`` and ``f`` replace the stage parameters,
        :math:`w^n` and the data."""
        dm, dx, dt = self.discrete, self.dx, self.dt
        w_old, f = (self.w_old if w_old is None else w_old), (self.f if f is None else f)
        phi, trial = fd.TestFunction(self.W), fd.TrialFunction(self.W)
        p = dm.params[k] if params is None else params
        R, E = dm.reaction_parts(w_old, f, k, p)
        jacobian = ufl.derivative(R, w_old, trial)
        a = (ufl.inner(trial, phi) - dt * ufl.inner(jacobian, phi)
             + dt * ufl.inner(ufl.dot(dm.D(w_old, k, p), ufl.grad(trial)), ufl.grad(phi))) * dx
        rhs = R - ufl.derivative(R, w_old, w_old)
        if E is not None:
            rhs = rhs + E
        if self.source is not None:
            rhs = rhs + self.source(self.t + dt, dm, f)
        L = (ufl.inner(w_old, phi) + dt * ufl.inner(rhs, phi)) * dx
        return a, L

    def _make_solver(self, k, parameters=None, tag=""):
        dm, dx, dt = self.discrete, self.dx, self.dt
        phi = fd.TestFunction(self.W)
        theta = SCHEMES[self.scheme]
        if theta is None:
            a, L = self.semi_implicit_forms(k)
            problem = fd.LinearVariationalProblem(a, L, self.w, constant_jacobian=not self.discrete.state_dependent)
            return fd.LinearVariationalSolver(problem, solver_parameters=parameters or self.solver_parameters,
                                              options_prefix=f"fem_crossdiff_{id(self)}_{k}_{tag}")
        F = (ufl.inner(self.w - self.w_old, phi) * dx
             + dt * theta * self._operator(self.w, phi, k, self.t + dt)
             + dt * (1 - theta) * self._operator(self.w_old, phi, k, self.t))
        problem = fd.NonlinearVariationalProblem(F, self.w)
        return fd.NonlinearVariationalSolver(problem, solver_parameters=self.solver_parameters,
                                             options_prefix=f"fem_crossdiff_{id(self)}_{k}_")

    # -- running --------------------------------------------------------------------------------
    def set_initial(self, f):
        """:math:`w^0` from the data ``f`` (a Function on ``self.F``) by the model's ``initial``: for the built-in
        family :math:`(f, 0)`.

        The copy into ``self.f`` is annotated on purpose: each image then gets its own block variable, so an
        adjoint never sees the data of a previous image.
        """
        self.f.assign(f)
        self.w_old.interpolate(self.discrete.initial(self.f))

    def run(self, f=None, callback=None):
        """Evolve from ``f`` (a Function, or ``None`` to reuse ``self.f``); return ``self.w`` at the final time.

        ``callback(n, steps)`` is called after every step.
        """
        if f is not None:
            self.set_initial(f)
        else:
            self.w_old.interpolate(self.discrete.initial(self.f))
        self.t.assign(0.0)
        for n in range(self.steps):
            self.step(n)
            if callback is not None:
                callback(n + 1, self.steps)
        if self.step_blocks and annotate_tape():
            self.w.assign(self.w_old)       # taped steps output w_old; record that w is w^N too
        return self.w

    def step(self, n):
        """One step :math:`w^n \\to w^{n+1}`: solve into ``self.w`` and copy it to ``self.w_old``.

        Semi-implicit steps on one rank, not recorded by pyadjoint, take the fast path
        (:mod:`fem_crossdiff.fast`: same matrix, assembled without ``MatSetValues``).
        """
        if self.step_blocks and annotate_tape():
            return self._taped_step(n)
        if self._fast_solver() is not None:
            return self._fast_step(n)
        k = self.discrete.stage_of_step(n, self.steps)
        self.w.assign(self.w_old)
        try:
            self._solvers[k].solve()
        except ConvergenceError as e:
            reason = str(e).splitlines()[-1].strip() if str(e) else "diverged"
            if not self._retry_directly(n, reason):
                raise self._failure(n, reason) from None
            self.w.assign(self.w_old)
            try:
                self._direct_solvers[k].solve()
            except ConvergenceError as e:
                raise self._failure(n, str(e).splitlines()[-1].strip()) from None
        self.w_old.assign(self.w)
        self.t.assign(float(self.t) + float(self.dt))

    def _taped_step(self, n):
        """:meth:`step`, unannotated, recorded as one :class:`~fem_crossdiff.fem.taping.SemiImplicitStepBlock`
        (dependencies :math:`w^n`, :math:`f`, the stage's parameters; output :math:`w^{n+1}` in ``w_old``)."""
        k = self.discrete.stage_of_step(n, self.steps)
        block = SemiImplicitStepBlock(self.step_forms(), self.w_old, self.f, self.discrete.stage_functions[k],
                                      stage=k)
        get_working_tape().add_block(block)
        with stop_annotating():
            self.step(n)
        block.add_output(self.w_old.create_block_variable())

    def step_forms(self):
        """The semi-implicit step's forms on placeholders, derived and compiled once
        (:class:`~fem_crossdiff.fem.taping.StepForms`): what a step's adjoint needs."""
        if self._step_forms is None:
            with stop_annotating():
                self._step_forms = StepForms(self)
        return self._step_forms

    @property
    def fast(self):
        """The :class:`~fem_crossdiff.fast.FastSemiImplicitSolver` the steps have run on, or None (the UFL path ran
        or nothing has run yet)."""
        return self._fast

    def _fast_solver(self):
        """The fast solver, built on first use, or None when the UFL path must run (other scheme, several ranks,
        a source, pyadjoint annotating, or a mesh that is not a uniform grid: said once, with the reason)."""
        if not self._fast_ok or annotate_tape():
            return None
        if self._fast is None:
            try:
                if not np.array_equal(self.V.cell_node_list, self.W.cell_node_list):
                    raise FastPathError("scalar and vector spaces number their nodes differently")
                self._fast = FastSemiImplicitSolver(self.discrete, self.W, dof_coordinates(self.V),
                                                    solver_parameters=self.solver_parameters,
                                                    prefix=f"fem_crossdiff_fast_{id(self)}_")
            except FastPathError as e:
                warnings.warn(f"fem_crossdiff: the one-rank fast path does not apply ({e}); Firedrake's assembly "
                              "runs instead (same solver options, about 2x slower)", SlowPathWarning, stacklevel=4)
                self._fast_ok = False
                return None
        return self._fast

    def _fast_step(self, n):
        """:meth:`step` by the fast path; a diverged solve raises :class:`EvolutionError` as the UFL path does."""
        k = self.discrete.stage_of_step(n, self.steps)
        dt = float(self.dt.values()[0])                    # float(Constant) goes through UFL: 0.1 ms
        with self.w_old.dat.vec_ro as old, self.w.dat.vec_wo as new:
            reason = self._fast.step(old, self.w_old.dat.data_ro, new, k, dt, self.f.dat.data_ro, first=n == 0)
            if reason < 0 and self._retry_directly(n, f"linear solve {KSP_REASONS.get(reason, reason)}"):
                reason = self._fast.step(old, self.w_old.dat.data_ro, new, k, dt, self.f.dat.data_ro, direct=True)
        if reason < 0:
            raise self._failure(n, f"linear solve {KSP_REASONS.get(reason, reason)}")
        self.w_old.dat.data_wo[...] = self.w.dat.data_ro   # as assign(), without its expression overhead
        self.t.assign(float(self.t.values()[0]) + dt)

    def _retry_directly(self, n, reason):
        """Whether a semi-implicit step whose iterative solve failed is solved again directly (LU; said once per
        Evolution): so that success does not depend on the preconditioner, hence on the number of ranks."""
        if self.scheme != "semi-implicit" or self.solver_parameters.get("ksp_type") == "preonly":
            return False
        if self._direct_solvers is None:
            nst = self.discrete.nstages
            self._direct_solvers = [self._make_solver(k, {**DIRECT_SOLVER}, "direct_") for k in range(nst)]
            warnings.warn(f"fem_crossdiff: model '{self.model.name}': the iterative solve of step {n + 1} did not "
                          f"converge ({reason}); such steps are solved directly (LU) instead", SlowPathWarning,
                          stacklevel=4)
        return True

    def _failure(self, n, reason):
        """The :class:`EvolutionError` of a failed step: where, why, and what to try."""
        hint = "Try more steps or a smaller time."
        if self.scheme != "semi-implicit":
            s = self.model.nonmonotone_flux()
            if s is not None:
                hint = (f"Its flux |grad u| g11(|grad u|) decreases for |grad u| > {s:.3g} (Perona-Malik type, "
                        "forward-backward): the implicit step's nonlinear system is not monotone and Newton need not "
                        "converge for any step size; use the semi-implicit scheme (lagged coefficients, what learned "
                        "models are trained with).")
        return EvolutionError(f"model '{self.model.name}', scheme {self.scheme}: the solver failed at step "
                              f"{n + 1}/{self.steps} (dt={float(self.dt.values()[0]):g}): {reason}. {hint}")

    def check_finite(self):
        with self.w.dat.vec_ro as x:
            ok = np.isfinite(x.norm())
        if not ok:
            raise EvolutionError(f"model '{self.model.name}': the state became non-finite; try more steps")
