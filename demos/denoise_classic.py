# %% [markdown]
# # Denoising with the classic cross-diffusion models
#
# A grey image $f$ is the initial state of $w=(u,v)$, evolved by
#
# $$\partial_t w = \nabla\cdot\big(D(w)\nabla w\big) + R(w,f),\qquad u(0)=f,\ v(0)=0,$$
#
# with Neumann boundaries, on the structured quadrilateral mesh whose vertices are the pixel centres (one Q1
# field per component). Heat flow, Perona–Malik, Gilboa's linear and nonlinear complex diffusion and the
# cross-diffusion systems of Araújo, Barbeiro, Cuesta and Durán are all choices of $D$ and $R$
# (`fem-crossdiff models` lists them). We denoise 256×256 centre crops of scikit-image's public test images at
# σ = 15 and 25 (0–255 scale, fixed seeds) with every classic model and the shipped learned model, print
# PSNR/SSIM beside TV-Chambolle (oracle weight) and BM3D when it is installed, and save a figure grid with the
# `v` component as an edge map.
#
# Run: `python demos/denoise_classic.py [--quick]`  (figures go to `out/demos/`).

# %%
import argparse
import os
import sys

import numpy as np
from skimage.restoration import denoise_tv_chambolle

import fem_crossdiff as fc
from fem_crossdiff.imaging.baselines import tv_oracle, bm3d_denoise
from fem_crossdiff.imaging.data import test_set
from fem_crossdiff.evaluation import tuned_classic, tuned_tv_weight
from fem_crossdiff.learned import shipped_model
from fem_crossdiff.model import MODELS

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--quick", action="store_true", help="two images, σ=25 only, 128² crops")
parser.add_argument("--out", default="out/demos", help="folder of the figures (default %(default)s)")
args = parser.parse_args()
sys.argv = sys.argv[:1]                   # PETSc (started with Firedrake below) must not read this script's options
os.makedirs(args.out, exist_ok=True)
sigmas = (25,) if args.quick else (15, 25)
size = 128 if args.quick else 256

# %% [markdown]
# Each classic model runs with its parameters hand-tuned for the noise level on *training* images
# (`demos/tune_classic.py` → `fem_crossdiff/evaluation/tuned.json`); the learned model is the one shipped for that
# noise level (`fem_crossdiff/learned/sigmaNN.json`, made by `fem-crossdiff train`).

# %%
models = list(MODELS)

rows, panels = [], {}
for sigma in sigmas:
    data = test_set(sigma, size=size)[: 2 if args.quick else None]
    for name, clean, noisy in data:
        row = {"image": name, "sigma": sigma, "noisy": (fc.psnr(clean, noisy), fc.ssim(clean, noisy))}
        results = {}
        tuned = tuned_classic(sigma)
        for m in models:
            u, v = fc.denoise(noisy, m, return_v=True, **tuned[m])
            results[m] = (u, v)
            row[m] = (fc.psnr(clean, u), fc.ssim(clean, u))
        try:
            learned = fc.load_model(shipped_model(sigma))
        except FileNotFoundError:
            learned = None
        if learned is not None:
            u, v = fc.denoise(noisy, learned, return_v=True)
            results["learned"] = (u, v)
            row["learned"] = (fc.psnr(clean, u), fc.ssim(clean, u))
        weight = tuned_tv_weight(sigma)                   # tuned on training images, like the models above
        u_tv = denoise_tv_chambolle(noisy, weight=weight)
        row["TV (tuned)"] = (fc.psnr(clean, u_tv), fc.ssim(clean, u_tv))
        u_tv, _ = tv_oracle(clean, noisy, tuned=weight)           # the best weight for each test image
        row["TV (oracle)"] = (fc.psnr(clean, u_tv), fc.ssim(clean, u_tv))
        u_bm = bm3d_denoise(noisy, sigma / 255)
        if u_bm is not None:
            row["BM3D"] = (fc.psnr(clean, u_bm), fc.ssim(clean, u_bm))
        rows.append(row)
        panels[(name, sigma)] = (clean, noisy, results)

# %% [markdown]
# ## The table

# %%
columns = [c for c in rows[0] if c not in ("image", "sigma")]
width = max(len("00.00 / 0.000"), *map(len, columns)) + 2            # a cell "PSNR / SSIM" or the longest name
print(f"PSNR (dB) / SSIM on {size}² centre crops")
print(f"{'image':<10}{'σ':>4}" + "".join(f"{c:>{width}}" for c in columns))
for row in rows:
    print(f"{row['image']:<10}{row['sigma']:>4}"
          + "".join(f"{f'{row[c][0]:.2f} / {row[c][1]:.3f}':>{width}}" for c in columns))
for sigma in sigmas:
    mean = {c: np.mean([r[c][0] for r in rows if r["sigma"] == sigma]) for c in columns}
    print(f"{'mean':<10}{sigma:>4}" + "".join(f"{f'{mean[c]:.2f}':>{width}}" for c in columns))

# %% [markdown]
# ## The figure: noisy input, every model's $u(T)$ and its edge indicator $|v(T)|$
#
# Heat flow and Perona–Malik do not couple $u$ to $v$: their $v$ stays 0, and the panel says so.

# %%
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

for (name, sigma), (clean, noisy, results) in panels.items():
    cols = len(results) + 1
    fig, axes = plt.subplots(2, cols, figsize=(2.2 * cols, 4.6))
    axes[0, 0].imshow(noisy, cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title(f"noisy σ={sigma}\n{fc.psnr(clean, noisy):.2f} dB", fontsize=8)
    axes[1, 0].imshow(clean, cmap="gray", vmin=0, vmax=1)
    axes[1, 0].set_title("clean", fontsize=8)
    for j, (m, (u, v)) in enumerate(results.items(), start=1):
        axes[0, j].imshow(u, cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"{m}\n{fc.psnr(clean, u):.2f} dB", fontsize=8)
        if np.any(v):
            axes[1, j].imshow(np.abs(v), cmap="magma")
            axes[1, j].set_title("|v| (edges)", fontsize=8)
        else:                                             # v ≡ 0: no edge indicator to show
            axes[1, j].text(0.5, 0.5, "no v\n(v ≡ 0: u not\ncoupled to v)", ha="center", va="center", fontsize=8,
                            transform=axes[1, j].transAxes)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    path = os.path.join(args.out, f"classic_{name}_sigma{sigma}.png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
print(f"figures: {args.out}/classic_*.png")
