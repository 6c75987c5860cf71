"""The fast paths on the structured image mesh (one rank) — accelerators of schemes the finite-element layer defines.

* The semi-implicit step (:class:`~fem_crossdiff.fem.evolution.Evolution` defines it in UFL): the same matrix,
  right-hand side and adjoint derivative forms without UFL, for the uniform grid of squares of an image mesh:
  coefficient fields at the Gauss points in numpy, the 2×2-block matrix filled in place by a C kernel, a PETSc KSP
  with the finite-element layer's own solver options. Interface: :class:`FastSemiImplicitSolver` (one step, its
  transposed solve, its adjoint derivative forms), :class:`FastPathError` (the mesh or model does not fit; the caller
  uses Firedrake's assembly).
* The split scheme (:mod:`.split`): the x and y half steps as block-tridiagonal line solves on grid arrays, and their
  discrete adjoint, in numpy and C — no PETSc, no Firedrake. Interface: :class:`SplitScheme`, :class:`Grid`.
* The split scheme for any model given in UFL with up to 4 components (:mod:`.generic`): the model's expressions and
  UFL's derivatives of them compiled once to numpy, n×n block lines in C (``lines.c``), the discrete adjoint.
  Interface: :func:`split_scheme` (the hand-written path where it applies, else :class:`GenericSplitScheme`),
  :class:`Unsupported` (a model it cannot compile: the caller falls back to Firedrake).

Both are checked against the UFL definition by the tests (matrix, transposed matrix, derivative forms, steps, whole
evolution, gradient). :class:`SlowPathWarning` is said once when a kernel cannot be built here.

Modules: :mod:`.grid` (the Q1 operators of the grid), :mod:`.matrix` (the block matrix), :mod:`.assembler`
(the coefficient fields and the fill), :mod:`.solver` (the step), :mod:`.adjoint` (the step's adjoint derivative
forms), :mod:`.split` (the split scheme), :mod:`.generic` (the split scheme of any UFL model), :mod:`.rbf` (RBF sums),
:mod:`.compile` (``gather.c``, ``step_adjoint.c``, ``split.c``, ``lines.c``, ``rbf.c``).
"""
from ..lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "FastSemiImplicitSolver": "solver", "KSP_REASONS": "solver",
    "FastPathError": "grid",
    "SlowPathWarning": "compile",
    "SplitScheme": "split", "Grid": "split",
    "GenericSplitScheme": "generic", "Unsupported": "generic", "split_scheme": "generic",
})
