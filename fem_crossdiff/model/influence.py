r"""Influence (edge-stopping) functions :math:`g(s)` of the edge indicator :math:`s = v` or of :math:`s = |\nabla u|`.

One definition serves every evaluation: :meth:`Influence.evaluate` takes the array library as an argument
(``numpy`` for the certificate and the fast path's tests, ``ufl`` for the finite-element forms), so the model is
written once. Learnable functions are sums of Gaussian radial basis functions with non-negative weights and a
floor (Chen & Pock's TNRD), evaluated by a two-``exp`` Horner form when the centres allow it.
"""
import functools
import math
from dataclasses import dataclass, asdict

import numpy as np

from ..errors import ModelError

__all__ = ["Influence", "GRAD_EPS2", "HORNER_CENTRES", "HORNER_Z_MAX"]

#: Regularisation of :math:`|\nabla u|` inside a square root (RBF influence of the gradient only).
GRAD_EPS2 = 1e-12
#: RBF sums by Horner's scheme (two ``exp``) for this many centres; :math:`z` clipped to
#: :math:`[-Z_{max}, Z_{max}]` keeps :math:`e^{-z^2/2}` normal and :math:`e^{mz}` finite for up to 20 centres.
HORNER_CENTRES, HORNER_Z_MAX = range(2, 21), 37.0



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
        if self.kind == "rbf" and not (isinstance(self.centres, int) and self.centres >= 1):
            raise ModelError(f"an rbf influence needs an integer number of centres >= 1, got {self.centres!r}")
        if not (isinstance(self.span, (int, float)) and math.isfinite(self.span) and self.span > 0):
            raise ModelError(f"influence span must be a positive number, got {self.span!r}")

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
        if lib is np:                                       # one product instead of a loop over the centres
            s = np.asarray(s, dtype=float)
            basis = np.exp(-(s[..., None] - self.centre_values) ** 2 / sig2)
            return self.floor + basis @ np.asarray(p, dtype=float)
        return self.floor + sum(p[m] * lib.exp(-(s - c) ** 2 / sig2) for m, c in enumerate(self.centre_values))

    def of_grad2(self, grad2, p, lib=np):
        r""":math:`g(|\nabla u|)` from :math:`|\nabla u|^2` (rational and exponential kinds need no square root;
        RBFs take :math:`\sqrt{|\nabla u|^2 + \epsilon}`, :data:`GRAD_EPS2`)."""
        if self.kind == "rational":
            return self.floor + (1 - self.floor) / (1 + grad2 / p ** 2)
        if self.kind == "exponential":
            return self.floor + (1 - self.floor) * lib.exp(-grad2 / p ** 2)
        return self.evaluate(lib.sqrt(grad2 + GRAD_EPS2), p, lib=lib)

    def to_dict(self):
        """The defining fields, JSON-friendly: ``Influence(**g.to_dict()) == g`` (cached values left out)."""
        return asdict(self)

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

