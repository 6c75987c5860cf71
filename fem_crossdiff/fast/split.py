r"""The split scheme on the structured image mesh in numpy and C: O(N) steps, no PETSc, no Firedrake.

The finite-element layer defines the scheme in UFL (:class:`~fem_crossdiff.fem.evolution.Evolution`,
``scheme="split"``): with the products :math:`(\cdot,\cdot)_h` of the vertex (2×2 Gauss–Lobatto) rule, the
coefficients lagged and frozen per cell, :math:`D_h = \Pi_0 D(w^n)` (their value at the cell centres), and
:math:`B = I - \tau R'(w^n)`,

.. math:: (B w^*, \varphi)_h + \tau(D_h\,\partial_x w^*, \partial_x\varphi)_h
              &= (w^n + \tau(R(w^n) - R'(w^n)w^n + E(w^n)), \varphi)_h,\\
          (B w^{n+1}, \varphi)_h + \tau(D_h\,\partial_y w^{n+1}, \partial_y\varphi)_h &= (B w^*, \varphi)_h .

On Q1 the vertex rule makes the mass diagonal and couples :math:`\partial_x` only along grid rows and
:math:`\partial_y` only along columns, so each half step is one block-tridiagonal system per grid line: an x-edge
between nodes :math:`a, b` contributes :math:`\tau E_e (w_a - w_b)` to row :math:`a` with
:math:`E_e = \tfrac12(D_K + D_{K'})` over the (one or two) cells beside it. Both systems are accretive
(:math:`B` diagonal positive, :math:`E_e` with positive definite symmetric part when :math:`D` is uniformly
elliptic), so each half step contracts the lumped :math:`L^2` norm, :math:`\|w^{n+1}\|_B \le \|w^*\|_B \le
\|B^{-1}r\|_B`, for every :math:`\tau`: unconditionally stable, and the product of the two line solves is the
matrix :math:`B + \tau(K_x + K_y) + \tau^2 K_x B^{-1} K_y` (an :math:`O(\tau^2)` splitting of the unsplit step, the
approximate factorisation of Douglas–Peaceman–Rachford type that Lobo's finite-difference schemes for this model
class use, arXiv 2105.04043). Each line is solved by block Gaussian elimination (``split.c``): a step costs
:math:`O(N)`.

This module computes the same steps for the built-in family (:class:`~fem_crossdiff.model.CrossDiffusionModel`,
``w = (u, v)``) and the colour model (:class:`~fem_crossdiff.model.ColourModel`, ``w = (Y, v, C_1, C_2)``: the
family on ``(Y, v)``, the two chroma channels one scalar system each) on grid arrays, and their exact discrete
adjoint (:meth:`SplitScheme.gradient`). Every piece is checked against the UFL scheme by the tests (one step,
whole evolution, gradient against pyadjoint's). Any other model given in UFL runs the same scheme by
:mod:`.generic` (its expressions compiled, n×n block lines), which also reproduces this module's steps and gradients
for the built-in family (``tests/test_generic_split.py``).
"""
import ctypes
import math
import warnings

import numpy as np

from ..errors import InputError
from ..model import PSI_PARAMETER, ColourModel, CrossDiffusionModel
from ..model.colour import CHROMA_FLOOR, INVERSE, OPPONENT
from ..model.influence import GRAD_EPS2
from .compile import SlowPathWarning, compile_kernel, pointer
from .rbf import rbf, rbf_parts, rbf_shared

__all__ = ["SplitScheme", "Grid", "line_kernels", "solve_lines", "interpolant"]


