r"""The gradient of a final-time misfit by a reverse sweep over checkpoints: memory for K states, not N.

The adjoint of step :math:`n` (:mod:`fem_crossdiff.fem.taping`) needs that step's states :math:`w^n, w^{n+1}`, in
reverse order. pyadjoint's tape keeps every step's inputs; here a schedule of ``checkpoint_schedules`` says which
states to keep and when to recompute them. With :math:`K` snapshots,
:class:`~checkpoint_schedules.MultistageCheckpointSchedule` (binomial checkpointing, Griewank & Walther's revolve:
fewest recomputed steps for :math:`K` stored states) holds :math:`K + 2` states at any time, whatever the
horizon. Each step's adjoint is the one of :class:`~fem_crossdiff.fem.taping.SemiImplicitStepBlock`:

.. math:: A(w^n, P_k)^T\lambda = \bar w^{n+1},\qquad \frac{dJ}{dP_k} \mathrel{+}= -\partial_P F[\lambda],\qquad
          \bar w^n = -\partial_{w^n} F[\lambda],

started from :math:`\bar w^N = \partial J/\partial w^N`. The schedule runs on the same
:class:`~fem_crossdiff.fem.evolution.Evolution` (fast path where it applies); nothing is taped. ("Checkpoint"
here means a stored state of the evolution; a training run's resume file is :class:`~.training.ResumeFile`.) On
the fast path a step whose adjoint is pending also keeps the Gauss-point coefficient fields its forward filled
:math:`A` from (three per Gauss point, about six times a state), so that :math:`A^T` is refilled without evaluating the
influence functions again (gradient/forward 2.0 → 1.9 at 256²): for the last :data:`KEEP_FIELDS` steps of each
forward run that precedes a reverse, so the extra memory is bounded whatever the horizon.
"""
import numpy as np
from firedrake.adjoint import stop_annotating
from checkpoint_schedules import (Copy, EndForward, EndReverse, Forward, Move, MultistageCheckpointSchedule,
                                  Reverse, StorageType)

from ..errors import InputError

__all__ = ["check_checkpoints", "schedule", "checkpointed_gradient", "KEEP_FIELDS"]

#: At most this many steps per forward run keep their Gauss-point fields for the adjoint's :math:`A^T` (the
#: default 12-step models: all of them); earlier steps' fields are evaluated again in the reverse sweep.
KEEP_FIELDS = 16


def check_checkpoints(checkpoints):
    """Raise :class:`InputError` unless ``checkpoints`` is None (pyadjoint's tape), ``"all"`` or an integer >= 1."""
    if not (checkpoints is None or checkpoints == "all"
            or (isinstance(checkpoints, int) and not isinstance(checkpoints, bool) and checkpoints >= 1)):
        raise InputError(f"checkpoints must be None, 'all' or an integer >= 1, got {checkpoints!r}")


def schedule(steps, checkpoints):
    """The actions for ``steps`` steps: ``checkpoints="all"`` keeps every state (no recomputation); an integer
    :math:`K \\ge 1` keeps at most :math:`K` snapshots (binomial schedule, :math:`K \\ge` ``steps`` keeps all)."""
    check_checkpoints(checkpoints)
    if checkpoints is None:
        raise InputError("checkpoints=None means pyadjoint's tape, not a schedule")
    if checkpoints == "all" or checkpoints >= steps:
        return [Forward(0, steps, False, True, StorageType.WORK), EndForward(), Reverse(steps, 0, True),
                EndReverse()]
    return MultistageCheckpointSchedule(steps, checkpoints, 0)


