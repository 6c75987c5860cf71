"""TwoScales: a three-component cross-diffusion model, w = (u, v1, v2), written as a user writes one (UFL, no edit
inside fem_crossdiff). Used by ``demos/custom_model.py``; on the command line: ``--model demos/models/two_scales.py:TwoScales``."""
import ufl

from fem_crossdiff.model import UFLModel


class TwoScales(UFLModel):
    """w = (u, v1, v2): two edge indicators at two scales; u's diffusion stops at the edges both see."""
    components = 3
    parameters = {"s1": (0.1, -1.0, 1.0), "s2": (0.1, -1.0, 1.0),      # name: (initial, lower, upper)
                  "a1": (0.2, 0.05, 5.0), "a2": (2.0, 0.05, 5.0),
                  "k1": (0.02, 0.002, 0.5), "k2": (0.02, 0.002, 0.5), "lam": (0.05, 0.0, 2.0)}
    nstages, time, steps = 3, 2.0, 12
    g0 = 0.05

    def diffusion(self, w, p):
        g = self.g0 + (1 - self.g0) / (1 + (w[1] / p["k1"]) ** 2 + (w[2] / p["k2"]) ** 2)
        return ufl.as_matrix([[g, -p["s1"], -p["s2"]],
                              [p["s1"], p["a1"], 0],
                              [p["s2"], 0, p["a2"]]])

    def reaction(self, w, f, p):
        return ufl.as_vector([p["lam"] * (f - w[0]), 0, 0])

    def ellipticity(self, p):
        return min(self.g0, p["a1"], p["a2"])
