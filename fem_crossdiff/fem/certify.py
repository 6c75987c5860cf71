r"""Ellipticity checked numerically: the smallest eigenvalue of the symmetric part of :math:`D(w)` sampled over
the states the image can reach, gradients and (optionally) parameters in the box, with :math:`D` evaluated by the very
UFL the solver assembles.

For components :math:`w_i` with gradients :math:`\xi_i\in\mathbb R^2`, :math:`\xi^T D\xi = \sum_{ij}D_{ij}\,
\xi_i\cdot\xi_j \ge \lambda_{\min}(\tfrac12(D + D^T))|\xi|^2`, with equality for some :math:`\xi`.

The states (:func:`state_box`): :math:`u` over the data's range :math:`[\min f, \max f]`, at least :math:`[0, 1]`
(the range of an image file), widened by :data:`U_MARGIN` of its width on either side — the maximum principle
keeps a scalar diffusion with a fidelity term inside the data's range, a cross-diffusion has none and may overshoot
a little; the other components over the model's declared ``state_bounds`` (a user model's, see
:mod:`fem_crossdiff.model.ufl_model`), else :math:`[-1, 1]` (:data:`~fem_crossdiff.model.family.STATE_RANGE`).
They are random fields on a small mesh of unit squares (``points`` high, long enough for :math:`u` to cross its
range), evaluated at every cell's corners: :math:`u` a ramp across its range plus random corner values, the ramp's
rise :math:`r` per cell and the random spread :math:`d = 1/\sqrt2 - r` such that :math:`|\nabla u| \le 1` per cell
everywhere (the extremes of the range are reached: values are clipped into it); the other components uniform in
their ranges. Sampling only :math:`u \in [0, 0.71]` (as before) let :math:`D_{11} = 0.75 - u` pass and then
saturate the bright half of an image.

A user model without an analytic bound is certified this way (refused, naming the state, if the sampled minimum is
not positive); one with a bound has the bound checked (refused if sampling finds less); the built-in family's
analytic certificate is cross-checked by the tests. Before sampling, a user model's hooks are checked for the
shapes of their results (:meth:`~fem_crossdiff.model.ufl_model.UFLModel.check_forms`): one line naming the
definition rather than a UFL shape error from deep inside a form.
"""
import math

import numpy as np

from ..errors import ModelError
from ..model.family import STATE_RANGE

__all__ = ["sampled_ellipticity", "certify", "state_box", "U_MARGIN"]

#: The margin on either side of the range of :math:`u` sampled for ellipticity, as a fraction of the range's width.
U_MARGIN = 0.1
_CERTIFIED = {}


def state_box(model, data_range=None):
    """``[(lower, upper), ...]``, one per component: the states sampled for ellipticity (see the module docstring).
    ``data_range``: ``(min f, max f)`` of the data (None: an image file's, :math:`[0, 1]`)."""
    lo, hi = 0.0, 1.0
    if data_range is not None:
        lo, hi = min(lo, float(data_range[0])), max(hi, float(data_range[1]))
    margin = U_MARGIN * (hi - lo)
    box = [(lo - margin, hi + margin)] + [(-STATE_RANGE["v"], STATE_RANGE["v"])] * (model.components - 1)
    for i, (a, b) in (getattr(model, "state_bounds", None) or {}).items():
        box[i] = (min(float(a), box[0][0]), max(float(b), box[0][1])) if i == 0 else (float(a), float(b))
    return box


