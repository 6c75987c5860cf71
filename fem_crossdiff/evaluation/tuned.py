"""The classic models' parameters and TV-Chambolle's weight, tuned on training images (``demos/tune_classic.py``,
stored in ``tuned.json`` beside this module) per noise level. Only tuned levels are served: another level is
refused with the list, never silently replaced by the nearest."""
import json
import os

from ..errors import InputError

__all__ = ["TUNED", "tuned_levels", "tuned_classic", "tuned_tv_weight"]

#: The tuned parameters' file (written by ``demos/tune_classic.py``).
TUNED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tuned.json")


def _load(section):
    with open(TUNED) as fh:
        return json.load(fh).get(section, {})


def tuned_levels(section="tuned"):
    """The noise levels (0–255 scale) with tuned parameters in ``section`` ("tuned": classic models, "tv")."""
    return sorted(float(s) for s in _load(section))


def _tuned(section, sigma255):
    entries = _load(section)
    for level, entry in entries.items():
        if abs(float(level) - float(sigma255)) < 1e-9:
            return entry
    levels = ", ".join(f"{float(s):g}" for s in entries)
    what = "speckle of" if section == "speckle" else "noise level sigma"
    raise InputError(f"no tuned parameters for {what} {sigma255:g} (tuned: {levels or 'none'}); run "
                     "demos/tune_classic.py for it, or leave the classic models out (--no-classic)")


def tuned_classic(sigma255, noise="gaussian"):
    """{model name: parameters} tuned on training images for the noise level ``sigma255`` (for ``noise="speckle"``:
    the looks)."""
    section = "speckle" if noise == "speckle" else "tuned"
    return {name: entry["params"] for name, entry in _tuned(section, sigma255).items()}


def tuned_tv_weight(sigma255):
    """The TV-Chambolle weight tuned on training images for the noise level ``sigma255``."""
    return _tuned("tv", sigma255)["params"]["weight"]
