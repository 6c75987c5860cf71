r"""Fast semi-implicit steps on the structured image mesh (one rank): assembly without ``MatSetValues``.

The semi-implicit system of :class:`~fem_crossdiff.timestepping.Evolution` (2×2 Gauss points per cell) is

.. math:: A = (I + \tau\Lambda)\otimes\mathcal M + \tau\,\mathcal K(D(w^n)),\qquad
          b = (\mathcal M\otimes I)\,\big(w^n + \tau(\lambda f, 0)\big) + \tau\big((\psi(v^n), \varphi_i), 0\big),

:math:`\Lambda = \mathrm{diag}(\lambda,\mu)`, with the 2×2 block of :math:`\mathcal K(D)` at nodes
:math:`(i, j)` equal to :math:`\int D\,\nabla\varphi_j\cdot\nabla\varphi_i`. Every cell of the image mesh is
the same axis-aligned square of side :math:`h`, so every cell has the same element matrices per Gauss point,
and a step is a few fixed sparse products:

1. a fixed gather and a 4×4 product take :math:`w^n` to the Gauss points; :math:`D` is evaluated there (numpy);
2. the 4×4 element matrices of each distinct coefficient field :math:`\kappa` of :math:`D` are one small dense
   product :math:`E_c = \sum_q \kappa_{cq} S_q`;
3. ``scatter`` (a sparse 0/1 matrix) sums them into the scalar CSR value array, one column per field;
4. one dense 4-column product combines the fields into the 2×2 blocks, written straight into the PETSc BAIJ
   value array (or, if that array cannot be reached, gathered into an AIJ matrix sharing numpy arrays).

Steps 2–4 are memory-bound in numpy (temporaries of 16 values per cell and field); a small C kernel
(:data:`GATHER_KERNEL`, compiled once by PyOP2's compiler and kept in its disk cache) does them in one pass
over the matrix entries, reading the Gauss-point fields and writing each block value once. The numpy
products remain as the reference and the fallback when no compiler is available.

The unknowns are ordered as Firedrake orders the vector Q1 space (node-major, (u, v) interleaved), so the
PETSc KSP works directly on ``w.dat.vec``. The matrices equal the UFL-assembled ones to round-off
(``tests/test_fastassembly.py``).
"""
import ctypes
import functools
import glob
import math
import os

import numpy as np
import scipy.sparse as sp
from petsc4py import PETSc

from .models import GRAD_EPS2, HORNER_CENTRES, HORNER_Z_MAX, PSI_PARAMETER
from .timestepping import linear_solver_parameters

__all__ = ["StructuredQ1", "BlockMatrix", "SemiImplicitAssembler", "FastSemiImplicitSolver", "FAST_SOLVER",
           "FastPathError", "KSP_REASONS"]

#: Gauss–Legendre points of [0, 1] (2 per direction, weight 1/2 each): TSFC's rule for ``degree=2``.
GAUSS_1D = np.array([0.5 - 0.5 / math.sqrt(3.0), 0.5 + 0.5 / math.sqrt(3.0)])
#: Default Krylov solver of the fast path: flexible GMRES (right preconditioning: the true residual is tested)
#: + point-block ILU(0) on the 2×2-block (BAIJ) matrix, 3 iterations per step on the named models. The
#: tolerance is relative to the step's initial residual: on the 256² benchmark a whole denoise differs from a
#: 1e-12 solve by at most 4e-7 (grey values in [0, 1]; below a 16-bit level), and 1e-8 costs one more
#: iteration per step. Learning asks for tighter solves (``learning.LEARNING_SOLVER``): J(p) must be smooth in
#: p far below the optimiser's and the Taylor tests' resolution.
FAST_SOLVER = {"ksp_type": "fgmres", "pc_type": "ilu", "ksp_rtol": 1e-6, "ksp_atol": 1e-14}
#: PETSc KSP converged/diverged reason number -> name.
KSP_REASONS = {getattr(PETSc.KSP.ConvergedReason, k): k for k in dir(PETSc.KSP.ConvergedReason)
               if not k.startswith("_")}
