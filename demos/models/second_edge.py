"""SecondEdge: the σ = 25 learned model of the semi-implicit scheme (``sigma25_semi_implicit.json`` beside this file,
the one shipped before the split scheme) written as a user model, plus a second edge indicator v2 that modulates u's
edge stopping (``demos/third_component.py``'s experiment; see its text for the equations)."""
import os

import numpy as np
import ufl

import fem_crossdiff as fc
from fem_crossdiff.learning import BOUNDS
from fem_crossdiff.model import UFLModel

BASE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sigma25_semi_implicit.json")
SHIPPED = fc.load_model(BASE_FILE)          # the base model of the experiment (its scheme: semi-implicit)
NEW = {"beta2": (-0.05, -20.0, 20.0), "d33": (1.0, 0.05, 50.0), "mu2": (0.0, 0.0, 5.0)}
H12 = fc.Influence("rbf", "v", floor=1.0, centres=9, span=0.05)


def flat(stage):
    """A shipped stage's parameters as scalars: RBF weights w11 -> w11_0, w11_1, ..."""
    out = {}
    for name, value in stage.items():
        out.update({f"{name}_{m}": v for m, v in enumerate(value)} if isinstance(value, list) else {name: value})
    return out


def box(name):
    return BOUNDS[name.rsplit("_", 1)[0] if name[-1].isdigit() and "_" in name else name]


class SecondEdge(UFLModel):
    """The shipped learned model with a second edge indicator v2 modulating u's edge stopping."""
    components = 3
    parameters = {**{k: (v, *box(k)) for k, v in flat(SHIPPED.stages[0]).items()}, **NEW,
                  **{f"w12h_{m}": (0.0, 0.0, 10.0) for m in range(H12.centres)}}
    nstages, time, steps = len(SHIPPED.stages), SHIPPED.time, SHIPPED.steps

    def weights(self, p, name, n):
        return [p[f"{name}_{m}"] for m in range(n)]

    def diffusion(self, w, p):
        q = {name: (self.weights(p, name, n) if is_list else p[name]) for name, n, is_list in SHIPPED.stage_layout}
        D2 = SHIPPED.diffusion(w, q)                             # the family's own UFL: the (u, v1) block
        h12 = H12.evaluate(w[2], self.weights(p, "w12h", H12.centres), lib=ufl)
        return ufl.as_matrix([[D2[0, 0] * h12, D2[0, 1] * ufl.sqrt(h12), -p["beta2"]],
                              [D2[1, 0] * ufl.sqrt(h12), D2[1, 1], 0],
                              [p["beta2"], 0, p["d33"]]])

    def reaction(self, w, f, p):
        return ufl.as_vector([p["lam"] * (f - w[0]), -p["mu"] * w[1], -p["mu2"] * w[2]])

    def explicit_reaction(self, w, f, p):
        psi = SHIPPED.psi.evaluate(w[1], self.weights(p, "wpsi", SHIPPED.psi.centres), lib=ufl)
        return ufl.as_vector([psi, 0, 0])

    def ellipticity(self, p):
        stage = SHIPPED.unpack_stage(np.array([p[k] for k in flat(SHIPPED.stages[0])]))
        return min(SHIPPED.with_stages([stage]).certificate(), p["d33"])
