r"""Stability as a constraint: the ellipticity certificate kept :math:`\ge \varepsilon` by an augmented Lagrangian
(``train --stability augmented-lagrangian``), instead of the box of :mod:`.parametrisation` (numpy only).

**The constraint.** A stage :math:`k` of the built-in family has the certificate
:math:`\alpha_k = \lambda_{\min}(M_{s,k})\,\min_s g_k(s)` (:meth:`~fem_crossdiff.model.CrossDiffusionModel.certificate`:
the symmetric part of :math:`M = (d_{ij})`, whose smallest eigenvalue is

.. math::

    \lambda_{\min} = \tfrac12(d_{11} + d_{22}) - \sqrt{\tfrac14(d_{11} - d_{22})^2 + \rho^2 d_{11} d_{22}},

times the least influence over the state range, :math:`\min(\min g_{11}\cdot\min h_{11},\ \min g_{22})` on 401
samples). The box asks :math:`d_{ii} \ge 0.05`, :math:`|\rho| \le 0.95` and floors :math:`g \ge 0.02`, which
guarantee :math:`\alpha_k \ge` :data:`BOX_MARGIN` :math:`= 0.05 \cdot 0.05 \cdot 0.02 = 5\cdot10^{-5}` — a margin
on each parameter separately. Here instead the certificate itself is constrained,

.. math::

    h_k(p) = c_k(p)/\varepsilon - 1 \;\ge\; 0 \qquad (k = 1, \dots, K\ \text{stages}),

with :math:`c_k` a smooth lower bound of :math:`\alpha_k` (below), scaled by :math:`\varepsilon` so that the
constraint is of order one whatever :math:`\varepsilon`. The default :math:`\varepsilon` is :data:`BOX_MARGIN`: the
same guaranteed margin as the box, over a larger set (a large :math:`|\rho|` is allowed where :math:`d_{11},
d_{22}` or the influences make up for it). :math:`d_{11}, d_{22}, \rho` keep only the *domain* bounds
:data:`DOMAIN` (:math:`d_{ii} \ge 10^{-3}`, :math:`|\rho| \le 0.999`: every iterate stays elliptic, so the forward
solve is defined, but not certified to :math:`\varepsilon`); every other parameter keeps its box of
:data:`~.parametrisation.BOUNDS` (the RBF weights' signs, which the floors of the influences need; :math:`\lambda,
\mu \ge 0`; the upper bounds, which are about size, not stability): :func:`al_bounds`.

**The smooth certificate** (:class:`SmoothCertificate`). Two kinks are smoothed, each from below, so that
:math:`c_k \le \alpha_k` and a point with :math:`h_k \ge 0` has a true certificate :math:`\ge \varepsilon`:

- the square root, where the two eigenvalues meet (:math:`d_{11} = d_{22}`, :math:`\rho = 0`: the default start),
  by :math:`\sqrt{q + \delta^2} \ge \sqrt q`, :math:`\delta =` :data:`DELTA` (:math:`\lambda^\delta \ge
  \lambda_{\min} - \delta`);
- each minimum over samples (and the one of the two diagonal influences) by the soft minimum
  :math:`\operatorname{smin}_\tau(x) = -\tau\log\sum_i e^{-x_i/\tau} \in [\min x - \tau\log n, \min x]`,
  :math:`\tau =` :data:`TAU` (the influences are :math:`\ge 0.02`: at most :math:`7\cdot10^{-4}` lower, 3%),
  whose gradient is the softmax-weighted mean of the samples' gradients. An influence is affine in its RBF weights
  (:math:`g(s) = g_0 + B(s)w`), so its samples' gradients are the rows of :math:`B`, evaluated by
  :meth:`~fem_crossdiff.model.Influence.evaluate` itself (the model's one definition).

So :math:`c_k = \lambda^\delta_k \cdot \operatorname{smin}_\tau(\operatorname{smin}_\tau g_{11}\,
\operatorname{smin}_\tau h_{11},\ \operatorname{smin}_\tau g_{22})`, smooth, with the exact gradient (a test checks
its Taylor rate 2). One constraint per stage: the minimum over stages needs no smoothing.

**The augmented Lagrangian** (Powell–Hestenes–Rockafellar for inequalities, as in Birgin & Martínez, *Practical
Augmented Lagrangian Methods for Constrained Optimization*, SIAM 2014, Algorithm 4.1). With multipliers
:math:`\mu_k \ge 0` and a penalty :math:`r > 0` (the brief's :math:`\rho`; :math:`\rho` is the coupling here), the
inner problem minimises, within the box,

.. math::

    L(p) = \frac{J(p)}{J_0} + \frac r2\sum_k \max\!\Big(0, \frac{\mu_k}{r} - h_k(p)\Big)^2
           - \sum_k \frac{\mu_k^2}{2r}, \qquad
    \nabla L = \frac{\nabla J}{J_0} - \sum_k \max(0, \mu_k - r h_k)\,\frac{\nabla c_k}{\varepsilon}

(:math:`J/J_0`: the loss as the optimiser sees it, order one; :meth:`AugmentedLagrangian.penalty`). After each
inner minimisation (:func:`~.training.train`: every :data:`AL_INNER` iterations of L-BFGS-B, every epoch of Adam)
the outer update (:meth:`AugmentedLagrangian.update`) is

.. math::

    \mu_k \leftarrow \max(0, \mu_k - r\,h_k(p)), \qquad
    V = \max_k \big|\min(h_k(p), \mu_k^{\text{old}}/r)\big|, \qquad
    r \leftarrow 10\,r \ \text{ if } V > \tfrac12 V_{\text{prev}}

(:math:`V` measures infeasibility and complementarity; the penalty grows when it does not halve), from
:math:`\mu = 0`, :math:`r = 10` (:data:`AL_START`), :math:`r \le 10^6`.

**Ending feasible.** The iterates approach the feasible set from either side, so the last one may miss
:math:`\alpha_k \ge \varepsilon` slightly. :func:`feasible_point` then backtracks along the segment from a feasible
anchor (the start if it is feasible; else the start with :math:`d_{ii} \leftarrow \max(d_{ii}, 1)`, :math:`\rho
\leftarrow 0`, whose certificate is at least the influences' floor :math:`0.02 \ge \varepsilon`) to the iterate,
keeping the largest fraction (bisection) whose *true* certificate is :math:`\ge\varepsilon`; the run says so in a
line and records the fraction. With validation, only feasible iterates can be chosen as the best.
"""
import math

