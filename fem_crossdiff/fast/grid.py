r"""The Q1 space on a uniform grid of squares as fixed sparse operators (numpy): Gauss-point tables, the scalar
CSR pattern of the node adjacency and the scatter of element entries into it.

Every cell of the image mesh is the same axis-aligned square of side :math:`h`, so every cell has the same element
matrices per Gauss point; :class:`StructuredQ1` holds them once, and a step's matrix is a few fixed products.
"""
import math

import numpy as np
import scipy.sparse as sp
from petsc4py import PETSc

__all__ = ["FastPathError", "GAUSS_1D", "reference_tables", "cell_corners", "StructuredQ1"]

#: Gauss–Legendre points of [0, 1] (2 per direction, weight 1/2 each): TSFC's rule for ``degree=2``.
GAUSS_1D = np.array([0.5 - 0.5 / math.sqrt(3.0), 0.5 + 0.5 / math.sqrt(3.0)])


class FastPathError(ValueError):
    """The fast path does not apply (mesh not a uniform grid of squares, node numberings differ...)."""



def reference_tables():
    r"""Bilinear basis on the unit square at the 2×2 Gauss points.

    Corner :math:`a = a_x + 2a_y`, Gauss point :math:`q = q_x + 2q_y`:
    :math:`\hat\varphi_a(\xi,\eta) = \ell_{a_x}(\xi)\ell_{a_y}(\eta)` with :math:`\ell_0 = 1-t`, :math:`\ell_1 = t`.
    Returns ``phi[q, a]``, the reference gradients ``dphi[q, a, d]`` and the weights ``wq[q]`` (sum 1).
    """
    ax, ay = np.arange(4) % 2, np.arange(4) // 2
    qx, qy = GAUSS_1D[np.arange(4) % 2], GAUSS_1D[np.arange(4) // 2]
    lx = np.where(ax[None, :] == 1, qx[:, None], 1 - qx[:, None])
    ly = np.where(ay[None, :] == 1, qy[:, None], 1 - qy[:, None])
    sx, sy = np.where(ax == 1, 1.0, -1.0), np.where(ay == 1, 1.0, -1.0)
    dphi = np.stack([sx[None, :] * ly, lx * sy[None, :]], axis=-1)
    return lx * ly, dphi, np.full(4, 0.25)


def cell_corners(cell_nodes, xy):
    r"""Nodes of every cell by physical corner, ``corners[c, a_x + 2a_y]``, and the cell side :math:`h`.

    ``cell_nodes`` (cells × 4, any local order) and node coordinates ``xy`` (nodes × 2). Raises
    :class:`FastPathError` unless every cell is the same axis-aligned square.
    """
    cx, cy = xy[cell_nodes, 0], xy[cell_nodes, 1]
    x0, y0 = cx.min(axis=1, keepdims=True), cy.min(axis=1, keepdims=True)
    h = float(cx[0].max() - x0[0, 0])
    if not h > 0:
        raise FastPathError("degenerate first cell")
    ix, iy = (cx - x0) / h, (cy - y0) / h
    ixr, iyr = np.rint(ix).astype(np.int64), np.rint(iy).astype(np.int64)
    corner = ixr + 2 * iyr
    if (np.abs(ix - ixr).max() > 1e-8 or np.abs(iy - iyr).max() > 1e-8 or ixr.max() > 1 or iyr.max() > 1
            or not np.all(np.sort(corner, axis=1) == np.arange(4))):
        raise FastPathError("the mesh is not a uniform grid of axis-aligned squares")
    corners = np.empty_like(cell_nodes)
    np.put_along_axis(corners, corner, cell_nodes, axis=1)
    return corners, h


class StructuredQ1:
    r"""Fixed sparse operators of the Q1 space on a uniform grid of squares (built once, vectorised).

    * ``u_index``, ``v_index`` (cells × 4): where the corner values of :math:`u, v` sit in the interleaved dof
      vector; ``to_gauss``, ``to_dx``, ``to_dy`` (4 × 4) take them to :math:`v`, :math:`\partial_x u`,
      :math:`\partial_y u` at the Gauss points (corner values ``@`` table);
    * ``stiff[q, 4a+b]`` :math:`= w_q\hat\nabla\varphi_a\cdot\hat\nabla\varphi_b` (:math:`h`-free in 2-D) and
      ``mass_q[q, 4a+b]`` :math:`= h^2 w_q\varphi_a\varphi_b`: element matrix :math:`E_c = \kappa_c` ``@ stiff``;
    * ``indptr``, ``indices``: the scalar CSR pattern (node adjacency, sorted columns), ``nnz`` entries;
    * ``scatter``: :math:`\text{nnz}\times 16n_c` 0/1 matrix summing element entries :math:`(c, a, b)` into it;
    * ``mass``, ``unit_stiffness``: the CSR values of the scalar mass and (coefficient 1) stiffness matrices.
    """

    def __init__(self, cell_nodes, xy):
        self.corners, self.h = cell_corners(np.asarray(cell_nodes), np.asarray(xy))
        self.ncells, self.nnodes = len(self.corners), len(xy)
        phi, dphi, wq = reference_tables()
        self.stiff = (wq[:, None, None] * np.einsum("qad,qbd->qab", dphi, dphi)).reshape(4, 16)
        self.mass_q = (self.h ** 2 * wq[:, None, None] * phi[:, :, None] * phi[:, None, :]).reshape(4, 16)
        self.u_index, self.v_index = 2 * self.corners, 2 * self.corners + 1   # in the interleaved dof vector
        self.to_gauss = phi.T.copy()                                           # corner values @ -> Gauss values
        self.to_dx, self.to_dy = (dphi[:, :, 0].T / self.h).copy(), (dphi[:, :, 1].T / self.h).copy()
        self._build_pattern()
        ones = np.ones((self.ncells, 4))
        self.mass = self.stiffness_values(ones, self.mass_q)
        self.unit_stiffness = self.stiffness_values(ones)

    def _build_pattern(self):
        """Scalar CSR pattern of the node adjacency and the scatter of element entries :math:`(c, a, b)`.

        Sorting the keys :math:`n\\,\\text{row} + \\text{col}` of the 16 entries of every cell gives both: the
        distinct keys in CSR order, and (the sorting permutation) the scatter's CSR column indices.
        """
        n, nc = self.nnodes, self.ncells
        corners = self.corners.astype(np.int64)
        keys = (n * corners[:, :, None] + corners[:, None, :]).reshape(-1)         # (c, a, b) -> n a + b
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        first = np.empty(16 * nc, dtype=bool)
        first[0], first[1:] = True, sorted_keys[1:] != sorted_keys[:-1]
        unique = sorted_keys[first]
        self.nnz = len(unique)
        self.indices = (unique % n).astype(PETSc.IntType)
        self.indptr = np.zeros(n + 1, dtype=PETSc.IntType)
        np.cumsum(np.bincount(unique // n, minlength=n), out=self.indptr[1:])
        scatter_ptr = np.append(np.flatnonzero(first), 16 * nc)
        self.scatter = sp.csr_matrix((np.ones(16 * nc), order, scatter_ptr), shape=(self.nnz, 16 * nc))

    def stiffness_values(self, kappa, table=None):
        """Scalar CSR values of :math:`\\sum_{c,q}\\kappa_{cq}` ``table[q]`` (default ``stiff``); ``kappa`` (cells, 4).

        Element matrices :math:`E_c = \\kappa_c` ``@ table`` (one dense product), summed by ``scatter``.
        """
        E = kappa @ (self.stiff if table is None else table)
        return self.scatter @ E.reshape(-1)

    def load(self, kappa):
        r""":math:`\int\kappa\varphi_i` for every node :math:`i` (the 2×2 Gauss rule) from ``kappa`` (cells, 4)."""
        corner = (kappa @ self.to_gauss.T) * (self.h ** 2 / 4)
        return np.bincount(self.corners.reshape(-1), weights=corner.reshape(-1), minlength=self.nnodes)

    def gauss_v(self, w):
        """:math:`v` at the Gauss points, (cells, 4), from the interleaved dof array ``w`` (nodes, 2)."""
        return np.take(w.reshape(-1), self.v_index) @ self.to_gauss

    def gauss_grad2(self, w):
        """:math:`|\\nabla u|^2` at the Gauss points, (cells, 4)."""
        uc = np.take(w.reshape(-1), self.u_index)
        gx, gy = uc @ self.to_dx, uc @ self.to_dy
        gx *= gx
        gy *= gy
        gx += gy
        return gx
