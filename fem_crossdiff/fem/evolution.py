r"""Time stepping for :math:`\partial_t w = \nabla\cdot(D(w)\nabla w) + R(w, f)`, :math:`w(0) = (f, 0)`.

Schemes, with :math:`\tau = T/N` and :math:`(\cdot,\cdot)` the :math:`L^2` product on the Q1 space:

* ``"semi-implicit"`` (default, linear per step, first order): coefficients lagged, linear reaction implicit,
  a learned reaction :math:`\psi(v)` (:class:`~fem_crossdiff.model.family.CrossDiffusionModel`) explicit,

  .. math:: (w^{n+1}-w^n, \varphi) + \tau (D(w^n)\nabla w^{n+1}, \nabla\varphi)
            - \tau (R(w^{n+1}, f) + (\psi(v^n) - \psi(v^{n+1}), 0), \varphi) = 0 ;

* ``"implicit"`` (backward Euler, Newton, first order) and ``"crank-nicolson"`` (second order), both the
  θ-scheme :math:`(w^{n+1}-w^n,\varphi) + \tau[\theta A(w^{n+1}) + (1-\theta) A(w^n)](\varphi) = 0` with
  :math:`A(w)(\varphi) = (D(w)\nabla w,\nabla\varphi) - (R(w,f) + s,\varphi)`;
* ``"split"`` (first order, :math:`O(N)` per step): the semi-implicit step with the products
  :math:`(\cdot,\cdot)_h` of the vertex rule, the lagged coefficients frozen per cell,
  :math:`D_h = \Pi_0 D(w^n)` (their values at the cell centres, a DG0 function), and split into an x and a y
  half step, :math:`B = I - \tau R'(w^n)`,

  .. math:: (B w^*, \varphi)_h + \tau(D_h\partial_x w^*, \partial_x\varphi)_h
                = (w^n + \tau(R(w^n) - R'(w^n)w^n + E(w^n) + s), \varphi)_h,\quad
            (B w^{n+1}, \varphi)_h + \tau(D_h\partial_y w^{n+1}, \partial_y\varphi)_h = (B w^*, \varphi)_h .

  On the structured mesh each half step is one block-tridiagonal system per grid line, unconditionally stable in
  the lumped :math:`L^2` norm; :mod:`fem_crossdiff.fast.split` (and :mod:`fem_crossdiff.fast.generic` for any UFL
  model) solves them in :math:`O(N)` (see there).

An optional source :math:`s(t)` serves manufactured solutions: ``source(t, discrete, f)`` returns UFL for
the time ``Constant`` ``t``, the :class:`~fem_crossdiff.fem.forms.DiscreteModel` and the data ``f``.

Semi-implicit steps on one rank take the fast path of :mod:`fem_crossdiff.fast` where it applies (same matrix,
same solver options); when pyadjoint records, each step is one :class:`~fem_crossdiff.fem.taping.SemiImplicitStepBlock`.
"""
import warnings

import numpy as np
import ufl
from ufl.algorithms import expand_derivatives
import firedrake as fd
from firedrake.exceptions import ConvergenceError
from pyadjoint import get_working_tape
from pyadjoint.tape import annotate_tape, stop_annotating

from ..errors import InputError, ModelError
from ..model.base import SCHEME_NAMES
from ..fast import KSP_REASONS, FastPathError, FastSemiImplicitSolver, SlowPathWarning
from ..fast.split import Grid
from ..fast.generic import Unsupported, split_scheme
from .certify import certify
from .forms import DiscreteModel
from .functions import dof_coordinates, pixel_space
from .solvers import DIRECT_SOLVER, LINEAR_SOLVER, NEWTON_SOLVER, QUADRATURE_DEGREE
from .taping import SemiImplicitStepBlock, StepForms

__all__ = ["Evolution", "EvolutionError", "SCHEMES"]

#: scheme -> θ of the θ-schemes (None: linear per step). The names are the models' :data:`~fem_crossdiff.model.base.SCHEME_NAMES`.
SCHEMES = {"semi-implicit": None, "implicit": 1.0, "crank-nicolson": 0.5, "split": None}
assert tuple(SCHEMES) == SCHEME_NAMES

class EvolutionError(InputError):
    """The time stepping failed for these parameters (solver divergence, non-finite state); says at which step
    and what to try."""


