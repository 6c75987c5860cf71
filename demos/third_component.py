# %% [markdown]
# # Does a second edge indicator lift the learned model? The experiment
#
# The learning record (`fem_crossdiff/learned/README.md`) ends with a diagnosis: the shipped models sit at a local
# optimum of the two-component family $w = (u, v)$, and what is left between them and BM3D is at texture and edges,
# which would need more edge indicators. With user models in UFL this can be tested without changing the package:
# the shipped σ = 25 model, written as a user model, **plus** a second edge indicator $v_2$,
#
# $$D = \begin{pmatrix} d_{11}\,g_{11}(|\nabla u|)\,h_{11}(v_1)\,h_{12}(v_2) & (c+\beta)\,o & -\beta_2\\
#                       (c-\beta)\,o & d_{22}\,g_{22}(v_1) & 0\\ \beta_2 & 0 & d_{33}\end{pmatrix},\qquad
#   R = \big(\lambda(f-u) + \psi(v_1),\ -\mu v_1,\ -\mu_2 v_2\big),$$
#
# ($c = \rho\sqrt{d_{11}d_{22}}$, $o = \sqrt{G_{11}g_{22}}$ as in the family): $v_2$ is excited by $u$ through the
# antisymmetric coupling $\beta_2$ (free for ellipticity), diffuses at its own scale $d_{33}$, decays at $\mu_2$, and
# modulates $u$'s edge stopping through $h_{12}(v_2) = 1 + \sum_m w_m e^{-(v_2 - c_m)^2/2\sigma^2} \ge 1$ (learned,
# non-negative). The bound is $\min(\alpha_{\text{family}}, d_{33})$. Started at the shipped parameters with
# $h_{12} = 1$, so the first iterate is (nearly: $\beta_2 \ne 0$ excites $v_2$) the shipped model.
#
# Protocol (the record's, at a size that runs here): both the extended model and a **control** — the shipped model
# itself, trained the same way — get the same iterations of L-BFGS-B on the same 14 training patches; both are
# then scored on the held-out crops of the training pictures (`fem-crossdiff validate`'s 96² crops, seed 12345),
# the test crops reported beside. Cost per time step is measured on a 256² image.
#
# Run: `python demos/third_component.py [--maxiter 25] [--patch 48]` (about half an hour; `--quick`: minutes).

# %%
import argparse
import math
import os
import sys
import time

import numpy as np
import ufl

parser = argparse.ArgumentParser()
parser.add_argument("--maxiter", type=int, default=25)
parser.add_argument("--patch", type=int, default=48)
parser.add_argument("--sigma", type=float, default=25.0)
parser.add_argument("--quick", action="store_true", help="3 iterations, 32² patches, 48² held-out crops")
parser.add_argument("--out", default="out/demos")
args = parser.parse_args()
sys.argv = sys.argv[:1]
if args.quick:
    args.maxiter, args.patch = 3, 32
os.makedirs(args.out, exist_ok=True)

import fem_crossdiff as fc                                                    # noqa: E402
from fem_crossdiff.learning import BOUNDS                                     # noqa: E402
from fem_crossdiff.model import CrossDiffusionModel, UFLModel                 # noqa: E402

SHIPPED = fc.load_model(fc.shipped_model(int(args.sigma)))
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


# %% [markdown]
# With $h_{12} \equiv 1$ the (u, v₁) block is the family's $G^{1/2}MG^{1/2}$ with $G_{11}$ multiplied by $h_{12}$:
# the off-diagonal factor $o = \sqrt{G_{11}g_{22}}$ gains $\sqrt{h_{12}}$, as written. Start: the shipped stages.

# %%
start = SecondEdge(stages=[{**flat(st), **{k: v[0] for k, v in NEW.items()},
                            **{f"w12h_{m}": 0.0 for m in range(H12.centres)}} for st in SHIPPED.stages])
print(f"{len(fc.learning.pack(start))} parameters (shipped: {len(fc.learning.pack(SHIPPED))}); certificate "
      f"{start.certificate():.3e}")

# %%
runs = {}
for label, model in (("control (2 components)", SHIPPED), ("second edge (3 components)", start)):
    out = os.path.join(args.out, f"third_component_{'control' if model is SHIPPED else 'v2'}.json")
    for stale in (out, out + ".checkpoint"):
        if os.path.exists(stale):
            os.remove(stale)
    init = dict(init=fc.shipped_model(int(args.sigma))) if model is SHIPPED else dict(model=model)
    t0 = time.perf_counter()
    trained, history = fc.train(out, sigma255=args.sigma, patch=args.patch, per_image=1, maxiter=args.maxiter,
                                refine=0, log=print, **init)
    runs[label] = trained
    print(f"{label}: {len(history)} iterations, {time.perf_counter() - t0:.0f} s, train PSNR "
          f"{10 * math.log10(1 / trained.provenance['initial_loss']):.3f} -> "
          f"{trained.provenance['final_train_psnr']:.3f} dB")

# %% [markdown]
# ## Held-out crops (selection) and test crops (report)

# %%
from fem_crossdiff.evaluation import evaluate, print_table, print_validation, validate   # noqa: E402
crops = dict(patch=48, per_image=1) if args.quick else {}
models = {"shipped": SHIPPED, **runs}
scores = validate(models, args.sigma, log=lambda *a: None, **crops)
print_validation(scores)
rows = evaluate(models, sigmas=(args.sigma,), classic=False, baselines=False, log=lambda *a: None,
                size=64 if args.quick else 256)
print_table(rows)

# %% [markdown]
# ## Cost per time step, 256² (one rank): the fast path, the UFL path of the same model, the 3-component UFL path

# %%
from fem_crossdiff.fem import Evolution, image_mesh, image_to_function       # noqa: E402
from fem_crossdiff.imaging.data import test_set                              # noqa: E402
_, clean, noisy = test_set(args.sigma, size=128 if args.quick else 256)[0]
for label, model, fast in (("2 components, fast path", SHIPPED, True), ("2 components, UFL path", SHIPPED, False),
                           ("3 components, UFL path", runs["second edge (3 components)"], True)):
    ev = Evolution(model, image_mesh(noisy.shape), fast=fast)
    f = image_to_function(noisy, ev.V)
    ev.run(f)
    t0 = time.perf_counter()
    ev.run(f)
    print(f"{label:>26}: {1e3 * (time.perf_counter() - t0) / ev.steps:7.1f} ms per step")

# %% [markdown]
# ## Per picture: what the second edge indicator changes against the control (held-out, dB)

# %%
import matplotlib                                                             # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt                                               # noqa: E402
control, second = (scores[label][0] for label in runs)
names = list(control)
fig, ax = plt.subplots(figsize=(9, 3.6))
ax.bar(range(len(names)), [second[n] - control[n] for n in names])
ax.axhline(0, color="k", lw=0.8)
ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
ax.set_ylabel("held-out PSNR: 3 components − control (dB)")
fig.tight_layout()
fig.savefig(os.path.join(args.out, "third_component.png"), dpi=100)
print(f"wrote {os.path.join(args.out, 'third_component.png')}")
