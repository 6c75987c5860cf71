r"""Learning stable cross-diffusion models by adjoint gradients (Barbeiro & Lobo, JMIV 62, 2020).

Given (clean, noisy) pairs :math:`(c_i, f_i)`, minimise the mean denoising error at the final time

.. math:: J(p) = \frac{1}{n}\sum_i \frac{1}{|\Omega|}\int_\Omega \big(u_i(T; p) - c_i\big)^2\,dx ,

(the integral exact for the Q1 functions; or the pixels' mean squared error, or the mean PSNR: see
:data:`MISFITS`, :data:`OBJECTIVES`) over the parameters :math:`p` of every stage:
:math:`d_{11}, d_{22}, \rho, \beta, \lambda, \mu` and the non-negative RBF weights of the influence
functions :math:`g_{11}, g_{22}` (each with a floor :math:`g_{\min} > 0`) and, optionally, of the factor
:math:`h_{11}(v) \ge 1` of the :math:`u`-diffusivity (:func:`~.parametrisation.with_modulation`) and the signed
ones of the reaction :math:`\psi(v)` of the :math:`u`-equation (:func:`~.parametrisation.with_psi`). The box bounds
of :data:`~.parametrisation.BOUNDS` alone guarantee uniform ellipticity of every iterate:
:math:`\xi^T D\xi \ge (1-|\rho|)\min(d_{11}, d_{22})\,g_{\min}|\xi|^2`. Gradients are pyadjoint's (the exact
gradient of the discrete problem); the optimiser is scipy's L-BFGS-B.

The data-set gradient :math:`\sum_i \nabla J_i` is computed one image at a time, so memory is that of one
image's evolution; under ``mpiexec`` the images are dealt out over the ranks of an ``Ensemble`` and the sums are
reduced, giving the same model as one rank. Each semi-implicit step's adjoint is that of
:class:`~fem_crossdiff.fem.taping.SemiImplicitStepBlock` (forms derived once, not per step; the solve with the fast
path's :math:`A^T`; the derivative forms by one C pass, :mod:`fem_crossdiff.fast.adjoint`), run either from
pyadjoint's tape (``checkpoints=None``, :class:`DatasetLoss`'s default) or by the reverse sweep of
:mod:`fem_crossdiff.learning.sweep` without a tape (``"all"``: every state kept, :func:`train`'s default, about two
forward solves per gradient and half the tape's memory; ``K``: :math:`K + 2` states, binomial checkpointing).
The two give the same gradient to 1e-10 (tested), and both agree with pyadjoint's generic solve blocks.
"""
import time

import numpy as np
import ufl
import firedrake as fd
from firedrake.adjoint import (Control, ReducedFunctional, Tape, continue_annotation, get_working_tape,
                               pause_annotation, set_working_tape, stop_annotating)
from firedrake.assemble import get_assembler
from mpi4py import MPI

from ..errors import InputError
from ..fem import Evolution, image_mesh, image_to_function
from .parametrisation import unpack
from .settings import MISFITS, OBJECTIVES, objective_term, psnr_of_loss
from .sweep import check_checkpoints, checkpointed_gradient

__all__ = ["MISFITS", "OBJECTIVES", "LEARNING_SOLVER", "DatasetLoss", "MultiResolutionLoss",
           "dataset_reduced_functional", "psnr_of_loss"]

#: Tight linear solves while learning: J(p) must be smooth to far below the optimiser's and the Taylor tests'
#: resolution, on both the taped (UFL) path and the fast path used for plain loss evaluations.
LEARNING_SOLVER = {"ksp_rtol": 1e-10}


