"""User models for the tests, written as a user would (UFL, no edit inside the package)."""
import math

import ufl

from fem_crossdiff.model import UFLModel


class NonlinearCross(UFLModel):
    """Araújo et al.'s nonlinear cross-diffusion written by hand: the built-in 'nonlinear-cross', in UFL."""
    components = 2
    parameters = {"d11": (1.0, 0.05, 50.0), "d12": (-0.2, -5.0, 5.0), "d21": (0.3, -5.0, 5.0),
                  "d22": (0.6, 0.05, 50.0), "k": (0.05, 0.001, 1.0), "lam": (0.1, 0.0, 5.0), "mu": (0.2, 0.0, 5.0)}
    time, steps = 1.0, 6

    def diffusion(self, w, p):
        g = 1 / (1 + (w[1] / p["k"]) ** 2)
        return g * ufl.as_matrix([[p["d11"], p["d12"]], [p["d21"], p["d22"]]])

    def reaction(self, w, f, p):
        return ufl.as_vector([p["lam"] * (f - w[0]), -p["mu"] * w[1]])


class TwoScales(UFLModel):
    """w = (u, v1, v2): two edge indicators excited by u with different coupling strengths, diffusing at two
    scales; u's diffusivity stops at the edges both see."""
    components = 3
    parameters = {"s1": (0.05, -0.5, 0.5), "s2": (0.2, -0.5, 0.5), "a1": (0.2, 0.05, 5.0), "a2": (2.0, 0.05, 5.0),
                  "k1": (0.02, 0.002, 1.0), "k2": (0.05, 0.002, 1.0), "lam": (0.05, 0.0, 2.0)}
    nstages, time, steps = 2, 2.0, 6
    floor = 0.05

    def diffusion(self, w, p):
        g = self.floor + (1 - self.floor) / (1 + (w[1] / p["k1"]) ** 2 + (w[2] / p["k2"]) ** 2)
        return ufl.as_matrix([[g, -p["s1"], -p["s2"]],      # antisymmetric coupling: free for ellipticity
                              [p["s1"], p["a1"], 0],
                              [p["s2"], 0, p["a2"]]])

    def reaction(self, w, f, p):
        return ufl.as_vector([p["lam"] * (f - w[0]), 0, 0])

    def ellipticity(self, p):
        return min(self.floor, p["a1"], p["a2"])


class NotElliptic(UFLModel):
    """A model whose second component diffuses backwards: refused before any solve."""
    components = 2
    parameters = {"a": (-0.1, -1.0, 1.0)}

    def diffusion(self, w, p):
        return ufl.as_matrix([[1.0, 0.0], [0.0, p["a"]]])


class Overclaims(NonlinearCross):
    """nonlinear-cross claiming a bound it does not have: caught by the sampling check."""

    def ellipticity(self, p):
        return 10.0 * math.sqrt(p["d11"] * p["d22"])


class FourFields(UFLModel):
    """n = 4: u stops at edges seen by v1 and by |grad u|; a rotating pair (v2, v3); a nonlinear reaction coupling
    the components (R'(w) a full matrix), an explicit part and its own initial state."""
    components = 4
    parameters = {"k": (0.1, 0.01, 1.0), "kg": (0.3, 0.01, 2.0), "s": (0.1, -0.5, 0.5), "a1": (0.5, 0.05, 5.0),
                  "a2": (0.4, 0.05, 5.0), "b": (0.2, -1.0, 1.0), "lam": (0.1, 0.0, 2.0), "mu": (0.3, 0.0, 2.0),
                  "eta": (0.2, -1.0, 1.0)}
    nstages, time, steps = 2, 1.0, 4
    floor = 0.05

    def diffusion(self, w, p):
        grad2 = ufl.inner(ufl.grad(w[0]), ufl.grad(w[0]))
        g = self.floor + (1 - self.floor) / (1 + (w[1] / p["k"]) ** 2 + grad2 / p["kg"] ** 2)
        return ufl.as_matrix([[g, -p["s"], 0, 0], [p["s"], p["a1"], 0, 0],
                              [0, 0, p["a2"], p["b"]], [0, 0, -p["b"], p["a2"]]])

    def reaction(self, w, f, p):
        return ufl.as_vector([p["lam"] * (f - w[0]), -p["mu"] * w[1] + p["eta"] * w[0] * w[2],
                              -p["mu"] * w[2] + p["eta"] * ufl.sin(w[0] - w[3]), -p["mu"] * ufl.tanh(w[3])])

    def explicit_reaction(self, w, f, p):
        return ufl.as_vector([0.05 * p["eta"] * ufl.exp(-w[1] ** 2), 0, 0, 0])

    def initial(self, f):
        return [f, 0.0, f * f, 0.1 * f]

    def ellipticity(self, p):
        return min(self.floor, p["a1"], p["a2"])
