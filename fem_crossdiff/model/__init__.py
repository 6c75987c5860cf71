"""The model family :math:`D = G^{1/2} M G^{1/2}` on :math:`w = (u, v)`, its named special cases and its
ellipticity certificate: plain numbers, no Firedrake (the finite-element layer realises a model on a mesh).

* :mod:`.influence` — influence (edge-stopping) functions, one definition for numpy and UFL;
* :mod:`.family` — :class:`CrossDiffusionModel`: parameters per stage, certificate, JSON files;
* :mod:`.named` — heat, Perona–Malik, Gilboa's complex diffusions, Araújo et al.'s cross-diffusions.
"""
from ..errors import ModelError
from .influence import Influence
from .family import (COEFFICIENTS, PSI_PARAMETER, STATE_RANGE, CrossDiffusionModel, check_horizon, load_model,
                     save_model)
from .named import MODELS, make_model, model_help

__all__ = ["ModelError", "Influence", "CrossDiffusionModel", "COEFFICIENTS", "PSI_PARAMETER", "STATE_RANGE",
           "check_horizon", "load_model", "save_model", "MODELS", "make_model", "model_help"]
