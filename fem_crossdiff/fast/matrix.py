r"""A PETSc matrix of 2×2 blocks on the scalar Q1 pattern, rows and columns interleaved (u, v), whose values are
written in place (no ``MatSetValues``), and the interleaved CSR arrays of Kronecker products :math:`S\otimes I_2`.
"""
import ctypes
import glob
import os

import numpy as np
from petsc4py import PETSc

from .grid import FastPathError

__all__ = ["BLOCK", "BlockMatrix", "interleaved_csr"]

#: Block (r, t) of the 2×2 blocks -> column of the value arrays (PETSc BAIJ stores blocks column-major).
BLOCK = {(0, 0): 0, (1, 0): 1, (0, 1): 2, (1, 1): 3}


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


def interleaved_csr(q1, data):
    """CSR arrays of :math:`S\\otimes I_2` (rows and columns (u, v) interleaved) for the scalar CSR values ``data``."""
    start, length, _, offset = _rows(q1)
    indices, values = np.empty(2 * q1.nnz, dtype=PETSc.IntType), np.empty(2 * q1.nnz)
    for r in range(2):
        pos = 2 * start + r * length + offset      # row 2i + r holds columns 2j + r
        indices[pos], values[pos] = 2 * q1.indices + r, data
    return _interleaved_indptr(q1, 1), indices, values
