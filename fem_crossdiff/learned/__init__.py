"""The shipped learned models: ``sigma15.json`` and ``sigma25.json`` (JSON with their whole provenance), each
trained for one Gaussian noise level (0–255 scale). How they were trained and chosen: ``README.md`` here."""
import os
import re

from ..errors import InputError

__all__ = ["FOLDER", "HELDOUT", "shipped_models", "shipped_model"]

FOLDER = os.path.dirname(os.path.abspath(__file__))
#: The held-out crops that chose every step of the shipped models: ``training_pairs(sigma, **HELDOUT)`` of the
#: training pictures (``fem-crossdiff validate``), other crops and noise than any training run used.
HELDOUT = {"patch": 96, "per_image": 2, "seed": 12345}
_NAME = re.compile(r"^sigma(\d+)\.json$")


def shipped_models(folder=FOLDER):
    """``{noise level: path}`` of the shipped models (files ``sigmaNN.json``; other names are not models)."""
    found = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        m = _NAME.match(name)
        if m:
            found[int(m.group(1))] = os.path.join(folder, name)
    return found


def shipped_model(sigma255, folder=FOLDER):
    """Path of the model shipped for the noise level ``sigma255``; :class:`InputError` naming the shipped levels
    if there is none for it (a model trained for another level loses 1.5–2 dB: it is never substituted)."""
    found = shipped_models(folder)
    for level, path in found.items():
        if abs(level - float(sigma255)) < 1e-9:
            return path
    levels = ", ".join(str(s) for s in found) or "none"
    raise InputError(f"no learned model is shipped for noise level sigma {sigma255:g} (shipped: {levels}); "
                     "give a model with --model, or train one with fem-crossdiff train --sigma")
