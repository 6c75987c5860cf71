r"""A model realised on a mesh, in UFL: its parameters held in Firedrake functions, its forms from its own UFL.

A model (the built-in family :class:`~fem_crossdiff.model.family.CrossDiffusionModel` or a user's
:class:`~fem_crossdiff.model.ufl_model.UFLModel`) defines, for the state :math:`w = (w_1, \dots, w_n)`
(:math:`w_1 = u`, the image) and a stage's parameters :math:`p`, the diffusion matrix :math:`D(w; p)` (``diffusion``),
the reaction :math:`R(w, f; p)` (``reaction``, linearly implicit in the semi-implicit scheme) and an optional
``explicit_reaction``, and the initial state (``initial``). The weak form of
:math:`\partial_t w = \nabla\cdot(D(w)\nabla w) + R(w, f)` with Neumann boundaries is

.. math:: (\partial_t w, \varphi) + (D(w)\nabla w, \nabla\varphi) - (R(w, f), \varphi) = 0
          \quad\forall \varphi\in (Q_1)^n .

The parameters of a stage live in one spatially constant vector-valued DG0 ``Function`` (components in
:func:`~fem_crossdiff.learning.parametrisation.pack` order), which is that stage's pyadjoint ``Control``: one
control per stage keeps the adjoint cheap (pyadjoint's cost grows with the number of controls each solve depends
on), and the derivative with respect to the constant parameter is the sum of the cell values of :math:`dJ/dP`.
(Not the real space "R": Firedrake does not support test functions on a vector-valued "R" space, which the
derivative forms need.)
"""
import numpy as np
import ufl
import firedrake as fd
from firedrake.adjoint import stop_annotating

__all__ = ["DiscreteModel"]


class DiscreteModel:
    """UFL for one model on one mesh: :meth:`D`, :meth:`reaction`, parameters in one DG0 function per stage."""

    def __init__(self, model, mesh):
        self.model, self.mesh = model, mesh
        self.components = model.components
        self.size = sum(n for _, n, _ in model.stage_layout)
        self.nstages = len(model.stages)
        self._numbers = None
        self._functions = None                     # made on first use: one value per cell and parameter
        self._params = None
        self.set_stages(model.stages)

    @property
    def stage_functions(self):
        """The stage parameters as spatially constant DG0 functions (pyadjoint's controls, what UFL forms read),
        made on first use: they hold every parameter in every cell (8 bytes each, every stage), which the fast path
        and a tiled denoise of a large image never need."""
        if self._functions is None:
            Z = fd.VectorFunctionSpace(self.mesh, "DG", 0, dim=self.size)
            with stop_annotating():
                self._functions = [fd.Function(Z, name=f"parameters_stage{k}") for k in range(self.nstages)]
                for P, numbers in zip(self._functions, self._numbers):
                    P.dat.data_wo_with_halos[...] = numbers[None, :]
        return self._functions

    @property
    def params(self):
        """name -> UFL component of the stage functions, per stage."""
        if self._params is None:
            self._params = [self.components_of(P) for P in self.stage_functions]
        return self._params

    def components_of(self, P):
        """name -> UFL component of ``P`` (a list of components for vector parameters such as RBF weights)."""
        out, i = {}, 0
        for name, n, is_list in self.model.stage_layout:
            out[name] = [P[i + m] for m in range(n)] if is_list else P[i]
            i += n
        return out

    # -- parameter values -------------------------------------------------------------------------
    def set_stages(self, stages):
        """Copy numbers into the (spatially constant) stage functions; not annotated: these are control values."""
        if len(stages) != self.nstages:
            raise ValueError(f"expected {self.nstages} stages, got {len(stages)}")
        self._numbers = [self.model.pack_stage(stage) for stage in stages]
        if self._functions is not None:
            with stop_annotating():
                for P, numbers in zip(self._functions, self._numbers):
                    P.dat.data_wo_with_halos[...] = numbers[None, :]

    def get_stages(self):
        """Current parameter values as a list of stage dictionaries (plain floats and lists)."""
        return [self.get_stage(k) for k in range(self.nstages)]

    def get_stage(self, k):
        """Current parameter values of stage ``k`` as a dictionary (what a time step needs)."""
        return self.model.unpack_stage(self._numbers[k])

    def controls(self):
        """One control per stage: the vector-valued DG0 function holding its parameters (constant in space)."""
        return list(self.stage_functions)

    def gradient_vector(self, cofunctions):
        """dJ/dp in :func:`~fem_crossdiff.learning.parametrisation.pack` order from dJ/dP (P constant in space: sum
        the cell values)."""
        local = np.concatenate([c.dat.data_ro.sum(axis=0) for c in cofunctions])
        return self.mesh.comm.allreduce(local)

    # -- UFL: the model's own definition ------------------------------------------------------------------
    def D(self, w, k=0, params=None):
        """The model's diffusion matrix at the state ``w`` for stage ``k`` (or the UFL ``params``, as
        :attr:`params` ``[k]``), as a UFL n×n matrix."""
        return ufl.as_matrix(self.model.diffusion(w, self.params[k] if params is None else params))

    def reaction(self, w, f, k=0, params=None):
        """The whole reaction :math:`R(w, f)` (linearly implicit part plus explicit part) as a UFL vector."""
        p = self.params[k] if params is None else params
        implicit, explicit = self.model.reaction(w, f, p), self.model.explicit_reaction(w, f, p)
        return ufl.as_vector(implicit) if explicit is None else ufl.as_vector(implicit) + ufl.as_vector(explicit)

    def reaction_parts(self, w, f, k=0, params=None):
        """``(implicit, explicit)``: the reaction treated linearly implicitly and the one treated explicitly by the
        semi-implicit scheme (UFL vectors; the explicit one None if the model has none)."""
        p = self.params[k] if params is None else params
        explicit = self.model.explicit_reaction(w, f, p)
        return ufl.as_vector(self.model.reaction(w, f, p)), (None if explicit is None else ufl.as_vector(explicit))

    def initial(self, f):
        """The initial state :math:`w(0)` from the data ``f`` (a UFL vector)."""
        return ufl.as_vector(self.model.initial(f))

    @property
    def channels(self):
        """Channels of the image the model restores: 1 (grey) or 3 (colour)."""
        return getattr(self.model, "channels", 1)

    def output(self, w):
        """The restored image from the state: the model's ``output`` (e.g. colour from luma and chroma), else
        :math:`u = w_1`."""
        output = getattr(self.model, "output", None)
        return w[0] if output is None else ufl.as_vector(output(w))

    @property
    def state_dependent(self):
        """Whether :math:`D` depends on the state (the semi-implicit matrix then changes every step): the model's own
        predicate where it has one, else read from its UFL (does :math:`\\partial D/\\partial w` vanish?)."""
        if hasattr(self.model, "state_dependent"):
            return self.model.state_dependent
        from ufl.algorithms import expand_derivatives
        from ufl.constantvalue import Zero
        W = fd.VectorFunctionSpace(self.mesh, "Q", 1, dim=self.components)
        w = fd.Function(W)
        dD = expand_derivatives(ufl.derivative(self.D(w, 0), w, fd.TestFunction(W)))
        return not isinstance(dD, Zero)

    def stage_of_step(self, n, steps):
        """Index of the stage acting on step ``n`` (0-based) of ``steps``."""
        return n * self.nstages // steps