#: Block (r, t) of the 2×2 blocks -> column of the value arrays (PETSc BAIJ stores blocks column-major).
BLOCK = {(0, 0): 0, (1, 0): 1, (0, 1): 2, (1, 1): 3}


class FastPathError(ValueError):
    """The fast path does not apply (mesh not a uniform grid of squares, node numberings differ...)."""


# ------------------------------------------------------------------------------------------ geometry
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


# ------------------------------------------------------------------------------------ block matrix
def _libpetsc():
    """The PETSc shared library petsc4py uses, via ctypes (None if it cannot be found)."""
    import petsc4py
    libdir = os.path.join(petsc4py.get_config()["PETSC_DIR"], "lib")
    for pattern in ("libpetsc.so.*", "libpetsc.*.dylib", "libpetsc.dylib", "libpetsc.so"):
        for path in sorted(glob.glob(os.path.join(libdir, pattern))):
            try:
                lib = ctypes.CDLL(path)
                lib.MatSeqBAIJGetArray, lib.MatSeqBAIJRestoreArray  # noqa: B018 (both must exist)
                return lib
            except (OSError, AttributeError):
                continue
    return None


class BlockMatrix:
    """A PETSc matrix with 2×2 blocks on the scalar pattern of ``q1``, rows and columns interleaved (u, v).

    :meth:`update` writes the values as an (nnz, 4) array, columns ordered by :data:`BLOCK`. Preferred
    storage: SeqBAIJ (block size 2) whose value array *is* that (nnz, 4) array (reached with
    ``MatSeqBAIJGetArray`` through ctypes: no copy, no insertion). Fallback: SeqAIJ with block size 2
    sharing numpy CSR arrays, filled by one fixed gather.
    """

    def __init__(self, q1, prefer_baij=True, comm=None):
        self.q1 = q1
        comm = PETSc.COMM_SELF if comm is None else comm
        if comm.size != 1:
            raise FastPathError("the fast path runs on one rank")
        self._lib = _libpetsc() if prefer_baij and PETSc.ScalarType == np.float64 else None
        self.kind = "baij" if self._lib is not None and self._make_baij(comm) else "aij"
        if self.kind == "aij":
            n2, nnz = 2 * q1.nnodes, q1.nnz
            self._values = np.zeros((nnz, 4))
            vindptr, vindices, self._perm = _aij_pattern(q1)
            self._data = np.zeros(4 * nnz, dtype=PETSc.ScalarType)
            self.mat = PETSc.Mat().createAIJWithArrays((n2, n2), (vindptr, vindices, self._data), bsize=2,
                                                       comm=comm)
            self.mat.assemble()

    def _make_baij(self, comm):
        """Create the BAIJ matrix and check that ctypes reaches its value array as :data:`BLOCK` says."""
        q1 = self.q1
        rows = np.arange(4.0 * q1.nnz)                       # blocks given row-major, stored column-major
        self.mat = PETSc.Mat().createBAIJ((2 * q1.nnodes,) * 2, 2, csr=(q1.indptr, q1.indices, rows), comm=comm)
        self.mat.assemble()
        seen = []
        self._update_baij(lambda values: seen.append(values.copy()))
        return np.array_equal(seen[0], rows.reshape(-1, 2, 2).transpose(0, 2, 1).reshape(-1, 4))

    def _update_baij(self, fill):
        ptr = ctypes.POINTER(ctypes.c_double)()
        handle = ctypes.c_void_p(self.mat.handle)
        if self._lib.MatSeqBAIJGetArray(handle, ctypes.byref(ptr)) != 0:
            raise RuntimeError("MatSeqBAIJGetArray failed")
        try:
            fill(np.ctypeslib.as_array(ptr, shape=(self.q1.nnz, 4)))
        finally:
            self._lib.MatSeqBAIJRestoreArray(handle, ctypes.byref(ptr))

    def update(self, fill):
        """Call ``fill(values)`` on the (nnz, 4) value array, then assemble (the matrix state increases)."""
        if self.kind == "baij":
            self._update_baij(fill)
        else:
            fill(self._values)
            np.take(self._values.reshape(-1), self._perm, out=self._data)
        self.mat.assemble()


