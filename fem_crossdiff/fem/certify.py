r"""Ellipticity checked numerically: the smallest eigenvalue of the symmetric part of :math:`D(w)` sampled over
states, gradients and (optionally) parameters in the box, with :math:`D` evaluated by the very UFL the solver
assembles.

For components :math:`w_i` with gradients :math:`\xi_i\in\mathbb R^2`, :math:`\xi^T D\xi = \sum_{ij}D_{ij}\,
\xi_i\cdot\xi_j \ge \lambda_{\min}(\tfrac12(D + D^T))|\xi|^2`, with equality for some :math:`\xi`. The states are
random fields on a small mesh of unit squares: :math:`u` with :math:`|\nabla u| \le 1` per cell, the other components
in :math:`[-1, 1]` (:data:`~fem_crossdiff.model.family.STATE_RANGE`), evaluated at every cell's corners. A user model
without an analytic bound is certified this way (refused if the sampled minimum is not positive); one with a bound
has the bound checked (refused if sampling finds less); the built-in family's analytic certificate is cross-checked
by the tests.
"""
import numpy as np

from ..errors import ModelError

__all__ = ["sampled_ellipticity", "certify"]

_CERTIFIED = {}


def sampled_ellipticity(model, *, points=8, seed=0, box_samples=0):
    """The smallest :math:`\\lambda_{\\min}(\\tfrac12(D + D^T))` found over random states on a ``points``² mesh, for
    every stage of ``model`` and, with ``box_samples > 0``, also for that many random parameter sets drawn uniformly
    in the model's box (``model.box()``: what training may reach)."""
    import firedrake as fd                                    # here: certify() of a built-in model needs no Firedrake
    from firedrake.adjoint import stop_annotating
    from .forms import DiscreteModel
    from .functions import pixel_space
    rng = np.random.default_rng(seed)
    with stop_annotating():
        mesh = fd.RectangleMesh(points, points, float(points), float(points), quadrilateral=True)
        dm = DiscreteModel(model, mesh)
        n = dm.components
        w = fd.Function(pixel_space(mesh, n))
        values = w.dat.data.reshape(-1, n)
        values[:, 0] = rng.uniform(0.0, 1.0, len(values)) / np.sqrt(2.0)     # |∇u| <= 1 on unit cells
        values[:, 1:] = rng.uniform(-1.0, 1.0, (len(values), n - 1))
        T = fd.TensorFunctionSpace(mesh, "DQ", 1, shape=(n, n))
        stage_sets = [model.stages]
        if box_samples:
            box = np.array(model.box()).reshape(len(model.stages), -1, 2)
            for _ in range(box_samples):
                stage_sets.append([model.unpack_stage(rng.uniform(b[:, 0], b[:, 1])) for b in box])
        worst = np.inf
        for stages in stage_sets:
            dm.set_stages(stages)
            for k in range(len(stages)):
                D = fd.Function(T).interpolate(dm.D(w, k)).dat.data_ro.reshape(-1, n, n)
                worst = min(worst, float(np.linalg.eigvalsh(0.5 * (D + D.transpose(0, 2, 1))).min()))
    return worst


def certify(model):
    """The model's ellipticity certificate, refused with :class:`ModelError` if it is not uniformly elliptic: the
    built-in family's analytic one; for a user model its own bound, checked by sampling, or the sampled minimum."""
    alpha = model.check_elliptic()
    if getattr(model, "proven_certificate", False):     # built-in models: proven (and tested) analytically
        return alpha
    key = (model.structure, repr(model.stages))
    if key not in _CERTIFIED:
        sampled = sampled_ellipticity(model)
        if alpha is None and not sampled > 0:
            raise ModelError(f"model '{model.name}' is not uniformly elliptic: the symmetric part of its D has the "
                             f"eigenvalue {sampled:.3g} <= 0 at a sampled state (|grad u| <= 1, other components in "
                             "[-1, 1])")
        if alpha is not None and sampled < alpha * (1 - 1e-9) - 1e-14:
            raise ModelError(f"model '{model.name}': its ellipticity bound {alpha:.6g} is not a lower bound: the "
                             f"symmetric part of its D has the eigenvalue {sampled:.6g} at a sampled state")
        _CERTIFIED[key] = sampled if alpha is None else alpha
    return _CERTIFIED[key]
