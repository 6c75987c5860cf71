"""The models: plain numbers and their UFL, no Firedrake (the finite-element layer realises a model on a mesh).

* :mod:`.influence` — influence (edge-stopping) functions, one definition for numpy and UFL;
* :mod:`.family` — :class:`CrossDiffusionModel`, the built-in family :math:`D = G^{1/2} M G^{1/2}` on
  :math:`w = (u, v)`: parameters per stage, analytic ellipticity certificate, its UFL;
* :mod:`.named` — heat, Perona–Malik, Gilboa's complex diffusions, Araújo et al.'s cross-diffusions;
* :mod:`.ufl_model` — :class:`UFLModel`, a user's own model in UFL with any number of components (its optional
  ``state_bounds``; its definition checked and digested);
* :mod:`.colour` — :class:`ColourModel`, colour as one system: the family on luma, chroma under luma's edges;
* :mod:`.base` — what both share (stages, horizons, digests); :mod:`.files` — model files (JSON: sealed by a
  digest; a file that records its provenance without one, or whose user definition changed, is refused).
"""
from ..errors import ModelError
from .influence import Influence
from .family import COEFFICIENTS, PSI_PARAMETER, STATE_RANGE, CrossDiffusionModel
from .base import check_horizon
from .ufl_model import UFLModel, load_definition
from .colour import CHROMA_PARAMETERS, ColourModel
from .files import load_model, model_from_dict, save_model
from .named import MODELS, make_model, model_help, register_model

__all__ = ["ModelError", "Influence", "CrossDiffusionModel", "COEFFICIENTS", "PSI_PARAMETER", "STATE_RANGE",
           "check_horizon", "UFLModel", "ColourModel", "CHROMA_PARAMETERS", "load_definition", "load_model",
           "model_from_dict", "save_model", "MODELS", "make_model", "model_help", "register_model"]