class _Sweep:
    """Executes a schedule for one evolution: states are plain arrays (nodes, 2), the adjoint a cofunction."""

    def __init__(self, ev, misfit_gradient):
        self.ev, self.misfit_gradient = ev, misfit_gradient
        if not ev.step_blocks:
            raise InputError(f"checkpointed gradients need the semi-implicit scheme without a source term "
                             f"(got scheme '{ev.scheme}'); use checkpoints=None (pyadjoint's tape)")
        self.fm = ev.step_forms()
        self.size = ev.discrete.size
        self.grad = np.zeros(self.size * ev.discrete.nstages)
        self.recomputed = self.stored_peak = 0

    def step(self, n, state):
        """:math:`w^{n+1}` from :math:`w^n` by the evolution's own step, and the Gauss-point coefficient fields
        its fast path filled the matrix from (None on the UFL path): the adjoint's :math:`A^T` reuses them."""
        ev = self.ev
        ev.w_old.dat.data_wo[...] = state
        ev.step(n)
        fields = ev.fast.last_fields if ev.fast is not None else None
        return ev.w_old.dat.data_ro.copy(), fields

    def adjoint_step(self, n, w_n, w_np1, fields, wbar):
        r"""Adjoint of step ``n``: add :math:`-\partial_P F[\lambda]` to the gradient, return :math:`\bar w^n`
        (None for the first step, whose :math:`\bar w^0` nobody needs)."""
        fm, dm = self.fm, self.ev.discrete
        k = dm.stage_of_step(n, self.ev.steps)
        fm.w_old.dat.data_wo[...] = w_n
        fm.w_new.dat.data_wo[...] = w_np1
        fm.f.dat.data_wo[...] = self.ev.f.dat.data_ro
        fm.set_parameters(dm.stage_functions[k])
        fm.adjoint_solve(wbar, k, fields)
        grad, wbar = fm.derivatives(need_state=n > 0)
        self.grad[k * self.size:(k + 1) * self.size] += grad
        return wbar

    def run(self, actions):
        """Execute ``actions``; returns :math:`J`. The gradient is in :attr:`grad` (this rank's cells)."""
        steps, ev = self.ev.steps, self.ev
        snapshots = {StorageType.RAM: {}, StorageType.DISK: {}}
        deps, work, wbar, J = {}, ev.w_old.dat.data_ro.copy(), None, None
        forward_steps = 0
        for action in actions:
            if isinstance(action, Forward):
                if action.write_ics:
                    snapshots[action.storage][action.n0] = work.copy()
                for n in range(action.n0, action.n1):
                    new, fields = self.step(n, work)
                    forward_steps += 1
                    if action.write_adj_deps:
                        deps[n] = (work, new, fields if n >= action.n1 - KEEP_FIELDS else None)
                    work = new
                if action.n1 == steps and wbar is None:
                    ev.w.dat.data_wo[...] = work
                    J, wbar = self.misfit_gradient(ev.w)
            elif isinstance(action, Reverse):
                for n in range(action.n1 - 1, action.n0 - 1, -1):
                    wbar = self.adjoint_step(n, *deps[n], wbar)
                    if action.clear_adj_deps:
                        del deps[n]
            elif isinstance(action, (Copy, Move)):
                data = snapshots[action.from_storage][action.n]
                if isinstance(action, Move):
                    del snapshots[action.from_storage][action.n]
                if action.to_storage == StorageType.WORK:
                    work = data.copy()
                elif action.to_storage != StorageType.NONE:
                    snapshots[action.to_storage][action.n] = data
            elif isinstance(action, EndReverse):
                break
            elif not isinstance(action, EndForward):
                raise NotImplementedError(f"checkpoint action {action} is not supported")
            held = {id(a) for s in snapshots.values() for a in s.values()} | {id(d[i]) for d in deps.values()
                                                                                for i in (0, 1)}
            self.stored_peak = max(self.stored_peak, len(held | {id(work)}))
        self.recomputed = forward_steps - steps
        return J


def checkpointed_gradient(ev, misfit_gradient, checkpoints="all"):
    r""":math:`(J, dJ/dp, \text{info})` for the evolution ``ev`` from its current initial state (set by
    ``ev.set_initial``), ``misfit_gradient(w) -> (J, dJ/dw as a cofunction)`` of the final state.

    ``dJ/dp`` is this rank's part of the gradient in :func:`~.parametrisation.pack` order (sum it over the mesh's
    ranks); ``info`` counts the recomputed steps and the most states held at once."""
    sweep = _Sweep(ev, misfit_gradient)
    with stop_annotating():
        J = sweep.run(schedule(ev.steps, checkpoints))
    return J, sweep.grad, dict(recomputed_steps=sweep.recomputed, states_held=sweep.stored_peak)
