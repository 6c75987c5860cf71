r"""The shipped learned models and the blind default built from them.

Files (JSON with their whole provenance): ``sigmaNN.json``, grey, each trained for one Gaussian noise level σ = NN
(0–255 scale); ``colour_sigmaNN.json``, colour models (:class:`~fem_crossdiff.model.ColourModel`); ``speckle_lNN.json``,
for multiplicative speckle of NN looks. How they were trained and chosen: ``README.md`` here.

:func:`blind_model` serves any σ in the shipped range, as blind denoisers do: a convex combination of the two
nearest shipped levels' parameters, weighted in :math:`\log\sigma` (both inside the box bounds, so is the
combination: it is elliptic), or the nearest level where their structures differ; below the lowest level, that
model with a stronger fidelity. :func:`blind_colour_model` does the same for colour images, at the same σ, and
:func:`estimated_model` is the blind default: the model for an estimated σ
(:func:`~fem_crossdiff.imaging.noise.estimate_sigma255`).
"""
import copy
import functools
import math
import os
import re

import numpy as np

from ..errors import InputError
from ..model import load_model

__all__ = ["FOLDER", "HELDOUT", "REACH", "BELOW", "FIDELITY_GAIN", "COLOUR_FROM", "shipped_models", "shipped_model",
           "served_range", "blind_model", "blind_colour_model", "estimated_model", "speckle_model",
           "interpolate_models", "compatible", "refit_error"]

FOLDER = os.path.dirname(os.path.abspath(__file__))
#: The held-out crops that chose every step of the shipped models: ``training_pairs(sigma, **HELDOUT)`` of the
#: training pictures (``fem-crossdiff validate``), other crops and noise than any training run used.
HELDOUT = {"patch": 96, "per_image": 2, "seed": 12345}
#: How far beyond the shipped levels the nearest model still serves: a factor 1.5 below the lowest and above the
#: highest (σ for Gaussian noise, looks for speckle).
REACH = 1.5
#: Grey and colour models serve σ down to the lowest shipped level divided by this (:func:`blind_model`: the lowest
#: model with a fidelity raised by :data:`FIDELITY_GAIN` :math:`((\sigma_0/\sigma)^2 - 1)`), i.e. to σ 1, one
#: 8-bit step.
BELOW = 5.0
#: :math:`c` of that fidelity: the least of 4, 5, 6, 8 that kept every held-out crop at or above its input at σ 2, 3
#: and 4 (``demos/PHOTOGRAPHS.md``; 4 left grass 0.1–0.2 dB below it).
FIDELITY_GAIN = 6.0
#: The colour σ from which colour images go through a colour model (:func:`blind_colour_model`), below which through
#: the grey model on each channel: where the two cross on the held-out colour crops (``demos/PHOTOGRAPHS.md``).
COLOUR_FROM = 6.5
_NAMES = {"grey": re.compile(r"^sigma(\d+)\.json$"), "colour": re.compile(r"^colour_sigma(\d+)\.json$"),
          "speckle": re.compile(r"^speckle_l(\d+)\.json$")}


