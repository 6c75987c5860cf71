r"""The cross-diffusion–reaction model family and its named special cases.

.. math::

    \partial_t w = \nabla\cdot\big(D(w)\nabla w\big) + R(w, f),\qquad w = (u, v),\quad u(0) = f,\ v(0) = 0,

with Neumann boundaries, :math:`R(w, f) = (\lambda (f-u) + \psi(v),\ -\mu v)` (the learned reaction
:math:`\psi`, a signed RBF sum, optional; without it :math:`\psi = 0`) and

.. math::

    D = G^{1/2} M G^{1/2} = \begin{pmatrix} d_{11} g_{11} & d_{12}\sqrt{g_{11}g_{22}} \\
                                           d_{21}\sqrt{g_{11}g_{22}} & d_{22} g_{22}\end{pmatrix},
    \qquad d_{12} = \rho\sqrt{d_{11}d_{22}} + \beta,\quad d_{21} = \rho\sqrt{d_{11}d_{22}} - \beta .

:math:`M = (d_{ij})` is stored as :math:`(d_{11}, d_{22}, \rho, \beta)`: its symmetric part has eigenvalues
:math:`\ge \lambda_{\min}(M_s) > 0` whenever :math:`d_{11}, d_{22} > 0` and :math:`|\rho| < 1`, and
:math:`\xi^T D\xi \ge \lambda_{\min}(M_s)\,\min(g_{11}, g_{22})\,|\xi|^2`. So box bounds on these numbers and a
floor on the influence functions :math:`g_{ii}` make *every* admissible model uniformly elliptic — the
stability condition of Araújo et al. and the constraint that keeps learning well posed.

Every named model of the literature is a special case (see :data:`MODELS`). A model is a plain, JSON-friendly
description (numbers only); :meth:`CrossDiffusionModel.on_mesh` turns it into UFL with its parameters held in
Firedrake ``Function``\ s on the real space "R", ready to be pyadjoint controls.
"""
import functools
import inspect
import json
import math
from dataclasses import dataclass, field, asdict

import numpy as np

__all__ = ["Influence", "CrossDiffusionModel", "ModelError", "MODELS", "make_model", "model_help",
           "COEFFICIENTS", "load_model", "save_model"]

#: Per-stage scalar parameters of every model.
COEFFICIENTS = ("d11", "d22", "rho", "beta", "lam", "mu")
#: Stage parameter of the reaction :math:`\psi(v)`: its RBF weights.
PSI_PARAMETER = "wpsi"
#: Default range of the state variables over which the ellipticity certificate is evaluated.
STATE_RANGE = {"v": 1.0, "grad_u": 1.0}
FORMAT_VERSION = 1


#: Regularisation of :math:`|\nabla u|` inside a square root (RBF influence of the gradient only).
GRAD_EPS2 = 1e-12
#: RBF sums by Horner's scheme (two ``exp``) for this many centres; :math:`z` clipped to
#: :math:`[-Z_{max}, Z_{max}]` keeps :math:`e^{-z^2/2}` normal and :math:`e^{mz}` finite for up to 20 centres.
HORNER_CENTRES, HORNER_Z_MAX = range(2, 21), 37.0


class ModelError(ValueError):
    """A model name, parameter or file is unusable (the message names it and the admissible values)."""


