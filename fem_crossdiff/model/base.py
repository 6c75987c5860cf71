"""What every model shares, the built-in family and a user's UFL model alike: parameters per stage (packed as one
vector per stage), the horizon checks, the content digest of model files, and the rule that a trained model runs
only within what it was trained for."""
import hashlib
import json
import math

import numpy as np

from ..errors import ModelError

__all__ = ["StagedModel", "check_horizon", "content_digest"]


def content_digest(d):
    """SHA-256 of the model description ``d`` without its digest (canonical JSON: sorted keys, no spaces)."""
    body = {k: v for k, v in d.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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

    def with_stages(self, stages):
        """A copy with other stage parameters (validated)."""
        return self.replace(stages=stages)