# ----------------------------------------------------------------------------------------------- the grid
class Grid:
    r"""The image mesh as arrays: H×W nodes of spacing ``h`` (row-major, as images), (H−1)×(W−1) cells.

    ``mass``: the lumped mass (vertex rule, :math:`h^2/4` per cell at each corner); ``area`` :math:`|\Omega|`."""

    def __init__(self, shape, h=1.0):
        self.H, self.W = (int(s) for s in shape)
        if self.H < 2 or self.W < 2:
            raise InputError(f"grid of shape {shape} is too small; need at least 2×2 nodes")
        self.h = float(h)
        count = np.ones((self.H, self.W))
        count[[0, -1], :] *= 0.5
        count[:, [0, -1]] *= 0.5
        self.mass = count * self.h ** 2
        self.area = (self.H - 1) * (self.W - 1) * self.h ** 2

    @property
    def shape(self):
        return (self.H, self.W)

    # cell-centre values of Q1 functions, and their adjoints (the transposed linear maps)
    @staticmethod
    def centre(a):
        """Value at the cell centres: the mean of the four corners."""
        return 0.25 * (a[:-1, :-1] + a[:-1, 1:] + a[1:, :-1] + a[1:, 1:])

    @staticmethod
    def centre_adjoint(bar, out):
        """Add :math:`C^T` ``bar`` to ``out`` (nodes) for the map :meth:`centre`."""
        q = 0.25 * bar
        out[:-1, :-1] += q
        out[:-1, 1:] += q
        out[1:, :-1] += q
        out[1:, 1:] += q

    def gradient(self, a):
        """:math:`(\\partial_x a, \\partial_y a)` at the cell centres (columns are x, rows are y; the sign of y does
        not matter to :math:`|\\nabla a|`)."""
        gx = (a[:-1, 1:] - a[:-1, :-1] + a[1:, 1:] - a[1:, :-1]) * (0.5 / self.h)
        gy = (a[1:, :-1] - a[:-1, :-1] + a[1:, 1:] - a[:-1, 1:]) * (0.5 / self.h)
        return gx, gy

    def grad2(self, a):
        """:math:`|\\nabla a|^2` at the cell centres, and the gradient it came from."""
        gx, gy = self.gradient(a)
        return gx * gx + gy * gy, (gx, gy)

    def grad2_adjoint(self, bar, grad, out):
        """Add the adjoint of :meth:`grad2` applied to ``bar`` (cells) to ``out`` (nodes)."""
        gx, gy = grad
        bx, by = 2 * bar * gx * (0.5 / self.h), 2 * bar * gy * (0.5 / self.h)
        out[:-1, 1:] += bx
        out[:-1, :-1] -= bx
        out[1:, 1:] += bx
        out[1:, :-1] -= bx
        out[1:, :-1] += by
        out[:-1, :-1] -= by
        out[1:, 1:] += by
        out[:-1, 1:] -= by

    def edges(self, cells):
        """Edge coefficients from cell coefficients ``cells`` (H−1, W−1, k): the half sum of the cells beside each
        edge; x-edges (H, W−1, k), y-edges (H−1, W, k)."""
        half = 0.5 * cells
        ex = np.zeros((self.H, self.W - 1) + cells.shape[2:])
        ex[:-1] += half
        ex[1:] += half
        ey = np.zeros((self.H - 1, self.W) + cells.shape[2:])
        ey[:, :-1] += half
        ey[:, 1:] += half
        return ex, ey

    @staticmethod
    def edges_adjoint(ex_bar, ey_bar):
        """The adjoint of :meth:`edges`: cell values from edge values."""
        return 0.5 * (ex_bar[:-1] + ex_bar[1:] + ey_bar[:, :-1] + ey_bar[:, 1:])

    def mass_product(self, e):
        """:math:`\\mathcal M e` for the consistent Q1 mass matrix (the tensor product of 1-D ones, exact), ``e`` (H, W)."""
        def one_d(a, axis):
            out = 4 * a
            lo = [slice(None)] * a.ndim
            hi = [slice(None)] * a.ndim
            lo[axis], hi[axis] = slice(None, -1), slice(1, None)
            out[tuple(lo)] += a[tuple(hi)]
            out[tuple(hi)] += a[tuple(lo)]
            first, last = [slice(None)] * a.ndim, [slice(None)] * a.ndim
            first[axis], last[axis] = 0, -1
            out[tuple(first)] -= 2 * a[tuple(first)]
            out[tuple(last)] -= 2 * a[tuple(last)]
            return out * (self.h / 6)
        return one_d(one_d(e, 0), 1)


