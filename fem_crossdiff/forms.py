r"""A :class:`~fem_crossdiff.models.CrossDiffusionModel` realised on a mesh, in UFL.

Each stage parameter is a Firedrake ``Function`` on the real space "R" (a vector of R for RBF weights), so
every parameter can be a pyadjoint ``Control`` without rewriting the model. The weak form of
:math:`\partial_t w = \nabla\cdot(D(w)\nabla w) + R(w, f)` with Neumann boundaries is

.. math:: (\partial_t w, \varphi) + (D(w)\nabla w, \nabla\varphi) - (R(w, f), \varphi) = 0
          \quad\forall \varphi\in (Q_1)^2 .
"""
import numpy as np
import ufl
import firedrake as fd
from firedrake.adjoint import stop_annotating

__all__ = ["DiscreteModel"]

#: Regularisation of :math:`|\nabla u|` inside a square root (RBF influence of the gradient only).
GRAD_EPS2 = 1e-12


class DiscreteModel:
    """UFL for one model on one mesh: :meth:`D`, :meth:`reaction`, parameters as R-space functions."""

    def __init__(self, model, mesh):
        self.model, self.mesh = model, mesh
        self.R = fd.FunctionSpace(mesh, "R", 0)
        self.params = []
        with stop_annotating():
            for k, stage in enumerate(model.stages):
                p = {}
                for name in model.parameter_names:
                    val = np.atleast_1d(stage[name])
                    V = self.R if np.ndim(stage[name]) == 0 else fd.VectorFunctionSpace(mesh, "R", 0, dim=len(val))
                    p[name] = fd.Function(V, name=f"{name}_stage{k}")
                self.params.append(p)
        self.set_stages(model.stages)

    # -- parameter values -------------------------------------------------------------------------
    def set_stages(self, stages):
        """Copy numbers into the R-space functions (not annotated: these are control values)."""
        with stop_annotating():
            for p, stage in zip(self.params, stages):
                for name, f in p.items():
                    f.dat.data[...] = np.asarray(stage[name]).reshape(f.dat.data.shape)

    def get_stages(self):
        """Current parameter values as a list of stage dictionaries (plain floats and lists)."""
        return [{name: (f.dat.data_ro.reshape(-1).tolist() if f.dat.data_ro.size > 1 and
                        self.model.stages[0] and np.ndim(self.model.stages[0][name])
                        else float(f.dat.data_ro.reshape(-1)[0]))
                 for name, f in p.items()} for p in self.params]

    def controls(self, names=None):
        """The parameter functions of every stage (optionally only ``names``), in a fixed order."""
        names = names or self.model.parameter_names
        return [p[n] for p in self.params for n in names]

    # -- UFL ------------------------------------------------------------------------------------------
    def influence(self, which, w, k):
        """:math:`g_{ii}(w)` of stage ``k`` as UFL (``which`` is "11" or "22")."""
        g = getattr(self.model, "g" + which)
        if g.kind == "one":
            return None
        par = self.params[k][g.parameter(which)]
        if g.variable == "v":
            return g.evaluate(w[1], par, lib=ufl)
        grad2 = ufl.inner(ufl.grad(w[0]), ufl.grad(w[0]))
        if g.kind == "rational":
            return g.floor + (1 - g.floor) / (1 + grad2 / par ** 2)
        if g.kind == "exponential":
            return g.floor + (1 - g.floor) * ufl.exp(-grad2 / par ** 2)
        return g.evaluate(ufl.sqrt(grad2 + GRAD_EPS2), par, lib=ufl)

    def D(self, w, k=0):
        r""":math:`D(w) = G^{1/2} M G^{1/2}` of stage ``k`` as a UFL 2×2 matrix."""
        p = self.params[k]
        g11, g22 = self.influence("11", w, k), self.influence("22", w, k)
        if g11 is None and g22 is None:
            off, g11, g22 = 1, 1, 1
        elif g22 is None:
            off, g22 = ufl.sqrt(g11), 1
        elif g11 is None:
            off, g11 = ufl.sqrt(g22), 1
        elif self.model.g11 == self.model.g22 and self.model.stages[k].get("k11") == self.model.stages[k].get("k22") \
                and "k11" in self.model.stages[k]:
            off = g11  # identical influence functions: sqrt(g*g) = g
        else:
            off = ufl.sqrt(g11 * g22)
        c = p["rho"] * ufl.sqrt(p["d11"] * p["d22"])
        return ufl.as_matrix([[p["d11"] * g11, (c + p["beta"]) * off],
                              [(c - p["beta"]) * off, p["d22"] * g22]])

    def reaction(self, w, f, k=0):
        r""":math:`R(w, f) = (\lambda (f - u), -\mu v)` of stage ``k``."""
        p = self.params[k]
        return ufl.as_vector([p["lam"] * (f - w[0]), -p["mu"] * w[1]])

    def is_linear(self):
        """True when D does not depend on the state (the semi-implicit matrix is then constant)."""
        return self.model.g11.kind == "one" and self.model.g22.kind == "one"

    def stage_of_step(self, n, steps):
        """Index of the stage acting on step ``n`` (0-based) of ``steps``."""
        return n * len(self.params) // steps
