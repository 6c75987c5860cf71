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

Every named model of the literature is a special case (:mod:`fem_crossdiff.model.named`). A model is a plain,
JSON-friendly description (numbers only); :class:`fem_crossdiff.fem.forms.DiscreteModel` realises it in UFL on a
mesh, its parameters held in Firedrake functions, ready to be pyadjoint controls.
"""
import math
from dataclasses import dataclass, field, asdict

import numpy as np

from ..errors import ModelError
from .base import StagedModel, check_horizon, check_scheme, check_sealed
from .influence import Influence

__all__ = ["CrossDiffusionModel", "COEFFICIENTS", "PSI_PARAMETER", "STATE_RANGE"]

#: Per-stage scalar parameters of every model.
COEFFICIENTS = ("d11", "d22", "rho", "beta", "lam", "mu")
#: Stage parameter of the reaction :math:`\psi(v)`: its RBF weights.
PSI_PARAMETER = "wpsi"
#: Default range of the state variables over which the ellipticity certificate is evaluated.
STATE_RANGE = {"v": 1.0, "grad_u": 1.0}


@dataclass
class CrossDiffusionModel(StagedModel):
    r"""A cross-diffusion–reaction model: structure (influence functions) and per-stage parameters.

    ``h11`` is an optional second factor of the :math:`u`-diffusivity, :math:`g_{11}(s)h_{11}(s')`: with
    :math:`g_{11}(|\nabla u|)` and :math:`h_{11}(v)` the edge indicator :math:`v` modulates how the gradient
    stops diffusion (both positive, so the product keeps the ellipticity floor; its parameter is ``w11h``/``k11h``).
    ``psi`` is the optional reaction :math:`\psi(v) = \sum_m w_m e^{-(v-c_m)^2/2\sigma^2}` of the :math:`u`-equation,
    an ``"rbf"`` :class:`Influence` of :math:`v` with floor 0 and *signed* weights ``wpsi`` (None: :math:`\psi = 0`).
    A bounded reaction: it leaves :math:`D`, hence ellipticity, untouched. With :math:`v` an edge indicator it
    moves :math:`u` across edges (steepening them: what positive diffusion alone cannot do).
    ``stages`` is a list of dictionaries with the :data:`COEFFICIENTS` and the influence parameters; stage
    ``k`` of ``K`` acts on the time steps ``n`` with ``n*K // steps == k``. ``time``, ``steps`` and ``scheme`` are
    the model's default horizon, number of steps and time scheme (a learned model's: those it was trained for).
    """
    name: str
    g11: Influence = field(default_factory=Influence)
    g22: Influence = field(default_factory=Influence)
    h11: Influence = field(default_factory=Influence)
    psi: Influence = None
    stages: list = field(default_factory=list)
    time: float = 1.0
    steps: int = 10
    scheme: str = "semi-implicit"
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
        check_scheme(self.scheme, f"model '{self.name}'")

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

    @property
    def state_dependent(self):
        """True when :math:`D` depends on the state (any influence factor not constant): the semi-implicit matrix
        then changes from step to step. The one predicate every path uses (the UFL solver's constant Jacobian,
        the fast path's matrix reuse)."""
        return any(g.kind != "one" for _, g in self.influences)

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
        if not isinstance(stage, dict):
            raise ModelError(f"model '{self.name}' stage {k}: expected a dictionary of parameters, got {stage!r}")
        try:
            stage = {key: (np.asarray(val, dtype=float).tolist() if np.ndim(val) else float(val))
                     for key, val in stage.items()}
        except (TypeError, ValueError) as e:
            raise ModelError(f"model '{self.name}' stage {k}: parameters must be numbers or lists of numbers "
                             f"({e})") from None
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

    def matrix(self, stage=0):
        """The constant matrix :math:`M = (d_{ij})` of one stage, as a numpy array."""
        p = self.stages[stage]
        c = p["rho"] * math.sqrt(max(p["d11"] * p["d22"], 0.0))
        return np.array([[p["d11"], c + p["beta"]], [c - p["beta"], p["d22"]]])

    # -- the model's UFL (the one definition every path is checked against) -----------------------------
    #: Number of components of :math:`w = (u, v)`; its certificate is proven (the tests cross-check it by sampling).
    components, proven_certificate = 2, True

    def diffusion(self, w, p):
        r""":math:`D(w) = G^{1/2} M G^{1/2}` as a UFL 2×2 matrix at the state ``w`` (UFL vector; the flux of
        component :math:`i` is :math:`\sum_j D_{ij}\nabla w_j`) for the stage parameters ``p`` (name → UFL scalar,
        or a list of them for RBF weights)."""
        import ufl
        g11, g22 = self._ufl_influence("11", w, p), self._ufl_influence("22", w, p)
        if g11 is None and g22 is None:
            off, g11, g22 = 1, 1, 1
        elif g22 is None:
            off, g22 = ufl.sqrt(g11), 1
        elif g11 is None:
            off, g11 = ufl.sqrt(g22), 1
        else:
            off = ufl.sqrt(g11 * g22)
        c = p["rho"] * ufl.sqrt(p["d11"] * p["d22"])
        return ufl.as_matrix([[p["d11"] * g11, (c + p["beta"]) * off],
                              [(c - p["beta"]) * off, p["d22"] * g22]])

    def _ufl_influence(self, which, w, p):
        """:math:`g_{11}h_{11}` or :math:`g_{22}` at ``w`` (UFL), None where all factors are 1."""
        import ufl
        out = None
        for key in self.factors(which):
            g = self.influence(key)
            if g.kind == "one":
                continue
            par = p[g.parameter(key)]
            value = (g.evaluate(w[1], par, lib=ufl) if g.variable == "v"
                     else g.of_grad2(ufl.inner(ufl.grad(w[0]), ufl.grad(w[0])), par, lib=ufl))
            out = value if out is None else out * value
        return out

    def reaction(self, w, f, p):
        r"""The reaction :math:`(\lambda(f - u), -\mu v)` (linearly implicit in the semi-implicit scheme)."""
        import ufl
        return ufl.as_vector([p["lam"] * (f - w[0]), -p["mu"] * w[1]])

    def explicit_reaction(self, w, f, p):
        r"""The learned reaction :math:`(\psi(v), 0)`, explicit in the semi-implicit scheme (None without one)."""
        import ufl
        if self.psi is None:
            return None
        return ufl.as_vector([self.psi.evaluate(w[1], p[PSI_PARAMETER], lib=ufl), 0])

    @staticmethod
    def initial(f):
        """:math:`w(0) = (f, 0)`."""
        return [f, 0.0]

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

    def nonmonotone_flux(self, samples=2001):
        r"""The smallest :math:`s = |\nabla u|` (over the stages and :data:`STATE_RANGE`) beyond which the
        :math:`u`-flux :math:`s\,g_{11}(s)` decreases (Perona–Malik type: forward–backward diffusion, the semi-implicit
        lagging keeps it stable, an implicit step's system is not monotone), or None."""
        g = self.g11
        if g.kind == "one" or g.variable != "grad_u":
            return None
        s = np.linspace(0.0, STATE_RANGE["grad_u"], samples)
        worst = None
        for p in self.stages:
            flux = s * g.of_grad2(s * s, p[g.parameter("11")])
            down = np.flatnonzero(np.diff(flux) < -1e-12 * np.abs(flux).max())
            if down.size:
                worst = s[down[0]] if worst is None else min(worst, s[down[0]])
        return None if worst is None else float(worst)

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
    def fields(self):
        """The model's fields as plain data, what :meth:`from_dict` takes (no certificate, no digest): the
        starting point of a modified copy."""
        return asdict(self)

    def to_dict(self):
        """The model as JSON-ready data, :meth:`sealed`."""
        return self.sealed(self.fields())

    @classmethod
    def from_dict(cls, d, where="model"):
        d, stored_cert = check_sealed(d, where)
        try:
            for key in ("g11", "g22", "h11", "psi"):
                if d.get(key) is not None:
                    d[key] = Influence(**d[key])
                elif key != "psi":
                    d[key] = Influence()
            model = cls(**d)
        except (TypeError, AttributeError) as e:
            raise ModelError(f"{where}: malformed model description ({e})") from None
        alpha = model.check_elliptic(where)
        if stored_cert is not None and not isinstance(stored_cert, (int, float)):
            raise ModelError(f"{where}: certificate {stored_cert!r} is not a number")
        if stored_cert is not None and not np.isclose(stored_cert, alpha, rtol=1e-6, atol=1e-12):
            raise ModelError(f"{where}: stored ellipticity certificate {stored_cert:g} does not match the "
                             f"parameters (recomputed {alpha:g}); the file has been altered or corrupted")
        return model

    def replace(self, **changes):
        """A validated copy with some fields changed (the certificate is recomputed)."""
        return CrossDiffusionModel.from_dict({**self.fields(), **changes}, self.name)