def _load(path):
    """A shipped model file, read once per version of the file (a copy: callers relabel it)."""
    stat = os.stat(path)
    return copy.deepcopy(_load_version(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=64)
def _load_version(path, mtime, size):
    return load_model(path)


def shipped_models(folder=FOLDER, kind="grey"):
    """``{level: path}`` of the shipped models of ``kind`` ("grey", "colour": by σ; "speckle": by looks); other file
    names are not models."""
    found = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        m = _NAMES[kind].match(name)
        if m:
            found[int(m.group(1))] = os.path.join(folder, name)
    return dict(sorted(found.items()))


def shipped_model(sigma255, folder=FOLDER, kind="grey"):
    """Path of the model shipped for exactly the level ``sigma255``; :class:`InputError` naming the shipped levels
    if there is none for it (never substituted: use :func:`blind_model` for any level in range)."""
    found = shipped_models(folder, kind)
    for level, path in found.items():
        if abs(level - float(sigma255)) < 1e-9:
            return path
    levels = ", ".join(str(s) for s in found) or "none"
    raise InputError(f"no learned {'' if kind == 'grey' else kind + ' '}model is shipped for noise level sigma "
                     f"{sigma255:g} (shipped: {levels}); give a model with --model, or train one with "
                     "fem-crossdiff train --sigma")


def interpolate_models(a, b, t):
    """The model whose stage parameters are :math:`(1 - t)\\,p_a + t\\,p_b` (``a``, ``b`` of one structure)."""
    if a.structure != b.structure or a.scheme != b.scheme:
        raise InputError("models of different structure or time scheme cannot be interpolated")
    return a.with_stages([a.unpack_stage((1 - t) * a.pack_stage(sa) + t * b.pack_stage(sb))
                          for sa, sb in zip(a.stages, b.stages)])


def compatible(model, like):
    r"""``model`` rewritten in the structure of ``like``, or None where that cannot be done: each RBF function whose
    number of centres differs from ``like``'s is refitted on ``like``'s centres — least squares over the range where
    either set of centres lies, with non-negative weights for an influence function (its floor, hence the
    certificate, stays) and signed ones for the reaction :math:`\psi` —, everything else must already agree. The
    refitted functions differ from the originals mostly near the ends of the centres' range (:func:`refit_error`: at
    most 16 % of a function's peak for σ 25 in σ 15's functions), and the refitted σ 25 restores images as σ 25 does
    to 0.01 dB; :func:`interpolate_models` can then combine the two."""
    if model.structure == like.structure:
        return model
    if (len(model.stages) != len(like.stages) or model.name != like.name or model.scheme != like.scheme
            or (model.psi is None) != (like.psi is None)):
        return None
    weights = {}
    for key, g in model.functions:
        h = dict(like.functions)[key]
        if g == h:
            continue
        if not (g.kind == h.kind == "rbf" and g.variable == h.variable and g.floor == h.floor and g.span == h.span):
            return None
        weights[g.parameter(key)] = (g, h, key == "psi")
    stages = []
    for stage in model.stages:
        stage = dict(stage)
        for name, (g, h, signed) in weights.items():
            stage[name] = _refit(g, h, stage[name], signed).tolist()
        stages.append(stage)
    return like.replace(stages=stages, time=model.time, steps=model.steps, description=model.description)


def _samples(g, h, count=801):
    """Where two RBF functions of one variable are compared: their centres' range and two widths beyond."""
    lo = min(g.centre_values[0], h.centre_values[0]) - 2 * max(g.width, h.width)
    hi = max(g.centre_values[-1], h.centre_values[-1]) + 2 * max(g.width, h.width)
    return np.linspace(max(lo, 0.0) if g.variable == "grad_u" else lo, hi, count)


def _basis(g, s):
    return np.exp(-(s[:, None] - g.centre_values[None, :]) ** 2 / (2 * g.width ** 2))


def _refit(g, h, weights, signed):
    """The weights on ``h``'s centres whose RBF sum best fits ``g``'s with ``weights`` (non-negative unless
    ``signed``)."""
    s = _samples(g, h)
    target, basis = _basis(g, s) @ np.asarray(weights, dtype=float), _basis(h, s)
    if signed:
        return np.linalg.lstsq(basis, target, rcond=None)[0]
    from scipy.optimize import nnls
    return nnls(basis, target)[0]


def refit_error(model, like):
    """The largest difference, over every stage and RBF function, between ``model``'s functions and their refit in
    ``like``'s structure (:func:`compatible`), relative to the function's largest value."""
    refitted = compatible(model, like)
    worst = 0.0
    for key, g in model.functions:
        h = dict(refitted.functions)[key]
        name = g.parameter(key)
        if name is None:
            continue
        s = _samples(g, h)
        for a, b in zip(model.stages, refitted.stages):
            ga, gb = _basis(g, s) @ np.asarray(a[name]), _basis(h, s) @ np.asarray(b[name])
            worst = max(worst, float(np.max(np.abs(ga - gb)) / max(np.max(np.abs(ga)) + g.floor, 1e-12)))
    return worst


def served_range(folder=FOLDER, kind="grey"):
    """``(lowest, highest)`` level the shipped models of ``kind`` serve. Grey: from the lowest shipped σ /
    :data:`BELOW` (served by the lowest model with a stronger fidelity, :func:`blind_model`) to the highest ×
    :data:`REACH`; colour: the same range, in σ of the colour image (:func:`blind_colour_model`); speckle: the
    shipped looks / and × :data:`REACH`."""
    found = shipped_models(folder, "grey" if kind == "colour" else kind)
    if not found:
        raise InputError(f"no learned {'' if kind == 'grey' else kind + ' '}model is shipped in {folder}")
    return min(found) / (REACH if kind == "speckle" else BELOW), max(found) * REACH


def _check_level(level, folder, kind, what="noise level sigma", unit=""):
    """Refuse a level outside :func:`served_range`, in the user's terms (σ of the image, looks)."""
    if not (np.isfinite(level) and level > 0):
        raise InputError(f"{what} {level:g}: expected a positive number")
    lo, hi = served_range(folder, kind)
    if not lo * (1 - 1e-12) <= level <= hi * (1 + 1e-12):
        name = {"grey": "grey", "colour": "colour", "speckle": "speckle"}[kind]
        raise InputError(f"{what} {level:.3g}{unit} lies outside the range the shipped {name} models serve "
                         f"({lo:.3g}..{hi:.3g}{unit}); give a model with --model")


def blind_colour_model(sigma255, folder=FOLDER, interpolate=True):
    r"""A model for the noise level ``sigma255`` of a colour image (σ of each channel, 0–255 scale): any σ the grey
    models serve (:func:`served_range`; others refused, naming the range in the colour image's σ).

    From :data:`COLOUR_FROM` up: the colour model whose luma block is the grey model for the luma's noise
    :math:`\sigma/\sqrt3` (:func:`blind_model`) and whose chroma parameters are those of the nearest shipped colour
    level (in :math:`\log\sigma`); at a shipped colour level whose luma is a shipped grey model, exactly that colour
    model. Below it: the grey model for σ on every channel (:func:`blind_model`), which restores such nearly clean
    colour images better (held-out colour crops: +0.7 dB at σ 5; the colour model +0.3 dB at σ 7).
    """
    from ..model import ColourModel, CHROMA_PARAMETERS
    _check_level(sigma255, folder, "colour")
    found = shipped_models(folder, "colour")
    if not found or sigma255 < COLOUR_FROM:
        model = blind_model(sigma255, folder, "grey", interpolate)
        model.description = f"learned grey model on each channel, {model.description.removeprefix('learned, ')}"
        return model
    luma = blind_model(sigma255 / math.sqrt(3), folder, "grey", interpolate)
    level = min(found, key=lambda s: abs(math.log(s) - math.log(sigma255)))
    chroma = _load(found[level])
    if len(chroma.stages) != len(luma.stages):
        raise InputError(f"the colour model for σ {level} has {len(chroma.stages)} stages, the grey models "
                         f"{len(luma.stages)}")
    stages = [{**lst, **{n: cst[n] for n in CHROMA_PARAMETERS}} for lst, cst in zip(luma.stages, chroma.stages)]
    model = ColourModel(luma, stages, name="colour", time=luma.time, steps=luma.steps)
    model.description = f"learned colour, luma {luma.description.removeprefix('learned, ')}, chroma of σ {level}"
    return model


def blind_model(sigma255, folder=FOLDER, kind="grey", interpolate=True, refit=False):
    r"""A model for the noise level ``sigma255`` (0–255 scale) from the shipped ones of ``kind`` ("grey" or
    "colour", :func:`blind_colour_model`), any level of :func:`served_range` (others refused, naming the range):

    * at a shipped level, the shipped model itself;
    * between two shipped levels of one structure, the convex combination of their parameters weighted in
      :math:`\log\sigma` (``interpolate``; inside the box bounds, so still certified), else the nearer level in
      :math:`\log\sigma`. Between 15 and 25 the structures differ (RBF centres) and the nearer level serves:
      rewriting σ 25 in σ 15's functions (``refit``, :func:`compatible`) and interpolating lost 0.2–0.8 dB against
      the nearer level, and the convex combination of the two levels' *outputs* gained nothing on average
      (``python -m fem_crossdiff.evaluation.blind --only between``, ``demos/PHOTOGRAPHS.md``);
    * above the highest level, the highest, up to a factor :data:`REACH`;
    * below the lowest level :math:`\sigma_0`, down to :math:`\sigma_0/`:data:`BELOW`, the lowest model with the
      fidelity weight of every stage raised by :math:`\Lambda(\sigma) = c\,((\sigma_0/\sigma)^2 - 1)`,
      :math:`c =` :data:`FIDELITY_GAIN`: as in variational denoising the fidelity grows as :math:`1/\sigma^2`,
      from the trained model at :math:`\sigma_0` towards the identity as :math:`\sigma \to 0` (the lowest model
      itself over-smooths there: 5 dB below the input at σ 2 on the held-out crops; λ is implicit in every scheme,
      so any Λ is stable, and it does not enter the certificate).
    """
    if kind == "colour":
        return blind_colour_model(sigma255, folder, interpolate)
    _check_level(sigma255, folder, kind)
    found = shipped_models(folder, kind)
    levels = sorted(found)
    if sigma255 < levels[0] and kind == "grey":
        gain = FIDELITY_GAIN * ((levels[0] / sigma255) ** 2 - 1)
        model = _load(found[levels[0]])
        model = model.with_stages([dict(st, lam=st["lam"] + gain) for st in model.stages])
        return _labelled(model, f"shipped σ {levels[0]}, fidelity raised by {gain:.3g} for σ {sigma255:.3g}")
    if sigma255 <= levels[0] or sigma255 >= levels[-1]:
        level = levels[0] if sigma255 <= levels[0] else levels[-1]
        return _labelled(_load(found[level]), f"shipped σ {level}")
    lo = max(s for s in levels if s <= sigma255)
    hi = min(s for s in levels if s >= sigma255)
    if lo == hi:
        return _labelled(_load(found[lo]), f"shipped σ {lo}")
    t = (math.log(sigma255) - math.log(lo)) / (math.log(hi) - math.log(lo))
    a, b = _load(found[lo]), _load(found[hi])
    if interpolate:
        b_like_a = compatible(b, a) if refit else (b if b.structure == a.structure else None)
        if b_like_a is not None and b_like_a.scheme == a.scheme:
            refitted = "" if b_like_a is b else f" (σ{hi} refitted to σ{lo}'s functions)"
            model = interpolate_models(a, b_like_a, t)
            return _labelled(model, f"σ {sigma255:.3g}: {1 - t:.2f}·σ{lo} + {t:.2f}·σ{hi}{refitted}")
    level = lo if t < 0.5 else hi
    return _labelled(a if level == lo else b, f"shipped σ {level} (nearest)")


def estimated_model(sigma_hat, folder=FOLDER, kind="grey"):
    """``(model, sigma)``: the blind default for an image whose noise level was estimated as ``sigma_hat`` (what
    ``fem-crossdiff denoise`` runs without ``--sigma``): :func:`blind_model` of the estimate inside the served range
    (:func:`served_range`), of its lowest level below it (a nearly noise-free or flat image), of its highest level
    up to a factor :data:`REACH` above it (an estimate is not exact); beyond that refused, naming the estimate."""
    lo, hi = served_range(folder, kind)
    if sigma_hat > hi * REACH:
        raise InputError(f"estimated noise level sigma {sigma_hat:.3g} lies far above the range the shipped "
                         f"{kind} models serve ({lo:.3g}..{hi:.3g}); are the pixel values on a 0-1 scale? Give "
                         "--sigma, or a model with --model")
    sigma = min(max(sigma_hat, lo), hi)
    return blind_model(sigma, folder, kind), sigma


def speckle_model(looks, folder=FOLDER):
    """The shipped speckle model nearest to ``looks`` (the equivalent number of looks) in :math:`\\log L`; refused,
    naming the range, beyond a factor :data:`REACH` of the shipped ones (:func:`served_range`)."""
    _check_level(looks, folder, "speckle", what="speckle of", unit=" looks")
    found = shipped_models(folder, "speckle")
    level = min(found, key=lambda s: abs(math.log(s) - math.log(looks)))
    return _labelled(_load(found[level]), f"speckle, shipped {level} looks")


def _labelled(model, label):
    """``model`` described by how it was chosen (its name, part of its structure, stays: compiled forms are reused)."""
    model.description = f"learned, {label}"
    return model