def _sample(model, points, seed, box_samples, data_range):
    """``(worst eigenvalue, the state at which it was found, the box sampled)``."""
    import firedrake as fd                                    # here: certify() of a built-in model needs no Firedrake
    from mpi4py import MPI
    from firedrake.adjoint import stop_annotating
    from .forms import DiscreteModel
    from .functions import dof_coordinates, pixel_space
    rng = np.random.default_rng(seed)
    box = state_box(model, data_range)
    with stop_annotating():
        # on this rank alone: every rank samples the same states, so all reach the same verdict (none waits)
        (ulo, uhi), spread = box[0], STATE_RANGE["grad_u"] / np.sqrt(2.0)     # |∇u| <= 1 on unit cells
        length = max(points, math.ceil(16 * (uhi - ulo) / spread))          # the ramp rises spread/16 per cell
        mesh = fd.RectangleMesh(length, points, float(length), float(points), quadrilateral=True,
                                comm=MPI.COMM_SELF)
        dm = DiscreteModel(model, mesh)
        n = dm.components
        w = fd.Function(pixel_space(mesh, n))
        if hasattr(model, "check_forms"):                     # a user model: the shapes of its hooks, by name
            model.check_forms(w, fd.Function(pixel_space(mesh)), dm.params[0])
        values = w.dat.data.reshape(-1, n)
        T = fd.TensorFunctionSpace(mesh, "DQ", 1, shape=(n, n))
        at = fd.Function(fd.VectorFunctionSpace(mesh, "DQ", 1, dim=n))     # w at the same nodes as D
        stage_sets = [model.stages]
        if box_samples:
            pbox = np.array(model.box()).reshape(len(model.stages), -1, 2)
            for _ in range(box_samples):
                stage_sets.append([model.unpack_stage(rng.uniform(b[:, 0], b[:, 1])) for b in pbox])
        rise = (uhi - ulo) / length
        x = dof_coordinates(pixel_space(mesh))[:, 0]
        values[:, 0] = np.clip(ulo + rise * x + rng.uniform(-0.5, 0.5, len(values)) * (spread - rise), ulo, uhi)
        for i in range(1, n):
            values[:, i] = rng.uniform(box[i][0], box[i][1], len(values))
        states = at.interpolate(w).dat.data_ro.reshape(-1, n)
        worst, state = np.inf, None
        for stages in stage_sets:
            dm.set_stages(stages)
            for k in range(len(stages)):
                D = fd.Function(T).interpolate(dm.D(w, k)).dat.data_ro.reshape(-1, n, n)
                lam = np.linalg.eigvalsh(0.5 * (D + D.transpose(0, 2, 1))).min(axis=1)
                j = int(np.argmin(lam))
                if lam[j] < worst:
                    worst, state = float(lam[j]), states[j].copy()
        dm.set_stages(model.stages)
    return worst, state, box


def sampled_ellipticity(model, *, points=8, seed=0, box_samples=0, data_range=None):
    """The smallest :math:`\\lambda_{\\min}(\\tfrac12(D + D^T))` found over random states on a mesh ``points`` high
    (:func:`state_box`, for data in ``data_range``: None for an image file's [0, 1]), for every stage of ``model``
    and, with ``box_samples > 0``, also for that many random parameter sets drawn uniformly in the model's box
    (``model.box()``: what training may reach)."""
    return _sample(model, points, seed, box_samples, data_range)[0]


def _where(state, box):
    """The sampled state and the ranges sampled, for a message."""
    names = ["u"] + [f"w[{i}]" for i in range(1, len(box))]              # as the model's UFL reads them
    at = ", ".join(f"{a} = {x:.3g}" for a, x in zip(names, state))
    ranges = ", ".join(f"{a} in [{lo:.3g}, {hi:.3g}]" for a, (lo, hi) in zip(names, box))
    return f"at {at} (states sampled: {ranges}, |grad u| <= 1)"


def certify(model, data_range=None):
    """The model's ellipticity certificate, refused with :class:`ModelError` if it is not uniformly elliptic: the
    built-in family's analytic one; for a user model its own bound, checked by sampling, or the sampled minimum,
    over the states data in ``data_range`` (``(min f, max f)``; None: an image file's [0, 1]) can reach
    (:func:`state_box`). Refused before any solve."""
    alpha = model.check_elliptic()
    if getattr(model, "proven_certificate", False):     # built-in models: proven (and tested) analytically
        return alpha
    box = state_box(model, data_range)
    key = (model.structure, repr(model.stages), repr(box))
    if key not in _CERTIFIED:
        sampled, state, box = _sample(model, 8, 0, 0, data_range)
        if alpha is None and not sampled > 0:
            at_edge = any(min(x - lo, hi - x) < 0.1 * (hi - lo) for x, (lo, hi) in zip(state[1:], box[1:]))
            hint = ("; if its other components stay in narrower ranges, declare them (state_bounds)"
                    if at_edge and hasattr(model, "state_bounds") else "")
            raise ModelError(f"model '{model.name}' is not uniformly elliptic: the symmetric part of its D has the "
                             f"eigenvalue {sampled:.3g} <= 0 {_where(state, box)}{hint}")
        if alpha is not None and sampled < alpha * (1 - 1e-9) - 1e-14:
            raise ModelError(f"model '{model.name}': its ellipticity bound {alpha:.6g} is not a lower bound: the "
                             f"symmetric part of its D has the eigenvalue {sampled:.6g} {_where(state, box)}")
        _CERTIFIED[key] = sampled if alpha is None else alpha
    return _CERTIFIED[key]