# ------------------------------------------------------------------------------------ influence
@dataclass(frozen=True)
class Influence:
    r"""An influence (edge-stopping) function :math:`g(s)` of the edge indicator :math:`s = v` or :math:`s=|\nabla u|`.

    ``kind``:
      * ``"one"``: :math:`g = 1`;
      * ``"rational"``: :math:`g = \text{floor} + (1-\text{floor})/(1 + (s/k)^2)` (Perona–Malik, Gilboa);
      * ``"exponential"``: :math:`g = \text{floor} + (1-\text{floor})\,e^{-(s/k)^2}`;
      * ``"rbf"``: :math:`g = \text{floor} + \sum_m w_m e^{-(s-c_m)^2/(2\sigma^2)}`, :math:`w_m\ge 0`
        (learnable, as in Chen & Pock's TNRD), centres :math:`c_m` evenly spread over ``[-span, span]`` for
        :math:`s = v` and over ``[0, span]`` for :math:`s = |\nabla u| \ge 0`.
    The parameter ``k`` (or the weights ``w``) lives in the model's stage dictionaries under ``k11``/``w11``…
    """
    kind: str = "one"
    variable: str = "v"
    floor: float = 0.0
    centres: int = 0
    span: float = 1.0

    def __post_init__(self):
        if self.kind not in ("one", "rational", "exponential", "rbf"):
            raise ModelError(f"influence kind '{self.kind}' unknown; expected one, rational, exponential or rbf")
        if self.variable not in ("v", "grad_u"):
            raise ModelError(f"influence variable '{self.variable}' unknown; expected 'v' or 'grad_u'")
        if not (self.floor >= 0 and (self.kind == "rbf" or self.floor < 1)):
            raise ModelError(f"influence floor must lie in [0, 1) (any value >= 0 for rbf), got {self.floor}")
        if self.kind == "rbf" and self.centres < 1:
            raise ModelError("an rbf influence needs centres >= 1")

    @functools.cached_property
    def centre_values(self):
        """The RBF centres (computed once, read-only; empty for other kinds)."""
        count = self.centres if self.kind == "rbf" else 0
        c = np.linspace(-self.span if self.variable == "v" else 0.0, self.span, count)
        c.setflags(write=False)
        return c

    @property
    def width(self):
        """RBF width σ: the spacing of the centres."""
        return (1.0 + (self.variable == "v")) * self.span / max(self.centres - 1, 1)

    def parameter(self, ij):
        """Name of this influence's stage parameter (``k11``, ``w22`` …) or None."""
        return {"one": None, "rational": f"k{ij}", "exponential": f"k{ij}", "rbf": f"w{ij}"}[self.kind]

    def evaluate(self, s, p, lib=np):
        """:math:`g(s)` for the parameter ``p`` (``k`` or the weight vector); ``lib`` is numpy or ufl."""
        if self.kind == "one":
            return 1.0 + 0.0 * s if lib is np else 1.0
        if self.kind == "rational":
            return self.floor + (1 - self.floor) / (1 + (s / p) ** 2)
        if self.kind == "exponential":
            return self.floor + (1 - self.floor) * lib.exp(-(s / p) ** 2)
        if lib is not np and self.centres in HORNER_CENTRES:
            return self._rbf_horner(s, p, lib)
        sig2 = 2 * self.width ** 2
        return self.floor + sum(p[m] * lib.exp(-(s - c) ** 2 / sig2) for m, c in enumerate(self.centre_values))

    def of_grad2(self, grad2, p, lib=np):
        r""":math:`g(|\nabla u|)` from :math:`|\nabla u|^2` (rational and exponential kinds need no square root;
        RBFs take :math:`\sqrt{|\nabla u|^2 + \epsilon}`, :data:`GRAD_EPS2`)."""
        if self.kind == "rational":
            return self.floor + (1 - self.floor) / (1 + grad2 / p ** 2)
        if self.kind == "exponential":
            return self.floor + (1 - self.floor) * lib.exp(-grad2 / p ** 2)
        return self.evaluate(lib.sqrt(grad2 + GRAD_EPS2), p, lib=lib)

    def horner_coefficients(self, p):
        """:math:`a_m = w_m e^{-m^2/2}` of the Horner form of the RBF sum (see :meth:`_rbf_horner`)."""
        return [p[m] * math.exp(-0.5 * m * m) for m in range(self.centres)]

    def _rbf_horner(self, s, p, ufl):
        r"""The RBF sum in UFL with two ``exp`` (as the fast path's numpy): centres spaced by the width
        :math:`\sigma`, :math:`z = (s - c_0)/\sigma` clipped to :math:`[-37, 37]` (:data:`HORNER_Z_MAX`),
        :math:`R = e^z`, :math:`\sum_m w_m e^{-(z-m)^2/2} = e^{-z^2/2}\sum_m (w_m e^{-m^2/2}) R^m` (Horner). A smaller
        expression than the direct sum, so pyadjoint's symbolic work per adjoint block shrinks too."""
        z = ufl.min_value(ufl.max_value((s - float(self.centre_values[0])) / self.width, -HORNER_Z_MAX),
                          HORNER_Z_MAX)
        R = ufl.exp(z)
        a = self.horner_coefficients(p)
        acc = a[-1]
        for am in a[-2::-1]:
            acc = acc * R + am
        return self.floor + acc * ufl.exp(-z * z / 2)