# ------------------------------------------------------------------------------ loss and gradient
class DatasetLoss:
    """:math:`J(p)` and :math:`\\nabla J(p)` over a data set of equally sized pairs, images split over ranks."""

    def __init__(self, model, pairs, ensemble=None, refine=0, checkpoints=None, mesh=None,
                 solver_parameters=None, misfit="L2", objective="mse", **evolution):
        """``misfit``: one of :data:`MISFITS`; ``objective``: one of :data:`OBJECTIVES`. ``mesh`` replaces the
        structured image mesh (it needs ``mesh.image_shape``); ``solver_parameters`` update
        :data:`LEARNING_SOLVER`; other keywords (``time``, ``steps``, ``scheme``) go to the
        :class:`~fem_crossdiff.fem.evolution.Evolution`. ``checkpoints``: None (default) records each image's
        evolution on a pyadjoint tape; ``"all"`` or an integer :math:`K` runs the reverse sweep of
        :mod:`fem_crossdiff.learning.sweep` instead (same gradient), keeping every state or at most :math:`K`
        snapshots (binomial schedule), so memory stays bounded for long horizons. (pyadjoint's own
        ``tape.enable_checkpointing`` with a ``MultistageCheckpointSchedule`` gave wrong gradients with this
        release, on pyadjoint's generic blocks too.)"""
        if misfit not in MISFITS:
            raise InputError(f"misfit must be one of {MISFITS}, got {misfit!r}")
        if objective not in OBJECTIVES:
            raise InputError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.objective = objective
        shapes = {c.shape for c, _ in pairs} | {f.shape for _, f in pairs}
        if len(shapes) != 1:
            raise InputError(f"all training pairs must have one shape, got {sorted(shapes)}")
        self.model, self.n = model, len(pairs)
        self.ensemble = ensemble or fd.Ensemble(fd.COMM_WORLD, 1)
        ecomm = self.ensemble.ensemble_comm
        self.mine = [i for i in range(self.n) if i % ecomm.size == ecomm.rank]
        if mesh is None:
            mesh = image_mesh(shapes.pop()[:2], refine, comm=self.ensemble.comm)
        self.ev = Evolution(model, mesh, solver_parameters={**LEARNING_SOLVER, **(solver_parameters or {})},
                            **evolution)
        self.area = fd.assemble(fd.Constant(1.0) * fd.dx(domain=mesh))
        # "pixels": finat's lumped ("KMV") rule of degree 1, on quadrilaterals the 2×2 Gauss–Lobatto rule
        self.misfit_dx = fd.dx(domain=mesh, scheme="KMV", degree=1) if misfit == "pixels" else fd.dx(domain=mesh)
        self.data = [(image_to_function(pairs[i][0], self.ev.F), image_to_function(pairs[i][1], self.ev.F))
                     for i in self.mine]
        check_checkpoints(checkpoints)
        self.checkpoints = checkpoints
        self._misfit_assemblers = None
        self.sweep_info = {}
        self.evaluations = 0
        self.seconds = {"taped forward": 0.0, "adjoint": 0.0}   # this rank's time in loss_and_gradient

    def _misfit_form(self, clean):
        r""":math:`\frac{1}{C|\Omega|}\int |y(T) - c|^2`, :math:`y` the model's output (:math:`u`, or colour), C channels."""
        error = self.ev.discrete.output(self.ev.w) - clean
        return ufl.inner(error, error) / (self.area * self.ev.discrete.channels) * self.misfit_dx

    def misfit(self, clean):
        return fd.assemble(self._misfit_form(clean))

    def _term(self, m):
        """An image's contribution to :math:`nJ` and the factor :math:`dJ_i/dm_i` of its misfit gradient."""
        return objective_term(self.objective, m)

    def psnr(self, J):
        """The training PSNR (dB) that a loss value ``J`` stands for."""
        return -J if self.objective == "psnr" else psnr_of_loss(J)

    def _reduce(self, local):
        return self.ensemble.ensemble_comm.allreduce(local, op=MPI.SUM)

    def set(self, x):
        self.ev.discrete.set_stages(unpack(self.model, np.asarray(x, dtype=float)))

    def loss(self, x):
        """:math:`J(p)` without recording anything."""
        self.set(x)
        with stop_annotating():
            local = 0.0
            for clean, noisy in self.data:
                self.ev.run(noisy)
                local += self._term(float(self.misfit(clean)))[0]
        return self._reduce(local) / self.n

    def _misfit_and_gradient(self, clean):
        """``w -> (m, dm/dw)`` of the final state for :func:`~fem_crossdiff.checkpointing.checkpointed_gradient`
        (forms on a placeholder for the clean image, compiled once)."""
        if self._misfit_assemblers is None:
            ph = fd.Function(self.ev.F)
            form = self._misfit_form(ph)
            self._misfit_assemblers = (ph, get_assembler(form), get_assembler(fd.derivative(form, self.ev.w)))
        ph, value, derivative = self._misfit_assemblers
        ph.dat.data_wo[...] = clean.dat.data_ro
        return lambda w: (float(value.assemble()), derivative.assemble())

    def loss_and_gradient(self, x):
        """:math:`(J, \\nabla J)`: per image, a forward run on a fresh tape and its adjoint, or the reverse sweep
        over checkpoints (``checkpoints``)."""
        self.set(x)
        J, grad = 0.0, np.zeros_like(np.asarray(x, dtype=float))
        for clean, noisy in self.data:
            one = self._taped_gradient if self.checkpoints is None else self._swept_gradient
            mi, gi = one(clean, noisy)
            term, factor = self._term(mi)
            grad += factor * gi
            J += term
        self.evaluations += 1
        return self._reduce(J) / self.n, self._reduce(grad) / self.n

    def _taped_gradient(self, clean, noisy):
        tape = Tape()
        with set_working_tape(tape):
            t0 = time.perf_counter()
            continue_annotation()
            try:
                self.ev.run(noisy)
                Ji = self.misfit(clean)
            finally:
                pause_annotation()
            t1 = time.perf_counter()
            rf = ReducedFunctional(Ji, [Control(c) for c in self.ev.discrete.controls()], tape=tape)
            g = self.ev.discrete.gradient_vector(rf.derivative())
        self.seconds["taped forward"] += t1 - t0
        self.seconds["adjoint"] += time.perf_counter() - t1
        return float(Ji), g

    def _swept_gradient(self, clean, noisy):
        t0 = time.perf_counter()
        with stop_annotating():
            self.ev.set_initial(noisy)
        m, g, self.sweep_info = checkpointed_gradient(self.ev, self._misfit_and_gradient(clean), self.checkpoints)
        self.seconds["adjoint"] += time.perf_counter() - t0          # forward, recomputation and adjoint
        return m, self.ev.mesh.comm.allreduce(g)