def interpolant(img, r):
    """The bilinear interpolant of the pixels ``img`` (H, W) or (H, W, C) at the nodes of the grid refined ``r``
    times per pixel gap ((H−1)r+1, (W−1)r+1): what the image is on a refined mesh; ``r = 1``: ``img`` itself."""
    img = np.asarray(img, dtype=float)
    if r == 1:
        return img
    H, W = img.shape[:2]

    def weights(n):
        t = np.arange((n - 1) * r + 1) / r
        i = np.minimum(np.floor(t).astype(int), n - 2)
        return i, t - i
    ri, rt = weights(H)
    ci, ct = weights(W)
    extra = (None,) * (img.ndim - 2)
    rt, ct = rt[(slice(None), None) + extra], ct[(None, slice(None)) + extra]
    top = img[ri][:, ci] * (1 - ct) + img[ri][:, ci + 1] * ct
    bottom = img[ri + 1][:, ci] * (1 - ct) + img[ri + 1][:, ci + 1] * ct
    return top * (1 - rt) + bottom * rt


# ----------------------------------------------------------------------------------------------- line solves
_DOUBLES = ctypes.POINTER(ctypes.c_double)


#: Lines the C kernels eliminate together (``split.c``'s ``BLOCK``).
LINE_BLOCK = 16


def line_kernels():
    """The compiled x- and y-line solvers of ``split.c`` (None, None where no compiler: said once)."""
    args = [ctypes.c_int, ctypes.c_int, _DOUBLES, _DOUBLES, ctypes.c_double, _DOUBLES, _DOUBLES, _DOUBLES,
            ctypes.c_int]
    return tuple(compile_kernel("split.c", name, args, BLOCK=LINE_BLOCK) for name in ("split_solve_x", "split_solve_y"))


def _solve_numpy(b, E, tau, rhs, axis, transpose):
    """Block Thomas along ``axis`` (1: rows, 0: columns) in numpy, vectorised over the lines: the reference of the
    C kernels and the fallback without a compiler."""
    if axis == 0:
        return _solve_numpy(b.transpose(1, 0, 2), E.transpose(1, 0, 2), tau, rhs.transpose(1, 0, 2), 1,
                            transpose).transpose(1, 0, 2).copy()
    e11, e12, e21, e22 = (tau * E[..., i] for i in ((0, 2, 1, 3) if transpose else (0, 1, 2, 3)))
    H, W, _ = rhs.shape
    a11, a22 = b[..., 0].copy(), b[..., 1].copy()
    a12, a21 = np.zeros((H, W)), np.zeros((H, W))
    for a, e in ((a11, e11), (a12, e12), (a21, e21), (a22, e22)):
        a[:, :-1] += e
        a[:, 1:] += e
    C, d = np.zeros((H, W, 4)), np.zeros((H, W, 2))
    for j in range(W):
        s11, s12, s21, s22 = a11[:, j].copy(), a12[:, j].copy(), a21[:, j].copy(), a22[:, j].copy()
        r1, r2 = rhs[:, j, 0].copy(), rhs[:, j, 1].copy()
        if j > 0:
            l11, l12, l21, l22 = e11[:, j - 1], e12[:, j - 1], e21[:, j - 1], e22[:, j - 1]   # L = -l
            c = C[:, j - 1]
            s11 += l11 * c[:, 0] + l12 * c[:, 2]
            s12 += l11 * c[:, 1] + l12 * c[:, 3]
            s21 += l21 * c[:, 0] + l22 * c[:, 2]
            s22 += l21 * c[:, 1] + l22 * c[:, 3]
            r1 = r1 + l11 * d[:, j - 1, 0] + l12 * d[:, j - 1, 1]
            r2 = r2 + l21 * d[:, j - 1, 0] + l22 * d[:, j - 1, 1]
        det = s11 * s22 - s12 * s21
        i11, i12, i21, i22 = s22 / det, -s12 / det, -s21 / det, s11 / det
        if j < W - 1:
            u11, u12, u21, u22 = e11[:, j], e12[:, j], e21[:, j], e22[:, j]                     # U = -u
            C[:, j, 0] = -(i11 * u11 + i12 * u21)
            C[:, j, 1] = -(i11 * u12 + i12 * u22)
            C[:, j, 2] = -(i21 * u11 + i22 * u21)
            C[:, j, 3] = -(i21 * u12 + i22 * u22)
        d[:, j, 0] = i11 * r1 + i12 * r2
        d[:, j, 1] = i21 * r1 + i22 * r2
    x = np.empty((H, W, 2))
    x[:, -1] = d[:, -1]
    for j in range(W - 2, -1, -1):
        x[:, j, 0] = d[:, j, 0] - (C[:, j, 0] * x[:, j + 1, 0] + C[:, j, 1] * x[:, j + 1, 1])
        x[:, j, 1] = d[:, j, 1] - (C[:, j, 2] * x[:, j + 1, 0] + C[:, j, 3] * x[:, j + 1, 1])
    return x


