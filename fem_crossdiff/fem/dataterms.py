r"""The data terms of deblurring, inpainting and upscaling on an :class:`~fem_crossdiff.fem.evolution.Evolution`,
recorded by pyadjoint.

The maths is in :mod:`fem_crossdiff.fast.dataterms`: a task replaces the model's fidelity :math:`\lambda(f - u)` by
:math:`\frac{\lambda}{L}A^*(f - Au)` and steps it by its majorant, which is the model's own step with the
pseudo-datum

.. math:: g^n = u^n + \tfrac1L A^*(f - Au^n)

in place of :math:`f`. So a run (:meth:`DataTermRun.run`) sets the Evolution's data function ``ev.f`` to
:math:`g^n` before each of its steps (:meth:`~fem_crossdiff.fem.evolution.Evolution.step`): every scheme, every
model, the UFL solvers and the fast paths alike, the model's diffusion untouched. :math:`A` acts on node values —
on the pixel mesh the pixels — by the numpy operators of :class:`~fem_crossdiff.fast.dataterms.DataTerm`, the very
ones the split scheme's fast path uses (:func:`~fem_crossdiff.fast.dataterms.run_split`), so both paths agree to
round-off (``tests/test_dataterms.py``).

When pyadjoint records, each :math:`g^n` is one :class:`PseudoDataBlock`: its dependency is :math:`w^n`, its output
``ev.f``; :math:`g` is affine in :math:`u^n = w^n_1`, so its adjoint is the transposed linear map
:math:`\bar u = \bar g - \frac1L A^T\mathcal M_{\rm out}A\mathcal M_{\rm in}^{-1}\bar g` on node values
(:meth:`~fem_crossdiff.fast.dataterms.DataTerm.pseudo_transpose`); the data :math:`f` are constants of the tape.
Gradients through a deblur, an inpaint and an upscale run pass Taylor tests at rate 2. (Recording serves grey
models, whose image is the state's first component.)
"""
import numpy as np
import firedrake as fd
from pyadjoint import Block, get_working_tape
from pyadjoint.tape import annotate_tape, stop_annotating

from ..errors import InputError
from .functions import dof_coordinates

__all__ = ["DataTermRun", "PseudoDataBlock"]