def _rows(q1):
    """Per scalar CSR entry: start and length of its row, the row, and its offset in the row."""
    start, length = q1.indptr[:-1].astype(np.int64), np.diff(q1.indptr).astype(np.int64)
    srow = np.repeat(np.arange(q1.nnodes), length)
    return start[srow], length[srow], srow, np.arange(q1.nnz) - start[srow]


def _aij_pattern(q1):
    """Interleaved AIJ (bs=2) CSR pattern and the gather ``data = values.ravel()[perm]``.

    Row :math:`2i+r` holds, for each scalar entry :math:`(i, j)` in order, columns :math:`2j, 2j+1`.
    """
    nnz = q1.nnz
    start, length, _, offset = _rows(q1)
    perm = np.empty(4 * nnz, dtype=np.intp)
    vindices = np.empty(4 * nnz, dtype=PETSc.IntType)
    for (r, t), col in BLOCK.items():
        vpos = 4 * start + 2 * r * length + 2 * offset + t
        perm[vpos] = 4 * np.arange(nnz) + col
        vindices[vpos] = 2 * q1.indices + t
    return _interleaved_indptr(q1, 2), vindices, perm


def _interleaved_indptr(q1, width):
    """Row pointers of the interleaved matrix whose row :math:`2i+r` has ``width`` entries per scalar entry."""
    n, ptr = q1.nnodes, q1.indptr.astype(np.int64)
    out = np.empty(2 * n + 1, dtype=PETSc.IntType)
    out[0:2 * n:2] = 2 * width * ptr[:-1]
    out[1:2 * n:2] = 2 * width * ptr[:-1] + width * np.diff(ptr)
    out[2 * n] = 2 * width * ptr[-1]
    return out


def _interleaved_csr(q1, data):
    """CSR arrays of :math:`S\\otimes I_2` (rows and columns (u, v) interleaved) for the scalar CSR values ``data``."""
    start, length, _, offset = _rows(q1)
    indices, values = np.empty(2 * q1.nnz, dtype=PETSc.IntType), np.empty(2 * q1.nnz)
    for r in range(2):
        pos = 2 * start + r * length + offset      # row 2i + r holds columns 2j + r
        indices[pos], values[pos] = 2 * q1.indices + r, data
    return _interleaved_indptr(q1, 1), indices, values


# --------------------------------------------------------------------------------------- the model
def rbf(g, s, weights):
    r""":math:`\text{floor} + \sum_m w_m e^{-(s-c_m)^2/(2\sigma^2)}` (:meth:`Influence.evaluate`) with two ``exp``.

    The centres are evenly spaced by :math:`\sigma`: with :math:`z = (s - c_0)/\sigma`, the sum is
    :math:`e^{-z^2/2}\sum_m a_m R^m`, :math:`R = e^z`, :math:`a_m = w_m e^{-m^2/2}` (Horner in :math:`R`; for the
    influence functions all terms are positive, so no cancellation). :math:`z` is clipped to :math:`[-37, 37]`
    (:data:`HORNER_Z_MAX`), which keeps :math:`e^{-z^2/2}` normal and :math:`R^{m}` finite for up to 20 centres
    and changes only terms below :math:`e^{-160}`; other sizes are summed directly. The UFL twin is
    :meth:`Influence._rbf_horner`.
    """
    weights = np.asarray(weights, dtype=float)
    if g.centres not in HORNER_CENTRES:
        return g.evaluate(s, weights, lib=np)
    z = (s - g.centre_values[0]) * (1.0 / g.width)
    np.clip(z, -HORNER_Z_MAX, HORNER_Z_MAX, out=z)
    R = np.exp(z)
    a = g.horner_coefficients(weights)
    acc = np.full_like(s, a[-1])
    for am in a[-2::-1]:
        acc *= R
        acc += am
    np.multiply(z, z, out=z)
    z *= -0.5
    acc *= np.exp(z, out=z)
    acc += g.floor
    return acc