def solve_lines(b, D, tau, rhs, axis, transpose=False, kernels=None, work=None):
    r"""Solve :math:`(\mathrm{diag}(b) + \tau K(E))\,x = r` (or its transpose) along every grid line: rows
    (``axis=1``, x-edges) or columns (``axis=0``, y-edges), the edge coefficients :math:`E` from the cell
    coefficients ``D`` (H−1, W−1, 4) by :meth:`Grid.edges`; ``b``, ``rhs``: (H, W, 2). By the C kernel of
    :func:`line_kernels` when given, else by numpy."""
    H, W, _ = rhs.shape
    kernel = None if kernels is None else kernels[0 if axis == 1 else 1]
    if kernel is None:
        ex, ey = Grid((H, W)).edges(D)
        return _solve_numpy(b, ex if axis == 1 else ey, tau, rhs, axis, transpose)
    b, D, rhs = (np.ascontiguousarray(a, dtype=float) for a in (b, D, rhs))
    x = np.empty(rhs.shape)
    need = 6 * LINE_BLOCK * (W if axis == 1 else H)
    if work is None or work.size < need:
        work = np.empty(need)
    kernel(H, W, pointer(b), pointer(D), float(tau), pointer(rhs), pointer(x), pointer(work), int(bool(transpose)))
    return x


# ----------------------------------------------------------------------------------------------- influences
def _influence(g, key, x, p, derivatives):
    """An influence function ``g`` (stage parameter ``p[g.parameter(key)]``) at ``x`` — :math:`v`, or
    :math:`|\\nabla u|^2` for ``variable == "grad_u"`` (as :meth:`Influence.of_grad2`) — and, if ``derivatives``,
    ``(dg/dx, pgrad)``: ``pgrad(bar)`` the gradient of :math:`\\sum \\bar g` with respect to the parameter."""
    if g.kind == "one":
        return (1.0, 0.0, None) if derivatives else 1.0
    par = p[g.parameter(key)]
    grad = g.variable == "grad_u"
    if g.kind == "rbf":
        s = np.sqrt(x + GRAD_EPS2) if grad else x
        if not derivatives:
            return rbf(g, s, par)
        value, ds, pgrad = rbf_parts(g, s, par)
        return value, (ds * (0.5 / s) if grad else ds), pgrad
    k = float(par)
    q = x / k ** 2 if grad else (x / k) ** 2
    dq_dx = 1.0 / k ** 2 if grad else 2 * x / k ** 2
    if g.kind == "rational":
        value = g.floor + (1 - g.floor) / (1 + q)
        dg_dq = -(1 - g.floor) / (1 + q) ** 2
    else:
        e = np.exp(-q)
        value = g.floor + (1 - g.floor) * e
        dg_dq = -(1 - g.floor) * e
    if not derivatives:
        return value
    return value, dg_dq * dq_dx, lambda bar: float(np.sum(bar * dg_dq * (-2 * q / k)))


