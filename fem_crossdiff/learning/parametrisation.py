r"""The learnable parametrisation: stage parameters as one flat vector, box bounds under which every model is
uniformly elliptic, and the initial models (numpy only).

Per stage: :math:`d_{11}, d_{22}, \rho, \beta, \lambda, \mu` and the non-negative RBF weights of the influence
functions :math:`g_{11}, g_{22}` (each with a floor :math:`g_{\min} > 0`), optionally of the factor
:math:`h_{11}(v) \ge 1` of the :math:`u`-diffusivity (:func:`with_modulation`) and the signed ones of the reaction
:math:`\psi(v)` of the :math:`u`-equation (:func:`with_psi`). Inside :data:`BOUNDS`,
:math:`\xi^T D\xi \ge (1-|\rho|)\min(d_{11}, d_{22})\,g_{\min}|\xi|^2`: every iterate of a box-constrained
optimiser is elliptic.
"""
import math

import numpy as np

from ..model import CrossDiffusionModel, Influence

__all__ = ["BOUNDS", "FLOOR", "fit_rbf", "learned_template", "with_modulation", "with_psi", "pack", "unpack",
           "bounds", "flat_names"]

#: Box bounds of every learnable parameter: inside them every model is uniformly elliptic.
BOUNDS = {"d11": (0.05, 50.0), "d22": (0.05, 50.0), "rho": (-0.95, 0.95), "beta": (-20.0, 20.0),
          "lam": (0.0, 5.0), "mu": (0.0, 5.0), "w11": (0.0, 50.0), "w22": (0.0, 50.0),
          "w11h": (0.0, 10.0), "wpsi": (-5.0, 5.0),
          "dc": (0.05, 200.0), "kc": (0.002, 1.0), "lamc": (0.0, 20.0), "kappac": (0.0, 100.0),
          "pc": (0.25, 16.0)}  # colour: chroma
FLOOR = 0.02


def fit_rbf(influence, target, samples=201):
    """Non-negative RBF weights whose :math:`g` best fits ``target(s)`` over the centres' range (NNLS)."""
    from scipy.optimize import nnls
    c = influence.centre_values
    s = np.linspace(c[0], c[-1], samples)
    basis = np.stack([influence.evaluate(s, np.eye(influence.centres)[m]) - influence.floor
                      for m in range(influence.centres)], axis=1)
    w, _ = nnls(basis, np.maximum(target(s) - influence.floor, 0.0))
    return w


def learned_template(stages=3, centres=16, time=2.0, steps=12, k=0.08, grad_span=0.4, v_span=0.05, theta=0.05,
                     modulation=0):
    r"""Initial learnable model: a Perona–Malik-like :math:`g_{11}(|\nabla u|) \approx 1/(1+(|\nabla u|/k)^2)` and
    :math:`g_{22}(v) \approx 1`, both as non-negative RBF sums with floor :data:`FLOOR`, and a small complex-diffusion
    coupling :math:`d_{12} = -d_{21} = -\sin\theta` so that the edge indicator :math:`v` is excited (with no
    coupling :math:`v \equiv 0` and the gradient with respect to the coupling vanishes). Copied to every stage.
    ``modulation > 0`` adds the factor :math:`h_{11}(v)` (:func:`with_modulation`)."""
    g11 = Influence("rbf", "grad_u", floor=FLOOR, centres=centres, span=grad_span)
    g22 = Influence("rbf", "v", floor=FLOOR, centres=max(3, centres // 2 * 2 - 1), span=v_span)
    w11 = fit_rbf(g11, lambda s: 1 / (1 + (s / k) ** 2)).tolist()
    w22 = fit_rbf(g22, lambda s: np.ones_like(s)).tolist()
    stage = dict(d11=1.0, d22=1.0, rho=0.0, beta=-math.sin(theta), lam=0.0, mu=0.0, w11=w11, w22=w22)
    model = CrossDiffusionModel("learned", g11=g11, g22=g22, stages=[dict(stage) for _ in range(stages)],
                                time=time, steps=steps,
                                description="cross-diffusion model learned by fem-crossdiff train")
    return with_modulation(model, modulation, v_span) if modulation else model


def with_modulation(model, centres, span=0.05):
    r"""``model`` with :math:`g_{11}(|\nabla u|)` times :math:`h_{11}(v) = 1 + \sum_m w_m e^{-(v-c_m)^2/2\sigma^2}`
    (``centres`` RBFs over :math:`[-\text{span}, \text{span}]`, floor 1, all weights 0: the same evolution, so a
    trained model is a warm start); the edge indicator then modulates edge stopping. Unchanged if it has one."""
    if model.h11.kind != "one":
        return model
    return _with_zero_weights(model, "h11", Influence("rbf", "v", floor=1.0, centres=centres, span=span), "w11h")


def with_psi(model, centres, span=0.05):
    r"""``model`` with the reaction :math:`\psi(v) = \sum_m w_m e^{-(v-c_m)^2/2\sigma^2}` in the :math:`u`-equation
    (``centres`` RBFs over :math:`[-\text{span}, \text{span}]`, signed weights, all 0: the same evolution, so a
    trained model is a warm start). Unchanged if it has one."""
    if model.psi is not None:
        return model
    return _with_zero_weights(model, "psi", Influence("rbf", "v", floor=0.0, centres=centres, span=span), "wpsi")


def _with_zero_weights(model, field, function, parameter):
    """``model`` with its ``field`` ("h11", "psi") set to the RBF ``function``, whose weights ``parameter`` are 0 in
    every stage."""
    stages = [dict(st, **{parameter: [0.0] * function.centres}) for st in model.stages]
    return model.replace(**{field: function.to_dict(), "stages": stages})


def pack(model):
    """Stage parameters → flat vector (stage by stage, each in :attr:`CrossDiffusionModel.stage_layout` order)."""
    return np.concatenate([model.pack_stage(st) for st in model.stages])


def unpack(model, x):
    """Flat vector → list of stage dictionaries shaped like ``model.stages``."""
    return [model.unpack_stage(chunk) for chunk in np.split(np.asarray(x, dtype=float), len(model.stages))]


def flat_names(model):
    """The name of every entry of :func:`pack`'s vector (RBF weights repeat their name)."""
    return [name for _ in model.stages for name, n, _ in model.stage_layout for _ in range(n)]


def bounds(model):
    """Box bounds of :func:`pack`'s vector: a user model's own box (:meth:`~fem_crossdiff.model.UFLModel.box`), the
    built-in family's from :data:`BOUNDS`."""
    if hasattr(model, "box"):
        return [tuple(b) for b in model.box()]
    return [BOUNDS[name] for _ in model.stages for name, n, _ in model.stage_layout for _ in range(n)]