class MultiResolutionLoss:
    r""":math:`J = \frac1L\sum_r J_r`: the mean of :class:`DatasetLoss`\ es of the same pairs on the image mesh
    refined :math:`r` times, one per level (the image as its bilinear interpolant). A model trained on several
    levels must denoise on each: it cannot lean on the pixel grid (resolution independence)."""

    def __init__(self, losses):
        self.losses = list(losses)

    @property
    def evaluations(self):
        return self.losses[0].evaluations

    def psnr(self, J):
        return self.losses[0].psnr(J)

    def loss(self, x):
        return float(np.mean([one.loss(x) for one in self.losses]))

    def loss_and_gradient(self, x):
        parts = [one.loss_and_gradient(x) for one in self.losses]
        return float(np.mean([J for J, _ in parts])), np.mean([g for _, g in parts], axis=0)


def dataset_reduced_functional(model, pairs, refine=0):
    """pyadjoint ``ReducedFunctional`` of :math:`J` over all ``pairs`` on one tape (controls: one per stage).

    Same value and gradient as :class:`DatasetLoss`; meant for Taylor tests and small data sets (its tape
    holds every image's evolution at once). Recorded with pyadjoint's generic solve blocks (which also give
    Hessians, for ``taylor_to_dict``), not with :mod:`fem_crossdiff.taping`'s step block that
    :class:`DatasetLoss` uses, so the two cross-check each other. Returns ``(rf, loss)``.
    """
    loss = DatasetLoss(model, pairs, refine=refine, step_block=False)
    get_working_tape().clear_tape()
    controls = [Control(c) for c in loss.ev.discrete.controls()]
    continue_annotation()
    try:
        J = 0.0
        for clean, noisy in loss.data:
            loss.ev.run(noisy)
            J = J + loss.misfit(clean)
        J = J / loss.n
    finally:
        pause_annotation()
    return ReducedFunctional(J, controls), loss