class Evolution:
    """Evolve :math:`w = (u, v)` from :math:`(f, 0)` to time ``time`` in ``steps`` steps, on one mesh.

    Build once, :meth:`run` many times (forms are compiled and solvers set up once). Parameters live in
    ``self.discrete`` (one DG0 function per stage): change them with ``self.discrete.set_stages`` between runs.

    ``scheme``: one of :data:`SCHEMES`; None takes the model's own (``model.scheme``: for a learned model the one it
    was trained for).

    Semi-implicit steps on one rank without a source, when pyadjoint is not recording, take the fast path
    of :mod:`fem_crossdiff.fast` (the same matrix and solver options, assembled without UFL); split steps the grid
    arrays of :mod:`fem_crossdiff.fast.split` (the built-in family and colour models) or of
    :mod:`fem_crossdiff.fast.generic` (any other model whose UFL compiles for the grid; else Firedrake, said once):
    the same steps to round-off.
    ``fast=False`` always uses the UFL solvers. When pyadjoint records, a semi-implicit step is one
    :class:`~fem_crossdiff.fem.taping.SemiImplicitStepBlock` (``step_block=False``: pyadjoint's generic blocks); a
    split step is recorded by pyadjoint's own blocks (the interpolation of :math:`D_h`, two linear solves).
    """

    def __init__(self, model, mesh, *, time=None, steps=None, scheme=None, solver_parameters=None,
                 source=None, quadrature_degree=QUADRATURE_DEGREE, fast=True, step_block=True):
        scheme = model.scheme if scheme is None else scheme
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
        defaults = {"semi-implicit": LINEAR_SOLVER, "split": DIRECT_SOLVER}.get(scheme, NEWTON_SOLVER)
        self.solver_parameters = {**defaults, **(solver_parameters or {})}
        self._ufl_solvers = None   # built on first use (the fast path does not need them)
        # fast path: semi-implicit, one rank, no source, standard quadrature; built on first use
        self._fast_ok = (fast and scheme == "semi-implicit" and source is None and mesh.comm.size == 1
                         and quadrature_degree == QUADRATURE_DEGREE and FastSemiImplicitSolver.supports(model))
        self._fast = None
        # the split scheme's fast path (numpy and C on the grid): one rank, no source, a structured image mesh
        self._split_ok = (fast and scheme == "split" and source is None and mesh.comm.size == 1
                          and hasattr(mesh, "image_shape"))
        self._split = None
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
        if self.scheme == "split":
            return self._make_split_solvers(k, parameters or self.solver_parameters, tag)
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

    def split_forms(self, k, params=None):
        r"""The split step's forms of stage ``k``: ``(a_x, L_x, a_y, L_y)`` for :math:`w^*` (into ``self.w_star``)
        and :math:`w^{n+1}`, with the cell coefficients ``self.D_cells`` (:math:`D_h`, set by :meth:`_split_step`)."""
        dm, dt = self.discrete, self.dt
        dxv = ufl.dx(domain=self.mesh, scheme="KMV", degree=1)            # the vertex (2×2 Gauss–Lobatto) rule
        phi, trial = fd.TestFunction(self.W), fd.TrialFunction(self.W)
        p = dm.params[k] if params is None else params
        R, E = dm.reaction_parts(self.w_old, self.f, k, p)

        def B(z):
            return ufl.inner(z, phi) - dt * ufl.inner(ufl.derivative(R, self.w_old, z), phi)
        Dh = self.D_cells
        a_x = (B(trial) + dt * ufl.inner(ufl.dot(Dh, trial.dx(0)), phi.dx(0))) * dxv
        a_y = (B(trial) + dt * ufl.inner(ufl.dot(Dh, trial.dx(1)), phi.dx(1))) * dxv
        rhs = R - ufl.derivative(R, self.w_old, self.w_old)
        if E is not None:
            rhs = rhs + E
        if self.source is not None:
            rhs = rhs + self.source(self.t + dt, dm, self.f)
        L_x = (ufl.inner(self.w_old, phi) + dt * ufl.inner(rhs, phi)) * dxv
        L_y = B(self.w_star) * dxv
        # derivatives expanded now: a form that does not depend on w^n (linear reactions) must not list it among its
        # coefficients, or pyadjoint differentiates it into an empty form
        return tuple(expand_derivatives(form) for form in (a_x, L_x, a_y, L_y))

    @property
    def D_cells(self):
        """:math:`D_h`: the lagged diffusion matrix at the cell centres (a DG0 tensor function), made on first use."""
        if getattr(self, "_D_cells", None) is None:
            n = self.discrete.components
            self._D_cells = fd.Function(fd.TensorFunctionSpace(self.mesh, "DG", 0, shape=(n, n)), name="D_cells")
            self.w_star = fd.Function(self.W, name="w_star")
        return self._D_cells

    def _make_split_solvers(self, k, parameters, tag):
        self.D_cells                                                       # noqa: B018 (made here)
        a_x, L_x, a_y, L_y = self.split_forms(k)
        prefix = f"fem_crossdiff_{id(self)}_{k}_{tag}"
        params = {key: v for key, v in parameters.items() if not key.startswith("snes_")}
        return (fd.LinearVariationalSolver(fd.LinearVariationalProblem(a_x, L_x, self.w_star),
                                           solver_parameters=params, options_prefix=prefix + "x_"),
                fd.LinearVariationalSolver(fd.LinearVariationalProblem(a_y, L_y, self.w),
                                           solver_parameters=params, options_prefix=prefix + "y_"))

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
        if self._split_scheme() is not None:                 # the whole run on the grid arrays
            w = self._split.run(self._to_grid(self.f, self.discrete.channels), callback)
            self._from_grid(w, self.w_old)
            self.w.assign(self.w_old)
            self.t.assign(self.time)
            return self.w
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
        if self.scheme == "split":
            return self._split_step(n)
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

    def _split_step(self, n):
        """One step of the split scheme: by the fast path on the grid where it applies (not recorded), else by
        Firedrake (interpolate :math:`D_h`, solve the x and the y half step; pyadjoint records both)."""
        k = self.discrete.stage_of_step(n, self.steps)
        if self._split_scheme() is not None:
            data = self._to_grid(self.f, self.discrete.channels)
            _, data = self._split.initial(data)
            state = self._to_grid(self.w_old, self.discrete.components)
            self._from_grid(self._split.step(n, self._split.state_parts(state), data), self.w)
        else:
            solve_x, solve_y = self._solvers[k]
            self.D_cells.interpolate(self.discrete.D(self.w_old, k))
            try:
                solve_x.solve()
                solve_y.solve()
            except ConvergenceError as e:
                raise self._failure(n, str(e).splitlines()[-1].strip()) from None
        self.w_old.assign(self.w)
        self.t.assign(float(self.t) + float(self.dt))

    def _split_scheme(self):
        """The split scheme's fast path (:func:`~fem_crossdiff.fast.generic.split_scheme`: hand-written for the built-in
        family and colour models, else the model's UFL compiled for the grid), built on first use, or None
        when Firedrake must run (several ranks, a source, pyadjoint annotating, a model it does not serve)."""
        if not self._split_ok or annotate_tape():
            return None
        if self._split is None:
            r = 2 ** getattr(self.mesh, "refinement", 0)
            H, W = self.mesh.image_shape
            grid = Grid(((H - 1) * r + 1, (W - 1) * r + 1), 1.0 / r)
            xy = dof_coordinates(self.V) * r
            self._grid_index = np.round(grid.H - 1 - xy[:, 1]).astype(int) * grid.W + np.round(xy[:, 0]).astype(int)
            try:        # the hand-written path (built-in family, colour) or the model's UFL compiled for the grid
                self._split = split_scheme(self.model, grid, self.time, self.steps)
            except Unsupported as e:
                warnings.warn(f"fem_crossdiff: model '{self.model.name}': the split scheme's grid path does not "
                              f"apply ({e}); Firedrake runs it instead (same steps, much slower)", SlowPathWarning,
                              stacklevel=4)
                self._split_ok = False
                return None
        self._split.stages = self.discrete.get_stages()
        return self._split

    def _to_grid(self, fn, components):
        """A function's node values as a grid array (H, W) or (H, W, components)."""
        g = self._split.grid
        values = fn.dat.data_ro.reshape(len(self._grid_index), -1)
        out = np.empty((g.H * g.W, values.shape[1]))
        out[self._grid_index] = values
        return out.reshape(g.H, g.W) if values.shape[1] == 1 else out.reshape(g.H, g.W, values.shape[1])

    def _from_grid(self, pairs, fn):
        """Write the fast path's state (a list of component pairs) into the function ``fn``."""
        state = np.concatenate(pairs, axis=-1)
        state = state.reshape(-1, state.shape[-1])
        fn.dat.data_wo[...] = state[self._grid_index].reshape(fn.dat.data_wo.shape)

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
        if self.scheme in ("implicit", "crank-nicolson"):
            s = self.model.nonmonotone_flux()
            if s is not None:
                hint = (f"Its flux |grad u| g11(|grad u|) decreases for |grad u| > {s:.3g} (Perona-Malik type, "
                        "forward-backward): the implicit step's nonlinear system is not monotone and Newton need not "
                        "converge for any step size; use a scheme with lagged coefficients (semi-implicit or split: "
                        "what learned models are trained with).")
        return EvolutionError(f"model '{self.model.name}', scheme {self.scheme}: the solver failed at step "
                              f"{n + 1}/{self.steps} (dt={float(self.dt.values()[0]):g}): {reason}. {hint}")

    def check_finite(self):
        with self.w.dat.vec_ro as x:
            ok = np.isfinite(x.norm())
        if not ok:
            raise EvolutionError(f"model '{self.model.name}': the state became non-finite; try more steps")
