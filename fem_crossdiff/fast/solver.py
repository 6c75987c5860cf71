r"""One semi-implicit step on the fast path: the block matrix filled by :class:`~.assembler.SemiImplicitAssembler`
and solved by a PETSc KSP configured from the finite-element layer's solver options (the same options, hence the
same tolerance, as Firedrake's path)."""
import weakref

import numpy as np
from petsc4py import PETSc

from ..model import PSI_PARAMETER, CrossDiffusionModel
from .adjoint import FastStepAdjoint
from .assembler import SemiImplicitAssembler
from .rbf import rbf
from .grid import StructuredQ1
from .matrix import BlockMatrix, interleaved_csr

__all__ = ["FastSemiImplicitSolver", "KSP_REASONS"]

#: A factorisation is kept while the solves it preconditions take at most this factor (plus 2) of the iterations
#: the first one took.
REUSE_SLACK = 1.5
#: PETSc KSP converged/diverged reason number -> name.
KSP_REASONS = {getattr(PETSc.KSP.ConvergedReason, k): k for k in dir(PETSc.KSP.ConvergedReason)
               if not k.startswith("_")}


def _forget_options(names):
    opts = PETSc.Options()
    for name in names:
        opts.delValue(name)


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
        self.linear = not discrete.model.state_dependent
        self._key = None
        self._step_adjoint = None
        self._direct = None
        self._its_fresh = self._its_last = None
        self._reusing, self._last_stage = False, None
        self.prefix = prefix
        self.ksp = self._make_ksp(solver_parameters or {}, prefix)
        self.transposed_solves = 0
        self.r, self.delta, self.x = self.A.createVecLeft(), self.A.createVecRight(), self.A.createVecRight()
        self.mass2 = PETSc.Mat().createAIJ((2 * self.q1.nnodes,) * 2, bsize=2, comm=self.comm,
                                           csr=interleaved_csr(self.q1, self.q1.mass))   # M ⊗ I
        self.mass2.assemble()

    def _make_ksp(self, parameters, prefix):
        """KSP from the PETSc options ``parameters`` (the finite-element layer's; ``mat_type`` and the Newton
        ``snes_*`` options do not apply to a KSP). The options stay in PETSc's database under this solver's own
        prefix while it lives: options of inner solvers (``sub_pc_type`` of block Jacobi) are read only when the
        preconditioner is first set up."""
        params = {k: v for k, v in parameters.items() if k != "mat_type" and not k.startswith("snes_")}
        opts = PETSc.Options()
        for key, val in params.items():
            opts[prefix + key] = val
        weakref.finalize(self, _forget_options, [prefix + key for key in params])
        ksp = PETSc.KSP().create(comm=self.comm)
        ksp.setOptionsPrefix(prefix)
        ksp.setOperators(self.A)
        ksp.setFromOptions()
        return ksp

    @staticmethod
    def supports(model):
        """True for the model this path accelerates: the built-in family on :math:`w = (u, v)`."""
        return isinstance(model, CrossDiffusionModel)

    def _keep_preconditioner(self):
        """Whether the next solve (of the same stage: new stage parameters change the matrix too much) may reuse the
        last factorisation: while its iteration count stays within :data:`REUSE_SLACK` of the count right after a
        fresh one (within a stage the matrix drifts slowly from step to step)."""
        fresh, last = self._its_fresh, self._its_last
        return fresh is not None and last is not None and last <= REUSE_SLACK * fresh + 2

    def _track_iterations(self, ksp):
        its = ksp.getIterationNumber()
        if not self._reusing:
            self._its_fresh = its
        self._its_last = its

    def _direct_ksp(self):
        """A direct solver (PETSc's LU) on the same matrix, built on first use."""
        if self._direct is None:
            self._direct = self._make_ksp({"ksp_type": "preonly", "pc_type": "lu"}, self.prefix + "direct_")
        return self._direct

    @property
    def last_fields(self):
        """The Gauss-point coefficient fields of the last matrix fill (what :meth:`solve_transpose` can reuse)."""
        return self.assembler.last_fields

    def step_adjoint(self):
        """The C pass of a step's adjoint derivative forms for this model (:class:`~.adjoint.FastStepAdjoint`),
        built on first use; None where it does not apply (the caller then assembles the forms with Firedrake)."""
        if self._step_adjoint is None:
            self._step_adjoint = FastStepAdjoint.create(self.q1, self.discrete.model) or False
        return self._step_adjoint or None

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
        self.ksp.setInitialGuessNonzero(False)
        self.ksp.getPC().setReusePreconditioner(False)      # A^T is not A: a factorisation of its own
        self._its_fresh = self._its_last = None
        self.ksp.solve(b, x)
        self.transposed_solves += 1
        return self.ksp.getConvergedReason()

    def step(self, w_old, w, w_new, k, tau, f, direct=False, first=True):
        """:math:`w^{n+1}` into the PETSc vector ``w_new`` from :math:`w^n` (PETSc vector ``w_old``, its values
        ``w`` as a (nodes, 2) array) for stage ``k``, step ``tau`` and data ``f`` (nodes,); ``direct``: by LU
        instead of the configured (iterative) solver; ``first``: the first step of a run (no previous update).

        Within a run, the Krylov solve starts from the previous step's update (the solution changes smoothly in
        time, so fewer iterations reach the same tolerance, which is relative to this step's residual), and within a
        stage the preconditioner's factorisation is kept while it serves (:meth:`_keep_preconditioner`).

        Returns the KSP's converged reason (negative: diverged, and ``w_new`` is left unchanged).
        """
        self.update_matrix(w, k, tau)
        self._residual(w_old, w, f, k, tau)
        ksp = self._direct_ksp() if direct else self.ksp
        krylov = not direct and ksp.getType() != "preonly"  # a direct solve takes no guess, reuses no factorisation
        if not direct:
            ksp.setInitialGuessNonzero(krylov and not first)
            if first or not krylov:
                self.delta.zeroEntries()
            self._reusing = krylov and not first and k == self._last_stage and self._keep_preconditioner()
            self._last_stage = k
            ksp.getPC().setReusePreconditioner(self._reusing)
        ksp.solve(self.r, self.delta)
        reason = ksp.getConvergedReason()
        if not direct:
            self._track_iterations(ksp)
        if reason > 0:
            w_old.copy(w_new)
            w_new.axpy(1.0, self.delta)
        return reason
