r"""The data-set loss of :mod:`.loss` for models that run the split scheme on grid arrays (the built-in family and
colour models, :mod:`fem_crossdiff.fast.split`; any other model whose UFL compiles, :mod:`fem_crossdiff.fast.generic`):
the same :math:`J(p)` and its exact gradient, by the split steps' discrete adjoint in numpy and C, without Firedrake
or a tape.

:class:`SplitDatasetLoss` has :class:`~.loss.DatasetLoss`'s interface (``loss``, ``loss_and_gradient``, ``psnr``,
``evaluations``), so :func:`~.training.train` and :class:`~.loss.MultiResolutionLoss` take either. Its value and
gradient equal :class:`~.loss.DatasetLoss` with ``scheme="split"`` (pyadjoint's tape of the UFL scheme) to
round-off (``tests/test_split.py``). Images are dealt out over the ranks of ``MPI.COMM_WORLD`` and the sums
reduced: the same model on any rank count.
"""
import time

import numpy as np

from ..errors import InputError
from ..fast.generic import on_grid, split_scheme
from ..fast.split import Grid, interpolant
from .parametrisation import unpack
from .settings import MISFITS, OBJECTIVES, objective_term, psnr_of_loss

__all__ = ["SplitDatasetLoss", "uses_split_path"]


def uses_split_path(model, scheme=None):
    """True when a training of ``model`` with ``scheme`` (None: the model's) runs on :class:`SplitDatasetLoss`: the
    built-in family and colour models, and any model whose UFL compiles for the grid
    (:class:`~fem_crossdiff.fast.generic.GenericSplitScheme`)."""
    return (model.scheme if scheme is None else scheme) == "split" and on_grid(model)


class SplitDatasetLoss:
    """:math:`J(p)` and :math:`\\nabla J(p)` over equally sized pairs on the grid of the mesh refined ``refine``
    times (the images as their bilinear interpolants), by the split scheme's fast path."""

    def __init__(self, model, pairs, refine=0, misfit="L2", objective="mse", time=None, steps=None, comm=None):
        if misfit not in MISFITS:
            raise InputError(f"misfit must be one of {MISFITS}, got {misfit!r}")
        if objective not in OBJECTIVES:
            raise InputError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        shapes = {c.shape for c, _ in pairs} | {f.shape for _, f in pairs}
        if len(shapes) != 1:
            raise InputError(f"all training pairs must have one shape, got {sorted(shapes)}")
        if comm is None:
            from mpi4py import MPI
            comm = MPI.COMM_WORLD
        self.comm, self.model, self.n = comm, model, len(pairs)
        self.misfit_kind, self.objective = misfit, objective
        H, W = shapes.pop()[:2]
        r = 2 ** int(refine)
        self.scheme = split_scheme(model, Grid(((H - 1) * r + 1, (W - 1) * r + 1), 1.0 / r), time, steps)
        mine = [i for i in range(self.n) if i % comm.size == comm.rank]
        self.data = [(interpolant(pairs[i][0], r), interpolant(pairs[i][1], r)) for i in mine]
        self.evaluations = 0
        self.seconds = {"adjoint": 0.0}

    def psnr(self, J):
        """The training PSNR (dB) that a loss value ``J`` stands for."""
        return -J if self.objective == "psnr" else psnr_of_loss(J)

    def set(self, x):
        self.scheme.stages = unpack(self.model, np.asarray(x, dtype=float))

    def _reduce(self, local):
        return self.comm.allreduce(local)

    def loss(self, x):
        """:math:`J(p)`."""
        self.set(x)
        local = 0.0
        for clean, noisy in self.data:
            y = self.scheme.output(self.scheme.run(noisy))
            local += objective_term(self.objective, self.scheme.misfit(y, clean, self.misfit_kind)[0])[0]
        return self._reduce(local) / self.n

    def loss_and_gradient(self, x):
        """:math:`(J, \\nabla J)` by the discrete adjoint of every image's evolution."""
        t0 = time.perf_counter()
        self.set(x)
        J, grad = 0.0, np.zeros(np.size(x))
        for clean, noisy in self.data:
            m, g = self.scheme.gradient(noisy, clean, self.misfit_kind)
            term, factor = objective_term(self.objective, m)
            J += term
            grad += factor * g
        self.evaluations += 1
        self.seconds["adjoint"] += time.perf_counter() - t0
        return self._reduce(J) / self.n, self._reduce(grad) / self.n