import numpy as np

from ..errors import InputError
from ..model import CrossDiffusionModel
from ..model.family import STATE_RANGE
from .parametrisation import BOUNDS, FLOOR

__all__ = ["STABILITIES", "BOX_MARGIN", "DOMAIN", "DELTA", "TAU", "AL_INNER", "AL_TOL", "AL_START", "check_eps",
           "al_bounds", "SmoothCertificate", "AugmentedLagrangian", "feasible_point", "anchor", "refuse_model"]

#: How ``train --stability`` keeps models elliptic: every iterate in the box of :data:`~.parametrisation.BOUNDS`
#: (default), or the certificate as a constraint (this module).
STABILITIES = ("box", "augmented-lagrangian")
#: The certificate every model in the box has at least: :math:`(1 - 0.95)\cdot 0.05\cdot 0.02`; the default
#: :math:`\varepsilon`.
BOX_MARGIN = (1 - BOUNDS["rho"][1]) * BOUNDS["d11"][0] * FLOOR
#: The bounds of :math:`d_{11}, d_{22}, \rho` under the augmented Lagrangian: the model's domain (elliptic), no margin.
DOMAIN = {"d11": (1e-3, BOUNDS["d11"][1]), "d22": (1e-3, BOUNDS["d22"][1]), "rho": (-0.999, 0.999)}
#: Smoothing of the eigenvalue's square root, :math:`\sqrt{q + \delta^2}`.
DELTA = 1e-4
#: Temperature of the soft minima over the influences' samples.
TAU = 1e-4
#: L-BFGS-B iterations per inner minimisation (Adam: one epoch).
AL_INNER = 10
#: L-BFGS-B's rounds end when an inner minimisation converged before its budget with the infeasibility V below this.
AL_TOL = 1e-3
#: The start of the multipliers and of the penalty; its growth factor, its cap, the shrink asked of V per round.
AL_START = dict(mu=0.0, r=10.0, growth=10.0, r_max=1e6, shrink=0.5)
_SAMPLES = 401                                      # as CrossDiffusionModel.influence_range


def check_eps(eps):
    r""":math:`\varepsilon` (None: :data:`BOX_MARGIN`), refused unless :math:`0 < \varepsilon \le` the influences'
    floor (the anchor of :func:`feasible_point` must be feasible)."""
    if eps is None:
        return BOX_MARGIN
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and 0 < eps <= FLOOR):
        raise InputError(f"--stability-eps {eps}: expected a certificate margin 0 < EPS <= {FLOOR:g} (the influences' "
                         f"floor; the box guarantees {BOX_MARGIN:g})")
    return float(eps)


