# %% [markdown]
# # Learning a stable cross-diffusion model in seconds
#
# We learn the coefficients and influence functions of
#
# $$\partial_t w = \nabla\cdot\big(D(w)\nabla w\big) + R(w,f),\qquad
#   D = G^{1/2} M G^{1/2},\quad G = \mathrm{diag}\big(g_{11}(|\nabla u|),\ g_{22}(v)\big),$$
#
# stage by stage, by minimising the mean squared error at the final time $T$ over (clean, noisy) training
# patches, $J(p) = \frac1n\sum_i \frac{1}{|\Omega|}\int_\Omega (u_i(T;p) - c_i)^2\,dx$.
# The model trains for the split scheme (a new model's default, the shipped models' scheme: semi-implicit steps
# split into x and y line solves), and $\nabla J$ is that scheme's exact discrete adjoint, run on its grid arrays
# in numpy and C (`fem_crossdiff/learning/split_loss.py`, no tape; equal to pyadjoint's gradient of the same scheme
# in UFL to round-off, `tests/test_split.py`). L-BFGS-B's box bounds keep $d_{11}, d_{22} \ge 0.05$,
# $|\rho| \le 0.95$ and RBF weights $\ge 0$, so every iterate satisfies
# $\xi^T D\xi \ge (1-|\rho|)\min(d_{11},d_{22})\,g_{\min}|\xi|^2$: each model met during learning is well posed.
#
# Run: `python demos/learn_small.py` (about 10 s: 7 s measured on a 2-core VM, 2026-12-04; figures in `out/demos/`).

# %%
import os
import time

import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

import fem_crossdiff as fc
from fem_crossdiff.imaging.data import test_set
from fem_crossdiff.learning import learned_template, train

out_dir = "out/demos"
os.makedirs(out_dir, exist_ok=True)
model_path = os.path.join(out_dir, "learn_small.json")
for stale in (model_path, model_path + ".checkpoint"):
    if os.path.exists(stale):
        os.remove(stale)  # our own output from a previous run of this demo

# %% [markdown]
# ## Training: 6 patches of 48×48 from non-test images, σ = 25, two stages

# %%
t0 = time.perf_counter()
model, history = train(model_path, images=["brick", "text", "clock", "chelsea", "coffee", "grass"], sigma255=25,
                       patch=48, per_image=1, stages=2, steps=8, time_=2.0, maxiter=15)
print(f"trained in {time.perf_counter() - t0:.0f} s; ellipticity certificate {model.certificate():.3e}")

# %% [markdown]
# ## Loss history, learned influence functions and the matrix D over the state range

# %%
start = learned_template(stages=2, time=2.0, steps=8)
fig, axes = plt.subplots(1, 5, figsize=(21, 3.6))
axes[0].semilogy([model.provenance["initial_loss"]] + [h["loss"] for h in history], "o-")
axes[0].set(title="training loss J", xlabel="L-BFGS-B iteration")
s_grad = np.linspace(0, model.g11.span * 1.2, 300)
s_v = np.linspace(-model.g22.span * 1.2, model.g22.span * 1.2, 300)
for k, stage in enumerate(model.stages):
    axes[1].plot(s_grad, model.g11.evaluate(s_grad, stage["w11"]), label=f"stage {k}")
    axes[2].plot(s_v, model.g22.evaluate(s_v, stage["w22"]), label=f"stage {k}")
axes[1].plot(s_grad, start.g11.evaluate(s_grad, start.stages[0]["w11"]), "k--", label="initial")
axes[2].plot(s_v, start.g22.evaluate(s_v, start.stages[0]["w22"]), "k--", label="initial")
axes[1].set(title=r"$g_{11}(|\nabla u|)$", xlabel=r"$|\nabla u|$ per pixel")
axes[2].set(title=r"$g_{22}(v)$", xlabel="v")
if model.h11.kind != "one":                    # the edge indicator's factor of the u-diffusivity (starts at 1)
    for k, stage in enumerate(model.stages):
        axes[4].plot(s_v, model.h11.evaluate(s_v, stage["w11h"]), label=f"stage {k}")
axes[4].axhline(1.0, color="k", ls="--", label="initial")
axes[4].set(title=r"$h_{11}(v)$: $D_{11} = d_{11}g_{11}h_{11}$", xlabel="v")
for k, stage in enumerate(model.stages):
    M = model.matrix(k)
    h11 = model.h11.evaluate(0.0, stage["w11h"]) if model.h11.kind != "one" else 1.0
    g11 = model.g11.evaluate(s_grad, stage["w11"]) * h11
    g22 = model.g22.evaluate(np.zeros_like(s_grad), stage["w22"])
    lam_min = [np.linalg.eigvalsh(0.5 * ((G := np.diag(np.sqrt([a, b]))) @ M @ G + (G @ M @ G).T)).min()
               for a, b in zip(g11, g22)]
    axes[3].plot(s_grad, lam_min, label=f"stage {k}")
axes[3].axhline(model.certificate(), color="r", ls=":", label="certificate")
axes[3].set(title=r"$\lambda_{\min}$ of sym. part of $D$ (v = 0)", xlabel=r"$|\nabla u|$")
for ax in axes[1:]:
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(os.path.join(out_dir, "learn_small_model.png"), dpi=110, bbox_inches="tight")
for k in range(len(model.stages)):
    print(f"stage {k}: M =\n{np.array2string(model.matrix(k), precision=3)}, "
          f"lam={model.stages[k]['lam']:.3f}, mu={model.stages[k]['mu']:.3f}")

# %% [markdown]
# ## Before and after, on two public test crops (never seen in training)

# %%
data = test_set(25, size=128)[:2]
fig, axes = plt.subplots(len(data), 4, figsize=(11, 2.9 * len(data)))
for row, (name, clean, noisy) in zip(axes, data):
    u0 = fc.denoise(noisy, start)
    u1, v1 = fc.denoise(noisy, model, return_v=True)
    for ax, img, title in zip(row, [noisy, u0, u1, np.abs(v1)],
                              [f"noisy {fc.psnr(clean, noisy):.2f} dB", f"initial model {fc.psnr(clean, u0):.2f} dB",
                               f"learned {fc.psnr(clean, u1):.2f} dB", "|v| learned"]):
        ax.imshow(img, cmap="gray" if "v|" not in title else "magma")
        ax.set_title(f"{name}: {title}", fontsize=8)
        ax.set_axis_off()
    print(f"{name}: noisy {fc.psnr(clean, noisy):.2f} dB, initial model {fc.psnr(clean, u0):.2f} dB, "
          f"learned {fc.psnr(clean, u1):.2f} dB")
fig.tight_layout()
fig.savefig(os.path.join(out_dir, "learn_small_images.png"), dpi=110, bbox_inches="tight")
print(f"figures: {out_dir}/learn_small_*.png")
