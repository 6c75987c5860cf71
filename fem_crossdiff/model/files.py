"""Model files (JSON): the built-in family's (numbers only) and a user model's (numbers plus where its definition
lives). Written atomically, never over an existing file unless asked; on reading, refused by name when corrupt,
altered (digest), not elliptic (certificate) or, for a user model, when its definition cannot be found."""
import json
import os

from ..errors import ModelError
from ..safeio import atomic_write
from .base import check_sealed
from .colour import ColourModel
from .family import CrossDiffusionModel
from .ufl_model import UFLModel, load_definition

__all__ = ["save_model", "load_model", "model_from_dict"]


def save_model(model, path, replace=False):
    """Write ``model`` as JSON (atomically; the ellipticity certificate and a digest are stored with it; a user
    model's definition is recorded relative to the file). An existing ``path`` is replaced only with ``replace``;
    otherwise :class:`~fem_crossdiff.errors.InputError`, nothing changed."""
    path = os.fspath(path)
    d = model.to_dict(os.path.dirname(os.path.abspath(path))) if isinstance(model, UFLModel) else model.to_dict()
    text = json.dumps(d, indent=1)

    def write(tmp):
        with open(tmp, "w") as fh:
            fh.write(text)

    atomic_write(path, write, ".json", replace=replace)


def model_from_dict(d, where="model", folder=None):
    """The model a JSON description ``d`` holds: a user model if it names its definition, else the built-in family."""
    if isinstance(d, dict) and d.get("definition") is not None:
        check_sealed(d, where)                     # before any code of the definition runs
        try:
            cls = load_definition(d["definition"], folder)
        except ModelError as e:
            raise ModelError(f"{where}: made from the definition {d['definition']!r}, which cannot be loaded ({e}); "
                             "put the definition back where the file says, or edit its \"definition\"") from None
        return cls.from_dict(d, where)
    if isinstance(d, dict) and d.get("kind") == "colour":
        return ColourModel.from_dict(d, where)
    return CrossDiffusionModel.from_dict(d, where)


def load_model(path):
    """Read a model JSON; refuses corrupt or altered files, models whose ellipticity certificate fails, and user
    models whose definition cannot be found."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise ModelError(f"{path}: is a directory, expected a model .json file")
    try:
        with open(path) as fh:
            d = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: not a valid model JSON file ({e})") from None
    return model_from_dict(d, path, os.path.dirname(os.path.abspath(path)))