# ----------------------------------------------------------------------------------------- model
@dataclass
class CrossDiffusionModel:
    r"""A cross-diffusion–reaction model: structure (influence functions) and per-stage parameters.

    ``h11`` is an optional second factor of the :math:`u`-diffusivity, :math:`g_{11}(s)h_{11}(s')`: with
    :math:`g_{11}(|\nabla u|)` and :math:`h_{11}(v)` the edge indicator :math:`v` modulates how the gradient
    stops diffusion (both positive, so the product keeps the ellipticity floor; its parameter is ``w11h``/``k11h``).
    ``psi`` is the optional reaction :math:`\psi(v) = \sum_m w_m e^{-(v-c_m)^2/2\sigma^2}` of the :math:`u`-equation,
    an ``"rbf"`` :class:`Influence` of :math:`v` with floor 0 and *signed* weights ``wpsi`` (None: :math:`\psi = 0`).
    A bounded reaction: it leaves :math:`D`, hence ellipticity, untouched. With :math:`v` an edge indicator it
    moves :math:`u` across edges (steepening them: what positive diffusion alone cannot do).
    ``stages`` is a list of dictionaries with the :data:`COEFFICIENTS` and the influence parameters; stage
    ``k`` of ``K`` acts on the time steps ``n`` with ``n*K // steps == k``. ``time`` and ``steps`` are the
    model's default horizon and number of steps.
    """
    name: str
    g11: Influence = field(default_factory=Influence)
    g22: Influence = field(default_factory=Influence)
    h11: Influence = field(default_factory=Influence)
    psi: Influence = None
    stages: list = field(default_factory=list)
    time: float = 1.0
    steps: int = 10
    description: str = ""
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.stages:
            raise ModelError(f"model '{self.name}' has no parameter stages")
        for ij, g in self.influences:
            if g.kind == "rbf" and g.floor <= 0:
                raise ModelError(f"model '{self.name}': rbf influence g{ij} needs a floor > 0 (the ellipticity margin)")
        psi = self.psi
        if psi is not None and not (psi.kind == "rbf" and psi.variable == "v" and psi.floor == 0):
            raise ModelError(f"model '{self.name}': psi must be an rbf influence of v with floor 0, got {psi}")
        self.stages = [self._checked_stage(s, k) for k, s in enumerate(self.stages)]
        check_horizon(self.time, self.steps)

    # -- parameters ------------------------------------------------------------------------------
    @property
    def influences(self):
        """``(key, influence)`` of every influence function: ``("11", g11), ("22", g22), ("11h", h11)``."""
        return (("11", self.g11), ("22", self.g22), ("11h", self.h11))

    @property
    def functions(self):
        """``(key, function)`` of every parametrised function: :attr:`influences` and, if present, ``("psi", psi)``
        (its parameter ``Influence.parameter("psi")`` is :data:`PSI_PARAMETER`)."""
        return self.influences + ((("psi", self.psi),) if self.psi is not None else ())

    @property
    def structure(self):
        """What fixes the model's forms (all but the stage values): name, influence functions, ψ, stage count."""
        return (self.name, self.g11, self.g22, self.h11, self.psi, len(self.stages))

    def influence(self, key):
        """The influence function ``g11``, ``g22`` or ``h11`` for the key ``"11"``, ``"22"`` or ``"11h"``."""
        return dict(self.influences)[key]

    @staticmethod
    def factors(which):
        """Keys of the influence functions whose product is the diagonal coefficient ``which`` ("11" or "22")."""
        return ("11", "11h") if which == "11" else (which,)

    @property
    def parameter_names(self):
        names = list(COEFFICIENTS)
        for ij, g in self.functions:
            if g.parameter(ij):
                names.append(g.parameter(ij))
        return names

    def _checked_stage(self, stage, k):
        stage = {key: (np.asarray(val, dtype=float).tolist() if np.ndim(val) else float(val))
                 for key, val in stage.items()}
        missing = set(self.parameter_names) - set(stage)
        extra = set(stage) - set(self.parameter_names)
        if missing or extra:
            raise ModelError(f"model '{self.name}' stage {k}: missing parameters {sorted(missing)}, "
                             f"unknown parameters {sorted(extra)}; expected {self.parameter_names}")
        for key, val in stage.items():
            if not np.all(np.isfinite(val)):
                raise ModelError(f"model '{self.name}' stage {k}: parameter {key}={val} is not finite")
        for ij, g in self.functions:
            name = g.parameter(ij)
            if g.kind == "rbf" and np.shape(stage[name]) != (g.centres,):
                raise ModelError(f"model '{self.name}' stage {k}: {name} must have {g.centres} weights")
        return stage

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

    def matrix(self, stage=0):
        """The constant matrix :math:`M = (d_{ij})` of one stage, as a numpy array."""
        p = self.stages[stage]
        c = p["rho"] * math.sqrt(max(p["d11"] * p["d22"], 0.0))
        return np.array([[p["d11"], c + p["beta"]], [c - p["beta"], p["d22"]]])

    # -- ellipticity ------------------------------------------------------------------------------
    def _range_of(self, ij, g, p, samples):
        smax = STATE_RANGE[g.variable]
        s = np.linspace(-smax if g.variable == "v" else 0.0, smax, samples)
        vals = g.evaluate(s, p.get(g.parameter(ij)) if g.parameter(ij) else None)
        return vals.min(), vals.max()

    def influence_range(self, stage=0, samples=401):
        """Bounds of :math:`g_{11}h_{11}` and :math:`g_{22}` over the state range :data:`STATE_RANGE` (for the
        product, the products of its factors' bounds: both factors are positive)."""
        p = self.stages[stage]
        (lo11, hi11), (lo22, hi22), (loh, hih) = (self._range_of(ij, g, p, samples) for ij, g in self.influences)
        return min(lo11 * loh, lo22), max(hi11 * hih, hi22)

    def certificate(self):
        r"""Ellipticity certificate :math:`\alpha = \min_{\text{stages}}\lambda_{\min}(M_s)\min_s g`.

        :math:`\xi^T D(w)\xi \ge \alpha|\xi|^2` for every state in :data:`STATE_RANGE` (and, for influence
        functions with a positive floor, for every state). The model is well posed when ``alpha > 0``.
        """
        alphas = []
        for k in range(len(self.stages)):
            M = self.matrix(k)
            lam_min = np.linalg.eigvalsh(0.5 * (M + M.T)).min()
            gmin, _ = self.influence_range(k)
            alphas.append(lam_min * gmin if lam_min > 0 else lam_min)
        return float(min(alphas))

    def check_elliptic(self, where=None):
        """Raise :class:`ModelError` unless every stage is uniformly elliptic."""
        for k, p in enumerate(self.stages):
            bad = []
            if p["d11"] <= 0 or p["d22"] <= 0:
                bad.append(f"d11={p['d11']:g} and d22={p['d22']:g} must be > 0")
            if abs(p["rho"]) >= 1:
                bad.append(f"rho={p['rho']:g} must satisfy |rho| < 1, i.e. (d12+d21)^2 < 4 d11 d22")
            if p["lam"] < 0 or p["mu"] < 0:
                bad.append(f"lam={p['lam']:g} and mu={p['mu']:g} must be >= 0")
            for ij, g in self.influences:
                name = g.parameter(ij)
                if g.kind in ("rational", "exponential") and p[name] <= 0:
                    bad.append(f"{name}={p[name]:g} must be > 0")
                if g.kind == "rbf" and min(p[name]) < 0:
                    bad.append(f"{name} weights must be >= 0, got min {min(p[name]):g}")
            if bad:
                src = f" ({where})" if where else ""
                raise ModelError(f"model '{self.name}'{src} stage {k} is not uniformly elliptic: " + "; ".join(bad))
        alpha = self.certificate()
        if not alpha > 0:
            raise ModelError(f"model '{self.name}' is not uniformly elliptic: certificate {alpha:g} <= 0")
        return alpha

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self):
        d = asdict(self)
        d["format"] = FORMAT_VERSION
        d["certificate"] = self.certificate()
        return d

    @classmethod
    def from_dict(cls, d, where="model"):
        if not isinstance(d, dict):
            raise ModelError(f"{where}: expected a JSON object describing a model")
        d = dict(d)
        if d.pop("format", FORMAT_VERSION) != FORMAT_VERSION:
            raise ModelError(f"{where}: unsupported format version; expected {FORMAT_VERSION}")
        stored_cert = d.pop("certificate", None)
        try:
            d["g11"] = Influence(**d.get("g11", {}))
            d["g22"] = Influence(**d.get("g22", {}))
            d["h11"] = Influence(**d.get("h11", {}))
            d["psi"] = None if d.get("psi") is None else Influence(**d["psi"])
            model = cls(**d)
        except TypeError as e:
            raise ModelError(f"{where}: malformed model description ({e})") from None
        alpha = model.check_elliptic(where)
        if stored_cert is not None and not np.isclose(stored_cert, alpha, rtol=1e-6, atol=1e-12):
            raise ModelError(f"{where}: stored ellipticity certificate {stored_cert:g} does not match the "
                             f"parameters (recomputed {alpha:g}); the file has been altered or corrupted")
        return model

    def replace(self, **changes):
        """A validated copy with some fields changed (the certificate is recomputed)."""
        d = self.to_dict()
        d.update(changes)
        del d["certificate"]
        return CrossDiffusionModel.from_dict(d, self.name)

    def with_stages(self, stages):
        """A copy with other stage parameters (validated)."""
        return self.replace(stages=stages)

    def on_mesh(self, mesh):
        """Realise this model on ``mesh`` (see :class:`fem_crossdiff.forms.DiscreteModel`)."""
        from .forms import DiscreteModel
        return DiscreteModel(self, mesh)


