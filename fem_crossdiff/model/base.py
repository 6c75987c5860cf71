"""What every model shares, the built-in family and a user's UFL model alike: parameters per stage (packed as one
vector per stage), the horizon checks, the content digest of model files, and the rule that a trained model runs
only within what it was trained for."""
import hashlib
import json
import math

import numpy as np

from ..errors import ModelError

__all__ = ["StagedModel", "check_horizon", "check_scheme", "check_sealed", "check_unsealed_file", "content_digest",
           "FORMAT_VERSION", "SCHEME_NAMES"]

#: The version of the model file format (a file of another version is refused).
FORMAT_VERSION = 1
#: The time schemes of the finite-element layer (:class:`~fem_crossdiff.fem.evolution.Evolution`). A model records
#: the one it runs with by default — for a learned model, the one it was trained for.
SCHEME_NAMES = ("semi-implicit", "implicit", "crank-nicolson", "split")


def content_digest(d):
    """SHA-256 of the model description ``d`` without its digest (canonical JSON: sorted keys, no spaces)."""
    body = {k: v for k, v in d.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_sealed(d, where="model"):
    """Check a model description read from a file (``where``) against its digest and format version (see
    :meth:`StagedModel.sealed`); returns ``(fields, certificate)``: a copy without digest, format and certificate,
    and the stored certificate (None if there is none). ``provenance``, if present, must be a JSON object.
    (A description without a digest passes here, as descriptions made in memory do; a *file* without one is
    further checked by :func:`check_unsealed_file`.)"""
    if not isinstance(d, dict):
        raise ModelError(f"{where}: expected a JSON object describing a model")
    provenance = d.get("provenance")
    if provenance is not None and not isinstance(provenance, dict):
        raise ModelError(f"{where}: field \"provenance\" is {provenance!r}; expected a JSON object (how the model "
                         "was made) or none")
    stored = d.get("digest")
    if stored is not None and stored != content_digest(d):
        raise ModelError(f"{where}: its contents do not match the digest stored with them; the file has been "
                         "altered or corrupted")
    if d.get("format", FORMAT_VERSION) != FORMAT_VERSION:
        raise ModelError(f"{where}: unsupported format version {d['format']!r}; expected {FORMAT_VERSION}")
    fields = {k: v for k, v in d.items() if k not in ("digest", "format", "certificate")}
    return fields, d.get("certificate")


def check_unsealed_file(d, where):
    """Refuse a model file (``where``) that has no digest yet records a provenance. A file without a digest is
    taken as written by hand, and a hand-written file tells nothing of how it was made; every file the framework
    writes (a trained or shipped model, a checkpoint's model) is sealed with a digest, so one that records its
    provenance without a digest has had the digest removed, perhaps to hide an edit: it is refused like any
    altered file."""
    if isinstance(d, dict) and d.get("digest") is None and d.get("provenance"):
        raise ModelError(f"{where}: records how it was made (\"provenance\") but has no digest; every model file "
                         "the framework writes is sealed with one, so this file has been altered (its digest "
                         "removed): use the original file (a hand-written model file records no provenance)")


def check_scheme(scheme, where="scheme"):
    """Refuse an unknown time scheme by name; returns it."""
    if scheme not in SCHEME_NAMES:
        raise ModelError(f"{where}: unknown time scheme {scheme!r}; expected one of {', '.join(SCHEME_NAMES)}")
    return scheme


def check_horizon(time, steps):
    """Refuse a final time that is not a positive finite number or a step count that is not a positive integer."""
    if isinstance(time, bool) or not (isinstance(time, (int, float)) and math.isfinite(time) and time > 0):
        raise ModelError(f"time must be a positive finite number, got {time}")
    if isinstance(steps, bool) or not isinstance(steps, (int, float)) or int(steps) != steps or steps < 1:
        raise ModelError(f"steps must be a positive integer, got {steps}")


class StagedModel:
    """Stage parameters and horizon of a model. A subclass provides ``name``, ``stages`` (a list of dictionaries,
    one per stage: stage ``k`` of ``K`` acts on the steps ``n`` with ``n*K // steps == k``), ``time``, ``steps``,
    ``provenance``, :attr:`parameter_names` and ``replace(**fields)``."""

    @property
    def stage_layout(self):
        """``(name, size, is_list)`` of every stage parameter, in :attr:`parameter_names` order."""
        first = self.stages[0]
        return [(n, int(np.size(first[n])), np.ndim(first[n]) > 0) for n in self.parameter_names]

    def pack_stage(self, stage):
        """One stage's parameters as a flat vector (RBF weights expanded), in :attr:`stage_layout` order."""
        return np.concatenate([np.atleast_1d(stage[n]).astype(float) for n, _, _ in self.stage_layout])

    def unpack_stage(self, vec):
        """Inverse of :meth:`pack_stage`: a stage dictionary of plain floats and lists."""
        out, i = {}, 0
        for name, n, is_list in self.stage_layout:
            out[name] = [float(x) for x in vec[i:i + n]] if is_list else float(vec[i])
            i += n
        return out

    @property
    def trained(self):
        """True for a model that a training run produced (its provenance records the run's settings)."""
        return bool(self.provenance.get("settings"))

    def check_run(self, time, steps):
        """Refuse a horizon this model cannot honestly run: ``steps`` fewer than its stages (stages would be
        skipped), or, for a trained model, a final time beyond the one it was trained for (its stages would be
        stretched over a horizon no training saw; it drifts). Returns ``(time, steps)`` as numbers."""
        check_horizon(time, steps)
        if steps < len(self.stages):
            raise ModelError(f"model '{self.name}' has {len(self.stages)} stages (one parameter set per stage); "
                             f"{int(steps)} steps would skip {len(self.stages) - int(steps)} of them: use at least "
                             f"{len(self.stages)} steps")
        if self.trained and time > self.time * (1 + 1e-9):
            raise ModelError(f"model '{self.name}' was trained for the time horizon T = {self.time:g}; time {time:g} "
                             "runs it beyond what it learned (use a time <= its own, or train for a longer one)")
        return float(time), int(steps)

    def sealed(self, d):
        """The description ``d`` of this model completed for a file: the format version, the certificate (a lower
        bound of the ellipticity, or None) and the digest of the whole content (checked on loading: a file edited
        by hand, even consistently, e.g. a stage removed, is refused)."""
        d["format"] = FORMAT_VERSION
        d["certificate"] = self.certificate()
        d["digest"] = content_digest(d)
        return d

    def with_stages(self, stages):
        """A copy with other stage parameters (validated)."""
        return self.replace(stages=stages)