def off_diagonal_mode(model, k):
    """How :meth:`DiscreteModel.D` forms the off-diagonal influence of stage ``k`` (mirrors its branches).

    It depends only on the model's structure (which influence functions are constant), not on values.
    """
    g11, g22 = model.g11.kind != "one" or model.h11.kind != "one", model.g22.kind != "one"
    if not g11 and not g22:
        return "none"              # D = M
    if not g22:
        return "sqrt11"            # off = sqrt(g11), g22 = 1
    if not g11:
        return "sqrt22"            # off = sqrt(g22), g11 = 1
    return "sqrt"                  # off = sqrt(g11 g22); layout() still uses one field when g11 = g22 now


class Layout:
    """The coefficient fields of a stage: ``var`` (recomputed every step), ``const`` (unit stiffness, mass),
    and the field behind each of :math:`\\mathcal K_{11}`, :math:`\\mathcal K_{22}`, :math:`\\mathcal K_{off}`."""

    def __init__(self, var, const, k11, k22, koff):
        self.var, self.const, self.k11, self.k22, self.koff = var, const, k11, k22, koff
        self.names = list(var) + list(const)
        self.key = (var, const, k11, k22, koff)


def layout(mode, model, stage):
    r"""The :class:`Layout` of a stage with off-diagonal ``mode`` and current numbers ``stage``.

    Identical influence functions with equal parameters need one field: :math:`g_{22} = g_{11}` (the same
    arithmetic) and :math:`\sqrt{g\,g} = g` (exact in IEEE arithmetic, barring underflow).
    """
    if mode == "none":
        return Layout((), ("unit", "mass"), "unit", "unit", "unit")
    if mode == "sqrt11":
        return Layout(("g11", "off"), ("unit", "mass"), "g11", "unit", "off")
    if mode == "sqrt22":
        return Layout(("g22", "off"), ("unit", "mass"), "unit", "g22", "off")
    p11, p22 = model.g11.parameter("11"), model.g22.parameter("22")
    if model.g11 == model.g22 and model.h11.kind == "one" and np.array_equal(stage[p11], stage[p22]):
        return Layout(("g11",), ("mass",), "g11", "g11", "g11")
    return Layout(("g11", "g22", "off"), ("mass",), "g11", "g22", "off")