def check_horizon(time, steps):
    if not (isinstance(time, (int, float)) and math.isfinite(time) and time > 0):
        raise ModelError(f"time must be a positive finite number, got {time}")
    if int(steps) != steps or steps < 1:
        raise ModelError(f"steps must be a positive integer, got {steps}")


def save_model(model, path):
    """Write ``model`` as JSON (atomically; the ellipticity certificate is stored with it)."""
    from ._io import atomic_write
    text = json.dumps(model.to_dict(), indent=1)

    def write(tmp):
        with open(tmp, "w") as fh:
            fh.write(text)

    atomic_write(path, write, ".json")


def load_model(path):
    """Read a model JSON; refuses corrupt files and models whose ellipticity certificate fails."""
    import os
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelError(f"{path}: no such model file")
    try:
        with open(path) as fh:
            d = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: not a valid model JSON file ({e})") from None
    return CrossDiffusionModel.from_dict(d, path)


# ------------------------------------------------------------------------------- named models
def _stage(d11=1.0, d12=0.0, d21=0.0, d22=1.0, lam=0.0, mu=0.0, **influence):
    """Stage dictionary from the user-facing matrix entries."""
    if d11 <= 0 or d22 <= 0:
        raise ModelError(f"d11={d11:g} and d22={d22:g} must be > 0 for an elliptic model")
    rho = (d12 + d21) / (2 * math.sqrt(d11 * d22))
    if abs(rho) >= 1:
        raise ModelError(f"(d12 + d21)^2 = {(d12 + d21) ** 2:g} must be < 4 d11 d22 = {4 * d11 * d22:g} "
                         "for an elliptic model")
    return dict(d11=d11, d22=d22, rho=rho, beta=(d12 - d21) / 2, lam=lam, mu=mu, **influence)


