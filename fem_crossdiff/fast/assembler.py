r"""Fast semi-implicit steps on the structured image mesh (one rank): assembly without ``MatSetValues``.

The semi-implicit system of :class:`~fem_crossdiff.fem.evolution.Evolution` (2×2 Gauss points per cell) is

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
(``gather.c``, compiled once by the system's C compiler and kept in a disk cache, :mod:`.compile`) does them in one pass
over the matrix entries, reading the Gauss-point fields and writing each block value once. The numpy
products remain as the reference and the fallback when no compiler is available.

The unknowns are ordered as Firedrake orders the vector Q1 space (node-major, (u, v) interleaved), so the
PETSc KSP works directly on ``w.dat.vec``. The matrices equal the UFL-assembled ones to round-off
(``tests/test_fastassembly.py``).
"""
import ctypes
import functools
import math

import numpy as np

from ..model.influence import GRAD_EPS2
from .compile import compile_kernel, pointer
from .matrix import BLOCK
from .rbf import rbf

__all__ = ["rbf", "off_diagonal_mode", "Layout", "layout", "SemiImplicitAssembler", "CompiledGather",
           "gather_kernel"]


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
        self.modes = [off_diagonal_mode(self.model, k) for k in range(discrete.nstages)]
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


@functools.lru_cache(maxsize=None)
def gather_kernel(nvar, nconst):
    """The compiled ``gather.c`` for ``nvar`` variable and ``nconst`` constant fields (a ctypes function), or None
    if it cannot be built here (the numpy products remain; warned once)."""
    dp, ip = ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int32)
    return compile_kernel("gather.c", "fem_crossdiff_gather", [ctypes.c_int32, ip, ip, dp, ctypes.c_int64, dp, dp,
                                                                 dp, dp], NVAR=int(nvar), NCONST=int(nconst))


def pointer(a, ctype=ctypes.c_double):
    """A ctypes pointer to the data of the contiguous array ``a``."""
    return a.ctypes.data_as(ctypes.POINTER(ctype))


class CompiledGather:
    r"""Steps 2–4 of the fill in one C pass (``gather.c``) on the pattern of ``q1``."""

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
        kernel(self.q1.nnz, pointer(self.ptr, ctypes.c_int32), pointer(self.idx, ctypes.c_int32), pointer(kappa),
               self.q1.ncells, pointer(self.stiff), pointer(ctab), pointer(C), pointer(values))
        return values
