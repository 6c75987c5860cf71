r"""The shipped learned models and the blind default built from them.

Files (JSON with their whole provenance): ``sigmaNN.json``, grey, each trained for one Gaussian noise level σ = NN
(0–255 scale); ``colour_sigmaNN.json``, colour models (:class:`~fem_crossdiff.model.ColourModel`); ``speckle_lNN.json``,
for multiplicative speckle of NN looks. How they were trained and chosen: ``README.md`` here.

:func:`blind_model` serves any σ in the shipped range, as blind denoisers do: a convex combination of the two
nearest shipped levels' parameters, weighted in :math:`\log\sigma` (both inside the box bounds, so is the
combination: it is elliptic), or the nearest level where their structures differ.
"""
import copy
import functools
import math
import os
import re

import numpy as np

from ..errors import InputError
from ..model import load_model

__all__ = ["FOLDER", "HELDOUT", "shipped_models", "shipped_model", "blind_model", "blind_colour_model",
           "interpolate_models"]

FOLDER = os.path.dirname(os.path.abspath(__file__))
#: The held-out crops that chose every step of the shipped models: ``training_pairs(sigma, **HELDOUT)`` of the
#: training pictures (``fem-crossdiff validate``), other crops and noise than any training run used.
HELDOUT = {"patch": 96, "per_image": 2, "seed": 12345}
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


def blind_colour_model(sigma255, folder=FOLDER, interpolate=True):
    r"""A colour model for the noise level ``sigma255``: the grey model for the luma's noise :math:`\sigma/\sqrt3`
    (:func:`blind_model`) and the chroma parameters of the nearest shipped colour level (in :math:`\log\sigma`);
    at a shipped colour level whose luma is a shipped grey model, exactly that colour model."""
    from ..model import ColourModel, CHROMA_PARAMETERS
    found = shipped_models(folder, "colour")
    if not found:
        raise InputError(f"no learned colour model is shipped in {folder}")
    luma = blind_model(sigma255 / math.sqrt(3), folder, "grey", interpolate)
    level = min(found, key=lambda s: abs(math.log(s) - math.log(max(sigma255, 1e-9))))
    chroma = _load(found[level])
    if len(chroma.stages) != len(luma.stages):
        raise InputError(f"the colour model for σ {level} has {len(chroma.stages)} stages, the grey models "
                         f"{len(luma.stages)}")
    stages = [{**lst, **{n: cst[n] for n in CHROMA_PARAMETERS}} for lst, cst in zip(luma.stages, chroma.stages)]
    model = ColourModel(luma, stages, name="colour", time=luma.time, steps=luma.steps)
    model.description = f"learned colour, luma {luma.description.removeprefix('learned, ')}, chroma of σ {level}"
    return model


def blind_model(sigma255, folder=FOLDER, kind="grey", interpolate=True):
    """A model for the noise level ``sigma255`` from the shipped ones of ``kind``: the shipped model itself at a
    shipped level, between two levels their interpolation in :math:`\\log\\sigma` (``interpolate``, where their
    structures agree) or the nearer one; outside the shipped range the nearest, refused beyond a factor 1.5."""
    if kind == "colour":
        return blind_colour_model(sigma255, folder, interpolate)
    found = shipped_models(folder, kind)
    if not found:
        raise InputError(f"no learned {kind} model is shipped in {folder}")
    if not (np.isfinite(sigma255) and sigma255 > 0):
        raise InputError(f"noise level sigma {sigma255:g}: expected a positive number")
    levels = sorted(found)
    if sigma255 < levels[0] / 1.5 or sigma255 > levels[-1] * 1.5:
        raise InputError(f"noise level sigma {sigma255:.3g} lies outside the range the shipped {kind} models serve "
                         f"({levels[0] / 1.5:.3g}..{levels[-1] * 1.5:.3g}); give a model with --model")
    if sigma255 <= levels[0] or sigma255 >= levels[-1]:
        level = levels[0] if sigma255 <= levels[0] else levels[-1]
        return _labelled(_load(found[level]), f"shipped σ {level}")
    lo = max(s for s in levels if s <= sigma255)
    hi = min(s for s in levels if s >= sigma255)
    if lo == hi:
        return _labelled(_load(found[lo]), f"shipped σ {lo}")
    t = (math.log(sigma255) - math.log(lo)) / (math.log(hi) - math.log(lo))
    a, b = _load(found[lo]), _load(found[hi])
    if interpolate and a.structure == b.structure and a.scheme == b.scheme:
        model = interpolate_models(a, b, t)
        return _labelled(model, f"σ {sigma255:.3g}: {1 - t:.2f}·σ{lo} + {t:.2f}·σ{hi}")
    level = lo if t < 0.5 else hi
    return _labelled(a if level == lo else b, f"shipped σ {level} (nearest)")


def _labelled(model, label):
    """``model`` described by how it was chosen (its name, part of its structure, stays: compiled forms are reused)."""
    model.description = f"learned, {label}"
    return model