def heat(time=0.75, steps=8, lam=0.0):
    r"""Linear diffusion :math:`u_t = \Delta u` (Gaussian scale space, :math:`\sigma = \sqrt{2t}`)."""
    return CrossDiffusionModel("heat", stages=[_stage(lam=lam)], time=time, steps=steps,
                               description=heat.__doc__)


def perona_malik(k=0.1, time=2.0, steps=8, lam=0.0):
    r"""Perona–Malik :math:`u_t = \nabla\cdot(g(|\nabla u|)\nabla u)`, :math:`g = 1/(1+(|\nabla u|/k)^2)`."""
    return CrossDiffusionModel("perona-malik", g11=Influence("rational", "grad_u"),
                               stages=[_stage(lam=lam, k11=k)], time=time, steps=steps,
                               description=perona_malik.__doc__)


def linear_complex(theta=math.pi / 30, time=0.75, steps=8, lam=0.0):
    r"""Gilboa's linear complex diffusion :math:`I_t = e^{i\theta}\Delta I`, :math:`I = u + iv`.

    :math:`D = \begin{pmatrix}\cos\theta & -\sin\theta\\ \sin\theta & \cos\theta\end{pmatrix}`; for small
    :math:`\theta`, :math:`v/\theta \to t\,\Delta u` (a smoothed Laplacian: an edge detector).
    """
    if not 0 <= theta < math.pi / 2:
        raise ModelError(f"theta={theta:g} must lie in [0, pi/2) for an elliptic model")
    c, s = math.cos(theta), math.sin(theta)
    return CrossDiffusionModel("linear-complex", stages=[_stage(c, -s, s, c, lam=lam)], time=time,
                               steps=steps, description=linear_complex.__doc__)


