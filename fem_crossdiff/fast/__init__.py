"""The one-rank fast path of a semi-implicit step on the structured image mesh — an accelerator of one model.

The finite-element layer (:class:`~fem_crossdiff.fem.evolution.Evolution`) defines the step in UFL; this package
computes the same matrix, right-hand side and adjoint derivative forms without UFL, for the uniform grid of
squares of an image mesh on one rank: coefficient fields at the Gauss points in numpy, the 2×2-block matrix
filled in place by a C kernel, a PETSc KSP with the finite-element layer's own solver options. Every piece is
checked against the UFL definition by the tests (matrix, transposed matrix, derivative forms, whole evolution,
gradient). Its interface is this module: :class:`FastSemiImplicitSolver` (one step, its transposed solve, its
adjoint derivative forms), :class:`FastPathError` (the mesh or model does not fit; the caller uses Firedrake's
assembly) and :class:`SlowPathWarning` (said once when a kernel cannot be built here).

Modules: :mod:`.grid` (the Q1 operators of the grid), :mod:`.matrix` (the block matrix), :mod:`.assembler`
(the coefficient fields and the fill), :mod:`.solver` (the step), :mod:`.adjoint` (the step's adjoint derivative
forms), :mod:`.compile` (``gather.c``, ``step_adjoint.c``).
"""
from ..lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "FastSemiImplicitSolver": "solver", "KSP_REASONS": "solver",
    "FastPathError": "grid",
    "SlowPathWarning": "compile",
})
