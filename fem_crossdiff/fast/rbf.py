"""Gaussian RBF sums of influence functions in numpy, by the two-``exp`` Horner form of the UFL twin
(:meth:`~fem_crossdiff.model.influence.Influence._rbf_horner`): values, and the basis functions and slope that
gradients need. No PETSc, no Firedrake."""
import ctypes
import functools
import math

import numpy as np

from ..model.influence import HORNER_CENTRES, HORNER_Z_MAX
from .compile import compile_kernel, pointer

__all__ = ["rbf", "rbf_shared", "rbf_parts", "CHUNK"]

#: Values per piece of a long RBF evaluation (a few hundred kB of temporaries: they stay in the cache).
CHUNK = 16384


@functools.lru_cache(maxsize=None)
def horner_kernel():
    """The compiled Horner pass of ``rbf.c`` (None without a compiler: numpy's loop serves, said once)."""
    d = ctypes.POINTER(ctypes.c_double)
    return compile_kernel("rbf.c", "rbf_horner", [ctypes.c_long, d, d, d, ctypes.c_int, ctypes.c_double, d])


def rbf(g, s, weights):
    r""":math:`\text{floor} + \sum_m w_m e^{-(s-c_m)^2/(2\sigma^2)}` (:meth:`Influence.evaluate`) with two ``exp``.

    The centres are evenly spaced by :math:`\sigma`: with :math:`z = (s - c_0)/\sigma`, the sum is
    :math:`e^{-z^2/2}\sum_m a_m R^m`, :math:`R = e^z`, :math:`a_m = w_m e^{-m^2/2}` (Horner in :math:`R`; for the
    influence functions all terms are positive, so no cancellation). :math:`z` is clipped to :math:`[-37, 37]`
    (:data:`HORNER_Z_MAX`), which keeps :math:`e^{-z^2/2}` normal and :math:`R^{m}` finite for up to 20 centres
    and changes only terms below :math:`e^{-160}`; other sizes are summed directly. The UFL twin is
    :meth:`Influence._rbf_horner`.
    """
    return rbf_shared([g], s, [weights])[0]


def rbf_shared(gs, s, weights):
    """:func:`rbf` of several functions ``gs`` (their weights ``weights``) at the same ``s``: functions of the same
    centres and width share the two ``exp`` fields."""
    s = np.asarray(s, dtype=float)
    weights = [np.asarray(w, dtype=float) for w in weights]
    out = [None] * len(gs)
    groups = {}
    for i, g in enumerate(gs):
        if g.centres not in HORNER_CENTRES:
            out[i] = g.evaluate(s, weights[i], lib=np)
        else:
            groups.setdefault((float(g.centre_values[0]), g.width), []).append(i)
    for (c0, width), members in groups.items():
        values = [np.empty(s.shape) for _ in members]
        flat = s.reshape(-1)
        for start in range(0, s.size, CHUNK):             # in pieces that stay in the cache (memory-bound otherwise)
            part = slice(start, start + CHUNK)
            z = (flat[part] - c0) * (1.0 / width)
            np.clip(z, -HORNER_Z_MAX, HORNER_Z_MAX, out=z)
            R = np.exp(z)
            np.multiply(z, z, out=z)
            z *= -0.5
            base = np.exp(z, out=z)
            for value, i in zip(values, members):
                value.reshape(-1)[part] = _horner(R, base, gs[i].horner_coefficients(weights[i]), gs[i].floor)
        for value, i in zip(values, members):
            out[i] = value
    return out


def _horner(R, base, a, floor):
    r""":math:`\text{floor} + e^{-z^2/2}\sum_m a_m R^m` by Horner's scheme (``rbf.c`` in one pass, else numpy)."""
    kernel = horner_kernel()
    if kernel is not None:
        R, base = np.ascontiguousarray(R), np.ascontiguousarray(base)
        out, coef = np.empty(R.shape), np.asarray(a, dtype=float)
        kernel(R.size, pointer(R), pointer(base), pointer(coef), len(a), float(floor), pointer(out))
        return out
    acc = np.full_like(R, a[-1])
    for am in a[-2::-1]:
        acc *= R
        acc += am
    acc *= base
    acc += floor
    return acc


def rbf_parts(g, s, weights):
    r"""``(g(s), g'(s), pgrad)`` of the RBF sum :func:`rbf` — value, slope and ``pgrad(bar)``, the gradient
    :math:`\big(\sum \bar g\,\phi_m(s)\big)_m` of :math:`\sum\bar g` with respect to the weights — by the same
    clipped Horner form (its slope is the derivative of what :func:`rbf` computes; 0 where :math:`z` is clipped).
    The basis :math:`\phi_m = e^{-z^2/2}e^{-m^2/2}R^m` is regenerated in ``pgrad`` from two stored fields, not kept
    per centre."""
    s = np.asarray(s, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if g.centres not in HORNER_CENTRES:                 # summed directly, as rbf() does
        d = (s - g.centre_values.reshape((-1,) + (1,) * s.ndim)) / g.width
        basis = np.exp(-0.5 * d * d)
        value = g.floor + np.tensordot(weights, basis, axes=1)
        slope = np.tensordot(weights, -basis * d / g.width, axes=1)
        return value, slope, lambda bar: np.tensordot(basis, bar, axes=bar.ndim).tolist()
    z0 = (s - g.centre_values[0]) * (1.0 / g.width)
    z = np.clip(z0, -HORNER_Z_MAX, HORNER_Z_MAX)
    R, base = np.exp(z), np.exp(-0.5 * z * z)
    a = g.horner_coefficients(weights)
    total = _horner(R, base, a, 0.0)                                          # e^{-z²/2} Σ a_m R^m
    moment = _horner(R, base, [m * am for m, am in enumerate(a)], 0.0)        # e^{-z²/2} Σ m a_m R^m
    value = total + g.floor
    slope = (moment - z * total) * ((np.abs(z0) < HORNER_Z_MAX) / g.width)
    decay = [math.exp(-0.5 * m * m) for m in range(g.centres)]

    def pgrad(bar):
        out, power = [], bar * base
        for m in range(g.centres):
            out.append(float(np.sum(power)) * decay[m])
            if m + 1 < g.centres:
                power = power * R
        return out
    return value, slope, pgrad