class DataTermRun:
    """Runs of ``ev`` (an :class:`~fem_crossdiff.fem.evolution.Evolution` on the pixel mesh of the *solution*: for
    upscaling the output's) with the data term ``term`` (:class:`~fem_crossdiff.fast.dataterms.DataTerm`)."""

    def __init__(self, ev, term):
        mesh = ev.mesh
        if getattr(mesh, "refinement", 0) != 0 or not hasattr(mesh, "image_shape"):
            raise InputError("a data term runs on the pixel mesh (refine 0) of an image")
        if tuple(mesh.image_shape) != term.shape:
            raise InputError(f"mesh of shape {mesh.image_shape} does not fit the data term's {term.shape}")
        if mesh.comm.size != 1:
            raise InputError("a data term runs on one rank (the operators act on the whole image)")
        self.ev, self.term = ev, term
        H, W = term.shape
        xy = dof_coordinates(ev.V)
        self.index = np.round(H - 1 - xy[:, 1]).astype(int) * W + np.round(xy[:, 0]).astype(int)
        self.channels = ev.discrete.channels
        self.components = ev.discrete.components
        self.grey = self.channels == 1 and getattr(ev.model, "output", None) is None

    # -- node values <-> grid arrays --------------------------------------------------------------------
    def to_grid(self, values):
        """Node values (n,) or (n, C) as a grid array (H, W) or (H, W, C)."""
        H, W = self.term.shape
        values = values.reshape(len(self.index), -1)
        out = np.empty((H * W, values.shape[1]))
        out[self.index] = values
        return out.reshape(H, W) if values.shape[1] == 1 else out.reshape(H, W, values.shape[1])

    def to_nodes(self, grid):
        """A grid array (H, W) or (H, W, C) as node values (n,) or (n, C)."""
        flat = grid.reshape(len(self.index), -1)[self.index]
        return flat[:, 0] if grid.ndim == 2 else flat

    def image(self, w):
        """The image (grid array) the state ``w`` stands for: :math:`w_1`, or the model's output (colour)."""
        if self.grey:
            return self.to_grid(w.dat.data_ro.reshape(len(self.index), -1)[:, 0])
        with stop_annotating():
            out = fd.Function(self.ev.F).interpolate(self.ev.discrete.output(w))
        return self.to_grid(out.dat.data_ro)

    def pseudo(self, w, f, out):
        """Write :math:`g = u + \\frac1L A^*(f - Au)` of the state ``w`` into the function ``out`` (unannotated)."""
        g = self.term.pseudo(self.image(w), f)
        out.dat.data_wo[...] = self.to_nodes(g).reshape(out.dat.data_wo.shape)

    # -- a run ---------------------------------------------------------------------------------------------
    def run(self, f, u0=None, callback=None):
        """Evolve from :math:`u^0` (default: the task's, :meth:`~fem_crossdiff.fast.dataterms.DataTerm.initial`)
        with the data ``f`` (grid array of the data's shape) to the final time; returns ``ev.w``."""
        ev, term = self.ev, self.term
        f = term.check_data(f)
        u0 = term.initial(f) if u0 is None else np.asarray(u0, dtype=float)
        start = fd.Function(ev.F)
        start.dat.data_wo[...] = self.to_nodes(u0).reshape(start.dat.data_wo.shape)
        ev.set_initial(start)
        ev.t.assign(0.0)
        taped = annotate_tape()
        if taped and not self.grey:
            raise NotImplementedError("recording a data term serves grey models (the image is the state's first "
                                      "component)")
        for n in range(ev.steps):
            if taped:
                block = PseudoDataBlock(self, ev.w_old, f)
                get_working_tape().add_block(block)
                with stop_annotating():
                    self.pseudo(ev.w_old, f, ev.f)
                block.add_output(ev.f.create_block_variable())
            else:
                self.pseudo(ev.w_old, f, ev.f)
            ev.step(n)
            if callback is not None:
                callback(n + 1, ev.steps)
        if not taped or ev.step_blocks:
            ev.w.assign(ev.w_old)           # taped steps output w_old; record that w is w^N too
        return ev.w


class PseudoDataBlock(Block):
    """:math:`g^n = u^n + \\frac1L A^*(f - Au^n)` from the dependency :math:`w^n` (grey models: :math:`u = w_1`);
    adjoint and tangent linear as in the module docstring."""

    def __init__(self, run, w_old, f, **kwargs):
        super().__init__(**kwargs)
        self.run, self.f = run, f
        self.add_dependency(w_old)

    def __str__(self):
        return f"{self.run.term.task} pseudo-datum"

    def recompute_component(self, inputs, block_variable, idx, prepared):
        out = fd.Function(self.run.ev.F)
        self.run.pseudo(inputs[0], self.f, out)
        return out

    def evaluate_adj_component(self, inputs, adj_inputs, block_variable, idx, prepared=None):
        r = self.run
        gbar = r.to_grid(adj_inputs[0].dat.data_ro)
        out = fd.Cofunction(r.ev.W.dual())
        values = np.zeros((len(r.index), r.components))
        values[:, 0] = r.to_nodes(r.term.pseudo_transpose(gbar))
        out.dat.data_wo[...] = values.reshape(out.dat.data_wo.shape)
        return out

    def evaluate_tlm_component(self, inputs, tlm_inputs, block_variable, idx, prepared=None):
        r = self.run
        out = fd.Function(r.ev.F)
        if tlm_inputs[0] is None:
            return out
        udot = r.to_grid(tlm_inputs[0].dat.data_ro.reshape(len(r.index), -1)[:, 0])
        term = r.term
        gdot = udot - term.adjoint(term.forward(udot)) / term.L
        out.dat.data_wo[...] = r.to_nodes(gdot)
        return out