def refuse_model(model):
    """Refuse, in one line, a model whose certificate the augmented Lagrangian cannot differentiate: a user's UFL
    model (its ``ellipticity()`` is the user's numpy, or sampled), a colour model (its learned chroma enters the
    certificate only through :math:`d_c > 0`, a box already), influences other than RBF sums or constants."""
    if not isinstance(model, CrossDiffusionModel):
        kind = "a colour model" if getattr(model, "channels", 1) == 3 else f"the user model '{model.name}'"
        raise InputError(f"--stability augmented-lagrangian: needs the built-in family's certificate (differentiable); "
                         f"{kind} has none to differentiate: use --stability box")
    for ij, g in model.influences:
        if g.kind not in ("one", "rbf"):
            raise InputError(f"--stability augmented-lagrangian: influence g{ij} is '{g.kind}'; only rbf or constant "
                             "influences have a differentiable certificate here: use --stability box")


def al_bounds(model):
    """The box under the augmented Lagrangian: :data:`~.parametrisation.BOUNDS` with :data:`DOMAIN` for
    :math:`d_{11}, d_{22}, \\rho` (as :func:`~.parametrisation.bounds`, flat)."""
    limits = dict(BOUNDS, **DOMAIN)
    return [limits[name] for _ in model.stages for name, n, _ in model.stage_layout for _ in range(n)]


def _softmin(x):
    """:math:`\\operatorname{smin}_\\tau(x)` and its weights (the softmax of :math:`-x/\\tau`, summing to 1)."""
    x = np.asarray(x, dtype=float)
    m = x.min()
    e = np.exp(-(x - m) / TAU)
    total = e.sum()
    return m - TAU * math.log(total), e / total


class SmoothCertificate:
    """The smooth lower bounds :math:`c_k(p)` of the stages' certificates and their gradients with respect to the
    flat parameter vector of :func:`~.parametrisation.pack` (see the module's docstring)."""

    def __init__(self, model):
        refuse_model(model)
        self.model, self.stages = model, len(model.stages)
        layout = model.stage_layout
        self.width = sum(n for _, n, _ in layout)
        self.offset, at = {}, 0
        for name, n, _ in layout:
            self.offset[name] = slice(at, at + n)
            at += n
        self.functions = []                     # (key, parameter name or None, floor, basis) per influence
        for key, g in model.influences:
            if g.kind == "one":
                self.functions.append((key, None, 1.0, None))
                continue
            smax = STATE_RANGE[g.variable]
            s = np.linspace(-smax if g.variable == "v" else 0.0, smax, _SAMPLES)
            basis = g.evaluate(s, np.eye(g.centres)) - g.floor           # g(s) = floor + basis @ w
            self.functions.append((key, g.parameter(key), g.floor, basis))

    def _influence(self, chunk, key):
        """:math:`\\operatorname{smin}_\\tau` of one influence over its samples and its gradient (chunk-sized)."""
        _, name, floor, basis = next(f for f in self.functions if f[0] == key)
        grad = np.zeros(self.width)
        if basis is None:
            return 1.0, grad
        w = chunk[self.offset[name]]
        value, weights = _softmin(floor + basis @ w)
        grad[self.offset[name]] = weights @ basis
        return value, grad

    def stage(self, chunk):
        """:math:`(c_k, \\nabla c_k)` of one stage's parameters ``chunk``."""
        at = self.offset
        a, b, r = chunk[at["d11"]][0], chunk[at["d22"]][0], chunk[at["rho"]][0]
        s = math.sqrt(0.25 * (a - b) ** 2 + r * r * a * b + DELTA ** 2)
        lam = 0.5 * (a + b) - s
        dlam = np.zeros(self.width)
        dlam[at["d11"]] = 0.5 - (0.5 * (a - b) + r * r * b) / (2 * s)
        dlam[at["d22"]] = 0.5 - (-0.5 * (a - b) + r * r * a) / (2 * s)
        dlam[at["rho"]] = -r * a * b / s
        g11, dg11 = self._influence(chunk, "11")
        h11, dh11 = self._influence(chunk, "11h")
        g22, dg22 = self._influence(chunk, "22")
        gmin, weights = _softmin([g11 * h11, g22])
        dg = weights[0] * (dg11 * h11 + g11 * dh11) + weights[1] * dg22
        return lam * gmin, dlam * gmin + lam * dg

    def values_and_gradients(self, x):
        """``(c, G)``: the :math:`K` stages' :math:`c_k` and the :math:`K \\times n` matrix of their gradients."""
        x = np.asarray(x, dtype=float)
        c, G = np.zeros(self.stages), np.zeros((self.stages, x.size))
        for k, chunk in enumerate(np.split(x, self.stages)):
            c[k], G[k, k * self.width:(k + 1) * self.width] = self.stage(chunk)
        return c, G