def nonlinear_complex(theta=math.pi / 30, k=0.05, time=1.0, steps=8, lam=0.0):
    r"""Gilboa's nonlinear complex diffusion (NCDF): :math:`D = g(v)R(\theta)`, :math:`g = 1/(1+(v/(k\theta))^2)`."""
    if not 0 < theta < math.pi / 2:
        raise ModelError(f"theta={theta:g} must lie in (0, pi/2) for an elliptic model")
    c, s = math.cos(theta), math.sin(theta)
    g = Influence("rational", "v")
    kk = k * theta
    return CrossDiffusionModel("nonlinear-complex", g11=g, g22=g,
                               stages=[_stage(c, -s, s, c, lam=lam, k11=kk, k22=kk)], time=time, steps=steps,
                               description=nonlinear_complex.__doc__)


def linear_cross(d11=1.0, d12=0.0, d21=0.1, d22=1.0, time=0.75, steps=8, lam=0.0, mu=0.0):
    r"""Araújo–Barbeiro–Cuesta–Durán linear cross-diffusion: constant positive definite :math:`D = (d_{ij})`."""
    return CrossDiffusionModel("linear-cross", stages=[_stage(d11, d12, d21, d22, lam=lam, mu=mu)],
                               time=time, steps=steps, description=linear_cross.__doc__)


def nonlinear_cross(d11=1.0, d12=-0.05, d21=0.05, d22=0.5, k=0.002, time=1.0, steps=8, lam=0.0, mu=0.0):
    r"""Araújo et al. nonlinear cross-diffusion :math:`D = g(v)(d_{ij})`, :math:`g = 1/(1+(v/k)^2)`."""
    g = Influence("rational", "v")
    return CrossDiffusionModel("nonlinear-cross", g11=g, g22=g,
                               stages=[_stage(d11, d12, d21, d22, lam=lam, mu=mu, k11=k, k22=k)],
                               time=time, steps=steps, description=nonlinear_cross.__doc__)


#: Named models: name -> factory (keyword arguments are the documented parameters with their defaults).
#: Defaults (time horizon in pixel² units, edge thresholds for images in [0, 1]) are the values that
#: ``demos/tune_classic.py`` found best at σ = 25 on training images; ``fem_crossdiff/tuned.json`` has σ = 15 too.
MODELS = {"heat": heat, "perona-malik": perona_malik, "linear-complex": linear_complex,
          "nonlinear-complex": nonlinear_complex, "linear-cross": linear_cross,
          "nonlinear-cross": nonlinear_cross}


def make_model(name, **params):
    """A named model (see :data:`MODELS`) with some parameters overridden, or a model JSON file's path."""
    if name not in MODELS:
        if str(name).endswith(".json"):
            model = load_model(name)
            return _override_horizon(model, params)
        raise ModelError(f"unknown model '{name}'; expected one of {', '.join(MODELS)} or a model .json file")
    factory = MODELS[name]
    allowed = inspect.signature(factory).parameters
    for key, val in params.items():
        if key not in allowed:
            raise ModelError(f"model '{name}' has no parameter '{key}'; its parameters are {', '.join(allowed)}")
        if not isinstance(val, (int, float)) or not math.isfinite(val):
            raise ModelError(f"model '{name}': parameter {key}={val!r} must be a finite number")
    model = factory(**params)
    model.check_elliptic()
    return model


def _override_horizon(model, params):
    extra = set(params) - {"time", "steps"}
    if extra:
        raise ModelError(f"a learned model accepts only time and steps overrides, got {sorted(extra)}")
    return model.replace(**params) if params else model


def model_help():
    """(name, one-line description, {parameter: default}) for every named model."""
    rows = []
    for name, factory in MODELS.items():
        defaults = {k: p.default for k, p in inspect.signature(factory).parameters.items()}
        rows.append((name, inspect.getdoc(factory).splitlines()[0], defaults))
    return rows