# ----------------------------------------------------------------------------------------------- the scheme
class _FamilyBlock:
    r"""The built-in family on a pair of components ``(u, v)``: :math:`D_h` per cell, the reaction, their adjoints."""

    def __init__(self, model):
        self.model = model

    def coefficients(self, grid, p, u, v, keep=False):
        """Cell coefficients (H−1, W−1, 4) = :math:`(D_{11}, D_{12}, D_{21}, D_{22})` at the cell centres (numpy, whose
        vectorised ``exp`` is faster here than a C loop's); with ``keep`` also what :meth:`coefficients_adjoint`
        needs."""
        m = self.model
        vc = grid.centre(v)
        of_grad = any(gf.kind != "one" and gf.variable == "grad_u" for _, gf in m.influences)
        g2, grad = grid.grad2(u) if of_grad else (None, None)
        parts = {key: (1.0, 0.0, None) for key, gfun in m.influences if gfun.kind == "one"}
        if keep:
            for key, gfun in m.influences:
                if gfun.kind != "one":
                    parts[key] = _influence(gfun, key, g2 if gfun.variable == "grad_u" else vc, p, True)
        else:                                          # RBFs of v with the same centres share their exp fields
            of_v = [(key, gfun) for key, gfun in m.influences if gfun.kind == "rbf" and gfun.variable == "v"]
            for (key, _), value in zip(of_v, rbf_shared([g for _, g in of_v], vc,
                                                        [p[g.parameter(key)] for key, g in of_v])):
                parts[key] = (value,)
            for key, gfun in m.influences:
                if key not in parts:
                    parts[key] = (_influence(gfun, key, g2 if gfun.variable == "grad_u" else vc, p, False),)
        G1 = parts["11"][0] * parts["11h"][0]
        G2 = parts["22"][0]
        G1 = np.broadcast_to(G1, vc.shape)
        G2 = np.broadcast_to(G2, vc.shape)
        S = np.sqrt(G1 * G2)
        c = p["rho"] * math.sqrt(p["d11"] * p["d22"])
        D = np.empty(vc.shape + (4,))
        D[..., 0] = p["d11"] * G1
        D[..., 1] = (c + p["beta"]) * S
        D[..., 2] = (c - p["beta"]) * S
        D[..., 3] = p["d22"] * G2
        return (D, (vc, g2, grad, parts, G1, G2, S, c)) if keep else D

    def coefficients_adjoint(self, grid, p, kept, Dbar, ubar, vbar, pbar):
        """Add the adjoint of :meth:`coefficients` for ``Dbar`` (cells, 4) to ``ubar``, ``vbar`` (nodes) and the stage
        gradient ``pbar`` (name → value)."""
        vc, g2, grad, parts, G1, G2, S, c = kept
        d11, d22, rho, beta = p["d11"], p["d22"], p["rho"], p["beta"]
        b11, b12, b21, b22 = (Dbar[..., i] for i in range(4))
        off = b12 + b21
        sq = math.sqrt(d11 * d22)
        pbar["d11"] += float(np.sum(b11 * G1) + np.sum(off * S) * rho * 0.5 * math.sqrt(d22 / d11))
        pbar["d22"] += float(np.sum(b22 * G2) + np.sum(off * S) * rho * 0.5 * math.sqrt(d11 / d22))
        pbar["rho"] += float(np.sum(off * S) * sq)
        pbar["beta"] += float(np.sum((b12 - b21) * S))
        cross = (b12 * (c + beta) + b21 * (c - beta)) * S * 0.5
        G1bar = b11 * d11 + cross / G1
        G2bar = b22 * d22 + cross / G2
        g11, h11, g22 = parts["11"], parts["11h"], parts["22"]
        bars = {"11": G1bar * h11[0], "11h": G1bar * g11[0], "22": G2bar}
        vcbar = np.zeros_like(vc)
        g2bar = None
        for key, gfun in self.model.influences:
            if gfun.kind == "one":
                continue
            value, dx, pgrad = parts[key]
            bar = bars[key]
            name = gfun.parameter(key)
            pbar[name] = _add(pbar[name], pgrad(bar))
            if gfun.variable == "grad_u":
                g2bar = bar * dx if g2bar is None else g2bar + bar * dx
            else:
                vcbar += bar * dx
        grid.centre_adjoint(vcbar, vbar)
        if g2bar is not None:
            grid.grad2_adjoint(g2bar, grad, ubar)

    def psi(self, p, v, derivatives=False):
        """:math:`\\psi(v)` at the nodes (None without one), with ``(dψ/dv, pgrad)`` if ``derivatives``."""
        if self.model.psi is None:
            return None
        return _influence(self.model.psi, "psi", v, p, derivatives)


def _add(acc, g):
    if isinstance(g, list):
        return [a + b for a, b in zip(acc, g)]
    return acc + g