class SemiImplicitAssembler:
    r"""Values of the semi-implicit matrix :math:`A` of one model, as ``Evolution``'s UFL form builds it.

    With the coefficient fields :math:`\kappa\in\{g_{11}, g_{22}, o\}` (:math:`o` the off-diagonal influence,
    per :func:`off_diagonal_mode`), :math:`c = \rho\sqrt{d_{11}d_{22}}` and :math:`\mathcal K_\kappa` the
    scalar stiffness matrix with coefficient :math:`\kappa`, the 2×2 blocks are

    .. math:: A = \begin{pmatrix} (1+\tau\lambda)\mathcal M + \tau d_{11}\mathcal K_{g_{11}} &
                                  \tau(c+\beta)\mathcal K_o \\ \tau(c-\beta)\mathcal K_o &
                                  (1+\tau\mu)\mathcal M + \tau d_{22}\mathcal K_{g_{22}}\end{pmatrix}.

    Parameters are read from ``discrete`` (its current stage values) at every call.
    """

    def __init__(self, discrete, q1, compiled=True):
        self.discrete, self.q1 = discrete, q1
        self.model = discrete.model
        self.g = dict(self.model.influences)
        self.modes = [off_diagonal_mode(self.model, k) for k in range(len(discrete.params))]
        self._K = {}
        self.gather = CompiledGather.create(q1) if compiled else None
        self.last_fields = None

    def _field_buffer(self, lay):
        """(fields, nnz) scalar CSR values, one row per field; the constant fields (unit stiffness, mass) once."""
        if lay.key not in self._K:
            K = np.empty((len(lay.names), self.q1.nnz))
            for j, name in enumerate(lay.const, start=len(lay.var)):
                K[j] = self.q1.unit_stiffness if name == "unit" else self.q1.mass
            self._K[lay.key] = K
        return self._K[lay.key]

    def influence(self, which, stage, v, grad2):
        """:math:`g_{11}h_{11}` or :math:`g_{22}` at the Gauss points (as :meth:`DiscreteModel.influence`)."""
        out = self._factor(which, stage, v, grad2)
        for key in self.model.factors(which)[1:]:
            if self.g[key].kind != "one":
                out = self._factor(key, stage, v, grad2) * out
        return out

    def _factor(self, which, stage, v, grad2):
        g = self.g[which]
        if g.kind == "one":
            return np.ones_like(v if v is not None else grad2)
        par = stage[g.parameter(which)]
        if g.variable == "v":
            return rbf(g, v, par) if g.kind == "rbf" else g.evaluate(v, float(par), lib=np)
        if g.kind == "rbf":                              # the in-place Horner sum, not evaluate()'s loop
            return rbf(g, np.sqrt(grad2 + GRAD_EPS2), par)
        return g.of_grad2(grad2, float(par), lib=np)

    def fields(self, lay, stage, w):
        """The fields ``lay.var`` at the Gauss points for the state ``w`` (nodes, 2), each (cells, 4)."""
        needed = [self.g[key] for ij in ("11", "22") if f"g{ij}" in lay.var for key in self.model.factors(ij)]
        v = self.q1.gauss_v(w) if any(g.variable == "v" for g in needed) else None
        grad2 = self.q1.gauss_grad2(w) if any(g.variable == "grad_u" for g in needed) else None
        out = {name: self.influence(name[1:], stage, v, grad2) for name in lay.var if name != "off"}
        if "off" in lay.var:
            out["off"] = np.sqrt(out.get("g11", 1.0) * out.get("g22", 1.0))
        return [out[name] for name in lay.var]

    @staticmethod
    def combination(lay, stage, tau):
        """(fields, 4) matrix :math:`C`: block values ``= K @ C``, ``K`` one scalar CSR column per field."""
        C = np.zeros((len(lay.names), 4))
        c = stage["rho"] * math.sqrt(stage["d11"] * stage["d22"])
        C[lay.names.index(lay.k11), BLOCK[0, 0]] += tau * stage["d11"]
        C[lay.names.index(lay.koff), BLOCK[0, 1]] += tau * (c + stage["beta"])
        C[lay.names.index(lay.koff), BLOCK[1, 0]] += tau * (c - stage["beta"])
        C[lay.names.index(lay.k22), BLOCK[1, 1]] += tau * stage["d22"]
        C[lay.names.index("mass"), BLOCK[0, 0]] += 1 + tau * stage["lam"]
        C[lay.names.index("mass"), BLOCK[1, 1]] += 1 + tau * stage["mu"]
        return C

    def fill(self, values, w, k, tau, stage=None, transpose=False, fields=None):
        r"""Write the (nnz, 4) block values (columns as :data:`BLOCK`) of :math:`A(w)`, stage ``k``, into ``values``;
        with ``transpose``, of :math:`A^T`: every scalar field matrix :math:`\mathcal K_\kappa`, :math:`\mathcal M`
        is symmetric, so :math:`A^T` has the same fields with each 2×2 block of :math:`C` transposed. ``fields``:
        the Gauss-point fields of this ``w`` and stage if known (:attr:`last_fields` of an earlier fill)."""
        stage = self.discrete.get_stage(k) if stage is None else stage
        lay = layout(self.modes[k], self.model, stage)
        fields = self.fields(lay, stage, w) if fields is None else fields
        self.last_fields, C = fields, self.combination(lay, stage, tau)
        if transpose:
            C[:, [BLOCK[0, 1], BLOCK[1, 0]]] = C[:, [BLOCK[1, 0], BLOCK[0, 1]]]
        if self.gather is not None and self.gather(values, fields, lay.const, C) is not None:
            return values
        K = self._field_buffer(lay)
        for j, kappa in enumerate(fields):
            K[j] = self.q1.stiffness_values(kappa)
        np.matmul(K.T, C, out=values)
        return values


