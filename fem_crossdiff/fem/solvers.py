"""Default solver options of the time steps, read-only, shared by every path that solves a step.

The semi-implicit step's linear solve has one set of options, :data:`LINEAR_SOLVER`, used as they are by
Firedrake's assembly (any number of ranks) and by the one-rank fast path (:mod:`fem_crossdiff.fast`), so both
solve to the same tolerance and results do not depend on which path ran: flexible GMRES (right preconditioning,
so the true residual is tested) with block-Jacobi / ILU(0) on the 2×2-block (BAIJ) matrix — on one rank one
block, i.e. point-block ILU(0) of the whole matrix; about 3 iterations per step on the named models. The
tolerance is relative to the step's initial residual (both paths solve for the update from zero): on the 256²
benchmark a whole denoise differs from a 1e-12 solve by at most 4e-7 (grey values in [0, 1], below a 16-bit
level), and 1e-8 costs one more iteration per step. Learning and the studies ask for tighter solves. A step
that does not converge in 200 iterations (a strongly non-normal or extremely stiff system) is solved again
directly (:data:`DIRECT_SOLVER`, said once), so that whether a run succeeds does not depend on the preconditioner,
hence not on the number of ranks.
"""
from types import MappingProxyType

__all__ = ["LINEAR_SOLVER", "DIRECT_SOLVER", "NEWTON_SOLVER", "QUADRATURE_DEGREE", "linear_solver_parameters"]

#: The semi-implicit step's linear solver (both paths).
LINEAR_SOLVER = MappingProxyType({"mat_type": "baij", "ksp_type": "fgmres", "pc_type": "bjacobi",
                                  "sub_pc_type": "ilu", "ksp_rtol": 1e-6, "ksp_atol": 1e-14, "ksp_max_it": 200})
#: The fallback of a semi-implicit step whose iterative solve failed: a direct solve (MUMPS LU, any number of ranks;
#: the fast path uses PETSc's own LU on its block matrix). Both paths then succeed where either does.
DIRECT_SOLVER = MappingProxyType({"mat_type": "aij", "ksp_type": "preonly", "pc_type": "lu",
                                  "pc_factor_mat_solver_type": "mumps"})
#: The Newton solver of the implicit θ-schemes (backward Euler, Crank–Nicolson).
NEWTON_SOLVER = MappingProxyType({"mat_type": "baij", "snes_type": "newtonls", "snes_linesearch_type": "basic",
                                  "snes_rtol": 1e-10, "snes_atol": 1e-13, "ksp_type": "gmres",
                                  "pc_type": "pbjacobi", "ksp_rtol": 1e-10, "ksp_atol": 1e-15})
#: Quadrature degree: 2×2 Gauss points per quadrilateral (exact for the Q1 mass and stiffness matrices).
QUADRATURE_DEGREE = 2


def linear_solver_parameters(parameters):
    """``parameters`` without the Newton (``snes_*``) options: what a linear solve (KSP) accepts."""
    return {k: v for k, v in parameters.items() if not k.startswith("snes_")}
