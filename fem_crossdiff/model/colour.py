r"""Colour as one cross-diffusion system: luma with its edge indicator, and two chroma channels smoothed under
luma's edges.

The RGB data :math:`f` is split by an orthogonal opponent transform (:data:`OPPONENT`)

.. math:: Y = \tfrac13(R + G + B),\qquad C_1 = \tfrac12(R - B),\qquad C_2 = \tfrac14(R - 2G + B),

whose rows are orthogonal, so i.i.d. RGB noise of variance :math:`\sigma^2` stays independent, of variances
:math:`\sigma^2/3, \sigma^2/2, 3\sigma^2/8`: luma is less noisy than any channel, and in natural images chroma is
far smoother than luma. The state is :math:`w = (Y, v, C_1, C_2)`:

.. math:: D = \begin{pmatrix} D_{\text{family}}(Y, v) & 0\\ 0 & d_c\,g_c(s)\,I_2\end{pmatrix},\qquad
          g_c(s) = g_0 + \frac{1 - g_0}{\big(1 + (s/k_c)^2\big)^{p_c}},\qquad
          s^2 = |\nabla Y|^2 + \kappa_c\,(|\nabla C_1|^2 + |\nabla C_2|^2),

:math:`R = \big(R_{\text{family}}(Y, v; f_Y),\ \lambda_c(f_{C_1} - C_1),\ \lambda_c(f_{C_2} - C_2)\big)`: the
(Y, v) block is the built-in learned family (a grey model, for the luma noise :math:`\sigma/\sqrt3`), and the chroma
channels diffuse where the joint colour gradient :math:`s` — luma's, and with the weight :math:`\kappa_c \ge 0`
chroma's own — has no edges (:math:`\kappa_c = 0`: luma's edges alone, the default). The exponent
:math:`p_c > 0` sets how sharply edges stop chroma (:math:`p_c = 1`, the default: Perona–Malik's rational function;
large :math:`p_c`: close to :math:`e^{-p_c (s/k_c)^2}`). The output is RGB again (:data:`INVERSE`). The symmetric
part of :math:`D` is block diagonal, so the certificate is :math:`\min(\alpha_{\text{family}}, d_c g_0)` per stage: box
bounds on :math:`d_c` keep every iterate of training elliptic, as for the family.
"""
import numpy as np

from ..errors import ModelError
from .base import StagedModel, check_horizon, check_scheme, check_sealed
from .family import CrossDiffusionModel

__all__ = ["ColourModel", "OPPONENT", "INVERSE", "CHROMA_PARAMETERS", "CHROMA_DEFAULTS", "CHROMA_FLOOR"]

OPPONENT = np.array([[1 / 3, 1 / 3, 1 / 3], [1 / 2, 0.0, -1 / 2], [1 / 4, -1 / 2, 1 / 4]])
INVERSE = np.linalg.inv(OPPONENT)
#: Per-stage parameters of the chroma block: diffusion, edge threshold, fidelity, weight of the chroma gradient,
#: exponent of the influence function.
CHROMA_PARAMETERS = ("dc", "kc", "lamc", "kappac", "pc")
#: Their values where a stage (or an older model file) does not give them.
CHROMA_DEFAULTS = {"dc": 2.0, "kc": 0.05, "lamc": 0.0, "kappac": 0.0, "pc": 1.0}
#: The chroma parameters that model files made before them lack (read as their defaults: the model they described).
_LATER = {"kappac", "pc"}
#: The floor :math:`g_0` of the chroma influence function.
CHROMA_FLOOR = 0.02