# -------------------------------------------------------------------------------------- compiled fill
#: One pass over the scalar CSR entries :math:`e`: :math:`K_j[e] = \sum_{(c,ab)\to e}\sum_q \kappa_j[c,q]\,
#: S[q,ab]` for the variable fields, :math:`K_j[e] = \sum_{(c,ab)\to e} T_j[ab]` for the constant ones (unit
#: stiffness, mass), then the 2×2 block values ``values[e, :]`` :math:`= \sum_j K_j[e]\,C[j, :]`. The
#: contributions of entry :math:`e` are the columns of row :math:`e` of ``StructuredQ1.scatter``.
GATHER_KERNEL = r"""
#include <stdint.h>
/* NVAR variable and NCONST constant fields, fixed at compile time (one build per pair) so that the field
   loops unroll and K stays in registers. */
void fem_crossdiff_gather(int32_t nnz, const int32_t *ptr, const int32_t *idx, const double *kappa,
                          int64_t ncells, const double *stiff, const double *ctab, const double *C,
                          double *values)
{
    for (int32_t e = 0; e < nnz; e++) {
        double K[NVAR + NCONST];
        for (int j = 0; j < NVAR + NCONST; j++)
            K[j] = 0.0;
        for (int32_t t = ptr[e]; t < ptr[e + 1]; t++) {
            const int32_t i = idx[t], ab = i & 15;
            const int64_t c4 = 4 * (int64_t)(i >> 4);
            for (int j = 0; j < NVAR; j++) {
                const double *k = kappa + 4 * ncells * j + c4;
                K[j] += k[0] * stiff[ab] + k[1] * stiff[16 + ab] + k[2] * stiff[32 + ab] + k[3] * stiff[48 + ab];
            }
            for (int j = 0; j < NCONST; j++)
                K[NVAR + j] += ctab[16 * j + ab];
        }
        double *out = values + 4 * (int64_t)e;
        for (int col = 0; col < 4; col++) {
            double acc = 0.0;
            for (int j = 0; j < NVAR + NCONST; j++)
                acc += K[j] * C[4 * j + col];
            out[col] = acc;
        }
    }
}
"""


def compile_c(code, symbol, argtypes):
    """The C function ``symbol`` of ``code`` compiled by PyOP2's compiler (cached on disk) as a ctypes function
    with ``argtypes``, or None if it cannot be built here (no compiler, or PyOP2 changed)."""
    from mpi4py import MPI
    try:
        from pyop2.compilation import load
        fn = getattr(load(code, "c", comm=MPI.COMM_SELF), symbol)
    except Exception:                            # the callers keep a slower path for this case
        return None
    fn.argtypes, fn.restype = argtypes, None
    return fn


@functools.lru_cache(maxsize=None)
def gather_kernel(nvar, nconst):
    """The compiled :data:`GATHER_KERNEL` for ``nvar`` variable and ``nconst`` constant fields (a ctypes
    function), or None if it cannot be built here (the numpy products remain)."""
    dp, ip = ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int32)
    code = f"#define NVAR {int(nvar)}\n#define NCONST {int(nconst)}\n" + GATHER_KERNEL
    return compile_c(code, "fem_crossdiff_gather", [ctypes.c_int32, ip, ip, dp, ctypes.c_int64, dp, dp, dp, dp])


def _ptr(a, ctype=ctypes.c_double):
    """A ctypes pointer to the data of the contiguous array ``a``."""
    return a.ctypes.data_as(ctypes.POINTER(ctype))