class AugmentedLagrangian:
    """The PHR penalty of the constraints :math:`h_k = c_k/\\varepsilon - 1 \\ge 0` with multipliers ``mu`` and
    penalty ``r`` (see the module's docstring); :meth:`state` is JSON-ready (resume files, provenance)."""

    def __init__(self, certificate, eps, mu=None, r=None, infeasibility=None, rounds=0):
        self.certificate, self.eps = certificate, float(eps)
        self.mu = np.full(certificate.stages, AL_START["mu"]) if mu is None else np.asarray(mu, dtype=float)
        self.r = AL_START["r"] if r is None else float(r)
        self.infeasibility, self.rounds = infeasibility, int(rounds)

    def constraints(self, x):
        """:math:`h(p)` and its :math:`K \\times n` Jacobian."""
        c, G = self.certificate.values_and_gradients(x)
        return c / self.eps - 1.0, G / self.eps

    def penalty(self, x):
        """The penalty part of :math:`L(p)` and its gradient with respect to ``x``."""
        h, H = self.constraints(x)
        active = np.maximum(0.0, self.mu - self.r * h)
        return (float(np.sum(active ** 2) / (2 * self.r) - np.sum(self.mu ** 2) / (2 * self.r)),
                -active @ H)

    def update(self, x):
        """The outer update at ``x``: new multipliers, the penalty raised if infeasibility did not halve; returns
        ``dict(h_min, V, mu, r)`` after the update."""
        h, _ = self.constraints(x)
        V = float(np.max(np.abs(np.minimum(h, self.mu / self.r))))
        self.mu = np.maximum(0.0, self.mu - self.r * h)
        if self.infeasibility is not None and V > AL_START["shrink"] * self.infeasibility:
            self.r = min(self.r * AL_START["growth"], AL_START["r_max"])
        self.infeasibility, self.rounds = V, self.rounds + 1
        return dict(h_min=float(h.min()), V=V, mu=self.mu.tolist(), r=self.r)

    def state(self):
        """The multipliers, penalty, last infeasibility and outer rounds, as plain data."""
        return dict(eps=self.eps, mu=self.mu.tolist(), r=self.r, infeasibility=self.infeasibility,
                    rounds=self.rounds)

    def load(self, state, where):
        """Restore :meth:`state`'s data (refused by name if malformed); returns self."""
        try:
            mu, r, V = np.asarray(state["mu"], dtype=float), float(state["r"]), state["infeasibility"]
            rounds = int(state["rounds"])
            ok = (mu.shape == self.mu.shape and np.all(np.isfinite(mu)) and np.all(mu >= 0) and math.isfinite(r)
                  and r > 0 and (V is None or (math.isfinite(float(V)) and float(V) >= 0)) and rounds >= 0)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"{where}: no readable augmented-Lagrangian state (mu >= 0 per stage, r > 0); the "
                             "training state is corrupt: restore it, or remove it to start afresh")
        self.mu, self.r, self.rounds = mu, r, rounds
        self.infeasibility = None if V is None else float(V)
        return self


def feasible_point(x, x0, certified, steps=30):
    """``(x', t)``: ``x`` itself (``t = 1``) if ``certified(x)``, else the point :math:`a + t(x - a)` with the largest
    ``t`` found by bisection whose ``certified`` holds, :math:`a` the anchor of the module's docstring built from the
    start ``x0`` by the caller (``certified(x0)`` must hold)."""
    x, x0 = np.asarray(x, dtype=float), np.asarray(x0, dtype=float)
    if certified(x):
        return x, 1.0
    if not certified(x0):
        raise AssertionError("the anchor of the final projection is not feasible")
    lo, hi = 0.0, 1.0
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if certified(x0 + mid * (x - x0)):
            lo = mid
        else:
            hi = mid
    return x0 + lo * (x - x0), lo


def anchor(model, x0):
    """The feasible anchor of :func:`feasible_point` for a start ``x0`` that is not feasible: every stage's
    :math:`d_{11}, d_{22}` raised to at least 1 and :math:`\\rho = 0` (certificate :math:`\\ge` the floor)."""
    x = np.array(x0, dtype=float)
    width = len(x) // len(model.stages)
    at, i = {}, 0
    for name, n, _ in model.stage_layout:
        at[name] = i
        i += n
    for k in range(len(model.stages)):
        base = k * width
        x[base + at["d11"]] = max(x[base + at["d11"]], 1.0)
        x[base + at["d22"]] = max(x[base + at["d22"]], 1.0)
        x[base + at["rho"]] = 0.0
    return x