class ColourModel(StagedModel):
    """A colour model: the grey learned model ``luma`` on (Y, v) and the chroma block, per stage."""

    components, channels, proven_certificate = 4, 3, True
    state_dependent = True

    def __init__(self, luma, stages=None, *, name="colour", time=None, steps=None, scheme=None, description="",
                 provenance=None):
        if not isinstance(luma, CrossDiffusionModel):
            raise ModelError(f"colour model '{name}': its luma block must be a built-in family model, got {luma!r}")
        self.luma, self.name, self.description = luma, name, description
        self.provenance = dict(provenance or {})
        self.time = luma.time if time is None else time
        self.steps = luma.steps if steps is None else steps
        check_horizon(self.time, self.steps)
        self.scheme = check_scheme(luma.scheme if scheme is None else scheme, f"colour model '{name}'")
        if stages is None:
            stages = [dict(st, **CHROMA_DEFAULTS) for st in luma.stages]
        if len(stages) != len(luma.stages):
            raise ModelError(f"colour model '{name}': {len(stages)} stages, its luma model has {len(luma.stages)}")
        self.stages = []
        for k, st in enumerate(stages):
            required = set(CHROMA_PARAMETERS) - _LATER
            if not isinstance(st, dict) or not required <= set(st):
                raise ModelError(f"colour model '{name}' stage {k}: expected the luma parameters and "
                                 f"{', '.join(CHROMA_PARAMETERS)}")
            luma_part = luma.replace(stages=[{n: st[n] for n in luma.parameter_names if n in st}]).stages[0]
            chroma = {n: float(st.get(n, CHROMA_DEFAULTS[n])) for n in CHROMA_PARAMETERS}
            if not (chroma["dc"] > 0 and chroma["kc"] > 0 and chroma["lamc"] >= 0 and chroma["kappac"] >= 0
                    and chroma["pc"] > 0):
                raise ModelError(f"colour model '{name}' stage {k}: dc={chroma['dc']:g}, kc={chroma['kc']:g}, "
                                 f"pc={chroma['pc']:g} must be > 0 and lamc={chroma['lamc']:g}, "
                                 f"kappac={chroma['kappac']:g} >= 0")
            self.stages.append({**luma_part, **chroma})

    # -- parameters ------------------------------------------------------------------------------------
    @property
    def parameter_names(self):
        return list(self.luma.parameter_names) + list(CHROMA_PARAMETERS)

    @property
    def structure(self):
        return ("colour", self.luma.structure)

    def _luma_stage(self, stage):
        return {n: stage[n] for n in self.luma.parameter_names}

    def certificate(self):
        r""":math:`\min_k \min(\alpha_{\text{family},k}, d_{c,k}\,g_0)` (the symmetric part is block diagonal)."""
        alpha = self.luma.replace(stages=[self._luma_stage(st) for st in self.stages]).certificate()
        return float(min(alpha, min(st["dc"] for st in self.stages) * CHROMA_FLOOR))

    def check_elliptic(self, where=None):
        alpha = self.certificate()
        if not alpha > 0:
            raise ModelError(f"colour model '{self.name}' is not uniformly elliptic: certificate {alpha:g} <= 0")
        return alpha

    # -- UFL ---------------------------------------------------------------------------------------------
    def _opponent(self, rgb):
        import ufl
        return [sum(float(OPPONENT[i, j]) * rgb[j] for j in range(3)) for i in range(3)]

    def diffusion(self, w, p):
        import ufl
        block = self.luma.diffusion(ufl.as_vector([w[0], w[1]]), p)
        grad2 = (ufl.inner(ufl.grad(w[0]), ufl.grad(w[0]))
                 + p["kappac"] * (ufl.inner(ufl.grad(w[2]), ufl.grad(w[2])) + ufl.inner(ufl.grad(w[3]), ufl.grad(w[3]))))
        dc = p["dc"] * (CHROMA_FLOOR + (1 - CHROMA_FLOOR) * (1 + grad2 / p["kc"] ** 2) ** -p["pc"])
        return ufl.as_matrix([[block[0, 0], block[0, 1], 0, 0], [block[1, 0], block[1, 1], 0, 0],
                              [0, 0, dc, 0], [0, 0, 0, dc]])

    def reaction(self, w, f, p):
        import ufl
        fy, fc1, fc2 = self._opponent(f)
        luma = self.luma.reaction(ufl.as_vector([w[0], w[1]]), fy, p)
        return ufl.as_vector([luma[0], luma[1], p["lamc"] * (fc1 - w[2]), p["lamc"] * (fc2 - w[3])])

    def explicit_reaction(self, w, f, p):
        import ufl
        luma = self.luma.explicit_reaction(ufl.as_vector([w[0], w[1]]), self._opponent(f)[0], p)
        return None if luma is None else ufl.as_vector([luma[0], luma[1], 0, 0])

    def initial(self, f):
        fy, fc1, fc2 = self._opponent(f)
        return [fy, 0.0, fc1, fc2]

    def output(self, w):
        """RGB from (Y, C1, C2)."""
        yc = (w[0], w[2], w[3])
        return [sum(float(INVERSE[i, j]) * yc[j] for j in range(3)) for i in range(3)]

    # -- copies and files --------------------------------------------------------------------------------
    def fields(self):
        luma = self.luma.fields()
        luma.pop("provenance", None)
        return dict(luma=luma, stages=[dict(st) for st in self.stages], name=self.name, time=self.time,
                    steps=self.steps, scheme=self.scheme, description=self.description,
                    provenance=dict(self.provenance))

    def replace(self, **changes):
        d = {**self.fields(), **changes}
        luma = d.pop("luma")
        luma = luma if isinstance(luma, CrossDiffusionModel) else CrossDiffusionModel.from_dict(luma, "luma")
        return ColourModel(luma, **d)

    def to_dict(self):
        return self.sealed(dict(self.fields(), kind="colour"))

    @classmethod
    def from_dict(cls, d, where="model"):
        d, _ = check_sealed(d, where)
        d.pop("kind", None)
        try:
            luma = CrossDiffusionModel.from_dict(d.pop("luma"), f"{where} (luma)")
            return cls(luma, **d)
        except (KeyError, TypeError) as e:
            raise ModelError(f"{where}: malformed colour model description ({e})") from None