class CompiledGather:
    r"""Steps 2–4 of the fill in one C pass (:data:`GATHER_KERNEL`) on the pattern of ``q1``."""

    def __init__(self, q1):
        self.q1 = q1
        self.ptr = np.ascontiguousarray(q1.scatter.indptr, dtype=np.int32)
        self.idx = np.ascontiguousarray(q1.scatter.indices, dtype=np.int32)
        self.stiff = np.ascontiguousarray(q1.stiff)
        self.tables = {"unit": q1.stiff.sum(axis=0), "mass": q1.mass_q.sum(axis=0)}
        self._kappa = {}

    @classmethod
    def create(cls, q1):
        """A :class:`CompiledGather`, or None when the kernel cannot be built or int32 indices would overflow."""
        if gather_kernel(1, 1) is None or 16 * q1.ncells >= 2 ** 31:
            return None
        return cls(q1)

    def __call__(self, values, kappas, const, C):
        """``values`` (nnz, 4) :math:`= K^T C` for the variable fields ``kappas`` (each (cells, 4)) and the
        constant fields named in ``const``; None if the kernel for this many fields cannot be built."""
        kernel = gather_kernel(len(kappas), len(const))
        if kernel is None:
            return None
        if values.shape != (self.q1.nnz, 4) or not values.flags.c_contiguous or values.dtype != np.float64:
            raise ValueError("values must be a C-contiguous float64 (nnz, 4) array")
        kappa = self._kappa.get(len(kappas))
        if kappa is None:
            kappa = self._kappa[len(kappas)] = np.empty((max(len(kappas), 1), self.q1.ncells, 4))
        for j, k in enumerate(kappas):
            kappa[j] = k
        ctab = np.ascontiguousarray([self.tables[name] for name in const], dtype=np.float64)
        C = np.ascontiguousarray(C, dtype=np.float64)
        kernel(self.q1.nnz, _ptr(self.ptr, ctypes.c_int32), _ptr(self.idx, ctypes.c_int32), _ptr(kappa),
               self.q1.ncells, _ptr(self.stiff), _ptr(ctab), _ptr(C), _ptr(values))
        return values


