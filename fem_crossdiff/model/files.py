"""Model files (JSON): the built-in family's (numbers only) and a user model's (numbers plus where its definition
lives and the digest of its source). Written atomically, never over an existing file unless asked; on reading,
refused by name when corrupt, altered (digest; or a file that records its provenance with the digest removed), not
elliptic (certificate) or, for a user model, when its definition cannot be found or has changed since the file was
saved (the digest of its source). A hand-written file (no digest, no provenance) is accepted as it is."""
import json
import os
import warnings

from ..errors import ModelError
from ..safeio import atomic_write
from .base import check_sealed, check_unsealed_file
from .colour import ColourModel
from .family import CrossDiffusionModel
from .ufl_model import UFLModel, definition_digest, definition_file, file_digest, load_definition

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


def model_from_dict(d, where="model", folder=None, file=False):
    """The model a JSON description ``d`` holds: a user model if it names its definition, else the built-in family.
    ``file``: ``d`` was read from the file ``where`` (a model file or a checkpoint), which must be sealed if it records
    a provenance (:func:`~.base.check_unsealed_file`)."""
    if file:
        check_unsealed_file(d, where)
    if isinstance(d, dict) and d.get("definition") is not None:
        check_sealed(d, where)                     # before any code of the definition runs
        spec, recorded = d["definition"], d.get("definition_digest")
        path = definition_file(spec, folder)
        if recorded is not None and path is not None and os.path.isfile(path):
            _check_definition(where, path, recorded, file_digest(path))      # before the changed code runs
        try:
            cls = load_definition(spec, folder)
        except ModelError as e:
            raise ModelError(f"{where}: made from the definition {spec!r}, which cannot be loaded ({e}); "
                             "put the definition back where the file says, or edit its \"definition\"") from None
        if recorded is not None:
            _check_definition(where, path or spec, recorded, definition_digest(cls))
        elif d.get("digest") is not None:          # sealed, but saved before definitions were digested
            warnings.warn(f"{where}: records no digest of its definition {spec} (saved by an older version): a "
                          "change to the definition since cannot be detected; save the model again to record one",
                          stacklevel=2)
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
    return model_from_dict(d, path, os.path.dirname(os.path.abspath(path)), file=True)


def _check_definition(where, source, recorded, actual):
    """Refuse a user model file whose definition's source (``source``, its digest now ``actual``) is not the one it
    was saved with (``recorded``)."""
    if actual != recorded:
        raise ModelError(f"{where}: its definition {source} has changed since the model was saved (the digest of its "
                         "source differs), so the model would not run as it was trained or saved: restore that "
                         "definition, or train or save the model again with the edited one")