class SplitScheme:
    r"""The split scheme for one model on one :class:`Grid` (``model``: the built-in family or a colour model).

    :meth:`run` evolves :math:`w^0` (from the data :math:`f`) for ``steps`` steps to ``time``; :meth:`gradient` gives
    the misfit at the final time and its exact gradient with respect to every stage parameter (in
    :func:`~fem_crossdiff.learning.parametrisation.pack` order) by the discrete adjoint of the steps.
    """

    def __init__(self, model, grid, time=None, steps=None, compiled=True):
        if not self.supports(model):
            raise InputError(f"the split scheme's fast path serves the built-in family and colour models, not "
                             f"{type(model).__name__}")
        self.model, self.grid = model, grid
        self.colour = isinstance(model, ColourModel)
        self.family = _FamilyBlock(model.luma if self.colour else model)
        self.time, self.steps = model.check_run(model.time if time is None else time,
                                                model.steps if steps is None else steps)
        self.tau = self.time / self.steps
        self.stages = list(model.stages)          # the stage parameters a run uses (a trainer changes them)
        self.kernels = line_kernels() if compiled else None
        if self.kernels is not None and None in self.kernels:
            self.kernels = None
        self._work = None

    @staticmethod
    def supports(model):
        return isinstance(model, (CrossDiffusionModel, ColourModel))

    def stage(self, n):
        """The parameters of the stage of step ``n``."""
        return self.stages[n * len(self.stages) // self.steps]

    # -- data -------------------------------------------------------------------------------------------------
    def initial(self, f):
        """:math:`w^0` as a list of component pairs (H, W, 2): ``[(u, v)]``, or ``[(Y, v), (C_1, C_2)]`` for colour;
        and the data the reaction sees (``f``, or ``(f_Y, f_{C_1}, f_{C_2})``)."""
        f = np.asarray(f, dtype=float)
        if self.colour:
            yc = np.tensordot(f, OPPONENT.T, axes=1)
            data = (yc[..., 0], yc[..., 1], yc[..., 2])
            return [np.stack([yc[..., 0], np.zeros(f.shape[:2])], -1), np.ascontiguousarray(yc[..., 1:])], data
        return [np.stack([f, np.zeros_like(f)], -1)], (f,)

    @staticmethod
    def state_parts(state):
        """A state array (H, W, components) as the list of component pairs :meth:`step` takes."""
        return [np.ascontiguousarray(state[..., 2 * i:2 * i + 2]) for i in range(state.shape[2] // 2)]

    def output(self, w):
        """The image the state stands for: ``u``, or RGB from ``(Y, C_1, C_2)``."""
        if self.colour:
            yc = np.stack([w[0][..., 0], w[1][..., 0], w[1][..., 1]], -1)
            return np.tensordot(yc, INVERSE.T, axes=1)
        return w[0][..., 0].copy()

    # -- one step ------------------------------------------------------------------------------------------------
    def _solve(self, b, D, rhs, axis, transpose=False):
        if self._work is None:
            self._work = np.empty(6 * LINE_BLOCK * max(self.grid.H, self.grid.W))
        return solve_lines(b, D, self.tau, rhs, axis, transpose, self.kernels, self._work)

    def _systems(self, p, w, data, keep=False):
        """Per pair: ``(b, D, rhs)`` of the step from ``w`` — diagonal, cell coefficients, right-hand side — and the
        intermediates the adjoint needs."""
        g, tau, m = self.grid, self.tau, self.grid.mass
        u, v = w[0][..., 0], w[0][..., 1]
        fam = self.family.coefficients(g, p, u, v, keep)
        D, kept = fam if keep else (fam, None)
        b = np.stack([m * (1 + tau * p["lam"]), m * (1 + tau * p["mu"])], -1)
        rhs = np.stack([m * (u + tau * p["lam"] * data[0]), m * v], -1)
        psi = self.family.psi(p, v, keep)
        if psi is not None:
            rhs[..., 0] += tau * m * (psi[0] if keep else psi)
        out = [(b, D, rhs)]
        extra = {"family": kept, "psi": psi}
        if self.colour:
            g2, grad = g.grad2(u)
            grads = [grad]
            if p["kappac"]:
                for i in range(2):
                    c2, cgrad = g.grad2(w[1][..., i])
                    g2 = g2 + p["kappac"] * c2
                    grads.append(cgrad)
            q = g2 / p["kc"] ** 2
            gc = CHROMA_FLOOR + (1 - CHROMA_FLOOR) * (1 + q) ** -p["pc"]
            e = np.zeros(gc.shape + (4,))
            e[..., 0] = e[..., 3] = p["dc"] * gc
            bc = np.repeat((m * (1 + tau * p["lamc"]))[..., None], 2, -1)
            rc = m[..., None] * (w[1] + tau * p["lamc"] * np.stack(data[1:], -1))
            out.append((bc, e, rc))
            extra["chroma"] = (grads, q, gc)
        return out, extra

    def step(self, n, w, data, keep=False):
        """:math:`w^{n+1}` from :math:`w^n` (list of pairs); with ``keep`` also the intermediates for the adjoint."""
        p = self.stage(n)
        systems, extra = self._systems(p, w, data, keep)
        new, mids = [], []
        for b, D, rhs in systems:
            z = self._solve(b, D, rhs, 1)
            new.append(self._solve(b, D, b * z, 0))
            mids.append(z)
        return (new, (systems, extra, mids)) if keep else new

    # -- runs ------------------------------------------------------------------------------------------------------
    def run(self, f, callback=None):
        """The final state (list of pairs) from the data ``f`` (H, W) or (H, W, 3)."""
        w, data = self.initial(f)
        for n in range(self.steps):
            w = self.step(n, w, data)
            if callback is not None:
                callback(n + 1, self.steps)
        if not all(np.all(np.isfinite(x)) for x in w):
            from ..errors import ModelError
            raise ModelError(f"model '{self.model.name}': the state became non-finite")
        return w

    def denoise(self, f, callback=None):
        """``output(run(f))`` and the edge indicator ``v``."""
        w = self.run(f, callback)
        return self.output(w), w[0][..., 1].copy()

    # -- misfit and gradient ------------------------------------------------------------------------------------------
    def misfit(self, y, clean, kind="L2"):
        r""":math:`\frac{1}{C|\Omega|}\int|y - c|^2` (``"L2"``: exact for the Q1 functions; ``"pixels"``: by the vertex
        rule) over the C channels, and its derivative with respect to ``y``."""
        e = np.asarray(y, dtype=float) - clean
        channels = 1 if e.ndim == 2 else e.shape[2]
        scale = 1.0 / (self.grid.area * channels)
        if kind == "pixels":
            me = e * (self.grid.mass if e.ndim == 2 else self.grid.mass[..., None])
        elif e.ndim == 2:
            me = self.grid.mass_product(e)
        else:
            me = np.stack([self.grid.mass_product(e[..., c]) for c in range(channels)], -1)
        return float(np.sum(e * me) * scale), 2 * scale * me

    def gradient(self, f, clean, misfit="L2"):
        """``(J, dJ/dp)``: the misfit of the final output against ``clean`` and its gradient in pack order (stage by
        stage, each in the model's ``stage_layout`` order) by the discrete adjoint of every step."""
        w, data = self.initial(f)
        tape = []
        for n in range(self.steps):
            new, kept = self.step(n, w, data, keep=True)
            tape.append((w, new, kept))
            w = new
        J, ybar = self.misfit(self.output(w), clean, misfit)
        wbar = self._output_adjoint(ybar)
        K = len(self.stages)
        grads = [np.zeros(len(self.model.pack_stage(st))) for st in self.stages]
        for n in range(self.steps - 1, -1, -1):
            k = n * K // self.steps
            p = self.stages[k]
            pbar = {name: (np.zeros(len(val)).tolist() if isinstance(val, list) else 0.0) for name, val in p.items()}
            wbar = self._step_adjoint(p, *tape[n], wbar, data, pbar, need_state=n > 0)
            grads[k] += self.model.pack_stage(pbar)
        return J, np.concatenate(grads)

    def _output_adjoint(self, ybar):
        if self.colour:
            yc = np.tensordot(ybar, INVERSE, axes=1)                   # (INVERSE^T)^T
            return [np.stack([yc[..., 0], np.zeros(ybar.shape[:2])], -1), np.ascontiguousarray(yc[..., 1:])]
        return [np.stack([ybar, np.zeros_like(ybar)], -1)]

    def _step_adjoint(self, p, w, new, kept, wbar_new, data, pbar, need_state=True):
        r"""Adjoint of one step: with :math:`A_y^T a = \bar w^{n+1}`, :math:`A_x^T c = B a`, add
        :math:`-a^T(\partial A_y w^{n+1} - \partial B\,w^*) - c^T(\partial A_x w^* - \partial r)` to ``pbar`` and return
        :math:`\bar w^n` (None unless ``need_state``)."""
        g, tau, m = self.grid, self.tau, self.grid.mass
        systems, extra, mids = kept
        wbar = [np.zeros_like(x) for x in w] if need_state else None
        cells = []
        for i, ((b, D, rhs), z, x1, xb) in enumerate(zip(systems, mids, new, wbar_new)):
            a = self._solve(b, D, xb, 0, transpose=True)
            c = self._solve(b, D, b * a, 1, transpose=True)
            bbar = a * z - a * x1 - c * z                          # d/db of -a^T(B x1) + a^T(B z) - c^T(B z)
            eybar = _edge_outer(a, x1, axis=0) * -tau
            exbar = _edge_outer(c, z, axis=1) * -tau
            cells.append(g.edges_adjoint(exbar, eybar))
            if i == 0:
                pbar["lam"] += float(tau * np.sum(bbar[..., 0] * m) + tau * np.sum(c[..., 0] * m * data[0]))
                pbar["mu"] += float(tau * np.sum(bbar[..., 1] * m))
                if need_state:
                    wbar[0] += m[..., None] * c
                psi = extra["psi"]
                if psi is not None:
                    mc = tau * m * c[..., 0]
                    pbar[PSI_PARAMETER] = _add(pbar[PSI_PARAMETER], psi[2](mc))
                    if need_state:
                        wbar[0][..., 1] += mc * psi[1]
            else:
                rc = np.stack(data[1:], -1)
                pbar["lamc"] += float(tau * np.sum(bbar * m[..., None]) + tau * np.sum(c * m[..., None] * rc))
                if need_state:
                    wbar[1] += m[..., None] * c
        ubar = wbar[0][..., 0] if need_state else np.zeros(g.shape)
        vbar = wbar[0][..., 1] if need_state else np.zeros(g.shape)
        self.family.coefficients_adjoint(g, p, extra["family"], cells[0], ubar, vbar, pbar)
        if self.colour:
            grads, q, gc = extra["chroma"]
            ebar = cells[1][..., 0] + cells[1][..., 3]
            pbar["dc"] += float(np.sum(ebar * gc))
            gq = gc - CHROMA_FLOOR                                     # (1 - g0)(1 + q)^-pc, from the forward step
            pbar["pc"] += float(np.sum(ebar * p["dc"] * -gq * np.log1p(q)))
            dgc_dq = -p["pc"] * gq / (1 + q)
            pbar["kc"] += float(np.sum(ebar * p["dc"] * dgc_dq * (-2 * q / p["kc"])))
            g2bar = ebar * p["dc"] * dgc_dq / p["kc"] ** 2                     # d/d s² of the cell coefficient
            g.grad2_adjoint(g2bar, grads[0], ubar)
            cbar = wbar[1] if need_state else np.zeros(g.shape + (2,))
            for i, cgrad in enumerate(grads[1:]):
                gx, gy = cgrad
                pbar["kappac"] += float(np.sum(g2bar * (gx * gx + gy * gy)))
                chroma_bar = np.zeros(g.shape)
                g.grad2_adjoint(p["kappac"] * g2bar, cgrad, chroma_bar)
                cbar[..., i] += chroma_bar
            if not p["kappac"]:                                    # at 0 the derivative in kappac is still needed
                w1 = w[1]
                for i in range(2):
                    c2, _ = g.grad2(w1[..., i])
                    pbar["kappac"] += float(np.sum(g2bar * c2))
        return wbar


def _edge_outer(a, x, axis):
    r"""Per edge along ``axis`` (1: x-edges, 0: y-edges), the outer product :math:`\Delta a_\alpha\Delta x_\beta` of
    the differences across it, as (…, 4) = (11, 12, 21, 22)."""
    da, dx = np.diff(a, axis=axis), np.diff(x, axis=axis)
    out = np.empty(da.shape[:2] + (4,))
    out[..., 0] = da[..., 0] * dx[..., 0]
    out[..., 1] = da[..., 0] * dx[..., 1]
    out[..., 2] = da[..., 1] * dx[..., 0]
    out[..., 3] = da[..., 1] * dx[..., 1]
    return out