# ------------------------------------------------------------------------------------------- solver
class FastSemiImplicitSolver:
    r"""One semi-implicit step :math:`A(w^n)\,w^{n+1} = b(w^n)` with a PETSc KSP on a :class:`BlockMatrix`.

    Solved as :math:`A\,\delta = b - A w^n`, :math:`w^{n+1} = w^n + \delta`, from :math:`\delta = 0` (as the UFL
    path's Newton step), so ``ksp_rtol`` is relative to the initial residual. Linear models (constant
    :math:`D`) keep their matrix and its factorisation while the stage parameters do not change.
    """

    def __init__(self, discrete, W, xy, *, solver_parameters=None, prefix="fem_crossdiff_fast_", prefer_baij=True):
        self.discrete = discrete
        self.q1 = StructuredQ1(W.cell_node_list, xy)
        self.assembler = SemiImplicitAssembler(discrete, self.q1)
        self.comm = W.mesh().comm                 # one rank (possibly a sub-communicator of an ensemble)
        self.matrix = BlockMatrix(self.q1, prefer_baij, self.comm)
        self.A = self.matrix.mat
        self.linear = discrete.is_linear()
        self._key = None
        self.ksp = self._make_ksp(solver_parameters or {}, prefix)
        self.transposed_solves = 0
        self.r, self.delta, self.x = self.A.createVecLeft(), self.A.createVecRight(), self.A.createVecRight()
        self.mass2 = PETSc.Mat().createAIJ((2 * self.q1.nnodes,) * 2, bsize=2, comm=self.comm,
                                           csr=_interleaved_csr(self.q1, self.q1.mass))   # M ⊗ I
        self.mass2.assemble()

    def _make_ksp(self, parameters, prefix):
        """KSP from :data:`FAST_SOLVER` updated with ``parameters`` (``mat_type`` and ``snes_*`` ignored)."""
        params = {**FAST_SOLVER, **{k: v for k, v in linear_solver_parameters(parameters).items()
                                    if k != "mat_type"}}
        opts = PETSc.Options()
        for key, val in params.items():
            opts[prefix + key] = val
        ksp = PETSc.KSP().create(comm=self.comm)
        ksp.setOptionsPrefix(prefix)
        ksp.setOperators(self.A)
        try:
            ksp.setFromOptions()
        finally:
            for key in params:
                opts.delValue(prefix + key)
        return ksp

    def assemble(self, w, k, tau, stage=None, transpose=False, fields=None):
        """Fill :math:`A` (or :math:`A^T`) for the state ``w`` (nodes, 2), stage ``k`` and step ``tau`` (from the
        Gauss-point ``fields`` if given, :meth:`SemiImplicitAssembler.fill`); return the PETSc matrix."""
        stage = self.discrete.get_stage(k) if stage is None else stage
        self._key = None
        self.matrix.update(lambda values: self.assembler.fill(values, w, k, tau, stage, transpose, fields))
        return self.A

    def update_matrix(self, w, k, tau):
        """:meth:`assemble`, skipped for a linear model whose stage numbers have not changed (the
        factorisation of the preconditioner is then kept too)."""
        stage = self.discrete.get_stage(k)
        if self.linear:
            key = (k, tau, repr(stage))
            if key == self._key:
                return
            self.assemble(w, k, tau, stage)
            self._key = key
        else:
            self.assemble(w, k, tau, stage)

    def _residual(self, w_old, w, f, k, tau):
        """:math:`r = b - A w^n`, :math:`b = (\\mathcal M\\otimes I)(w^n + \\tau(\\lambda f, 0)) + \\tau(\\psi(v^n), 0)`
        (:math:`\\psi` integrated at the Gauss points), into ``self.r``."""
        stage = self.discrete.get_stage(k)
        lam = float(stage["lam"])
        with self.x as x:
            x[:] = w.reshape(-1)
            if lam != 0:
                x[0::2] += tau * lam * f
        self.A.mult(w_old, self.r)
        self.r.scale(-1.0)
        self.mass2.multAdd(self.x, self.r, self.r)
        psi = self.discrete.model.psi
        if psi is not None:
            with self.r as r:
                r[0::2] += tau * self.q1.load(rbf(psi, self.q1.gauss_v(w), stage[PSI_PARAMETER]))

    def solve_transpose(self, w, k, tau, stage, b, x, fields=None):
        """:math:`A(w)^T x = b` (PETSc vectors) for the state ``w`` (nodes, 2), stage ``k`` (numbers ``stage``)
        and step ``tau`` (the adjoint of a step, :mod:`fem_crossdiff.taping`); returns the KSP's converged reason.
        ``fields``: the Gauss-point fields the forward step filled :math:`A(w)` from, if kept.

        :math:`A^T` is filled like :math:`A` (:meth:`SemiImplicitAssembler.fill` with ``transpose``) and solved
        by the forward KSP, so the adjoint has the forward's solver, tolerances and cost (a direct forward
        solve gives a direct adjoint solve)."""
        self.assemble(w, k, tau, stage, transpose=True, fields=fields)
        self.ksp.solve(b, x)
        self.transposed_solves += 1
        return self.ksp.getConvergedReason()

    def step(self, w_old, w, w_new, k, tau, f):
        """:math:`w^{n+1}` into the PETSc vector ``w_new`` from :math:`w^n` (PETSc vector ``w_old``, its values
        ``w`` as a (nodes, 2) array) for stage ``k``, step ``tau`` and data ``f`` (nodes,).

        Returns the KSP's converged reason (negative: diverged, and ``w_new`` is left unchanged).
        """
        self.update_matrix(w, k, tau)
        self._residual(w_old, w, f, k, tau)
        self.ksp.solve(self.r, self.delta)                  # zero initial guess (the KSP default)
        reason = self.ksp.getConvergedReason()
        if reason > 0:
            w_old.copy(w_new)
            w_new.axpy(1.0, self.delta)
        return reason
