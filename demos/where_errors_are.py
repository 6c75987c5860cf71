# %% [markdown]
# # Where the learned model's error is
#
# PSNR averages the squared error over the whole image. To see *where* a denoiser loses, we split the mean
# squared error by the edge strength of the clean image, $|\nabla c|$ per pixel (Sobel; grey levels per pixel),
# into flat regions ($|\nabla c| < 0.01$), gentle shading ($< 0.03$), texture ($< 0.1$) and edges:
#
# $$\mathrm{MSE} = \sum_{\text{bins } b} \frac{1}{N}\sum_{x:\,|\nabla c(x)| \in b} \big(u(x) - c(x)\big)^2 ,$$
#
# for the shipped learned cross-diffusion model, TV-Chambolle with the per-image oracle weight and BM3D, on the
# public test crops (`fem_crossdiff.metrics.error_by_edge_strength`). The bins' shares add up to the MSE, so
# they show which regions make the gaps in the PSNR table of the README.
#
# Run: `python demos/where_errors_are.py [--sigma 25] [--quick]`  (figure goes to `out/demos/`).

# %%
import argparse
import os
import sys

import numpy as np

_argv, sys.argv = sys.argv, sys.argv[:1]   # PETSc must not read this script's options
import firedrake  # noqa: E402,F401
sys.argv = _argv
import fem_crossdiff as fc  # noqa: E402
from fem_crossdiff.imaging.baselines import bm3d_denoise, tv_oracle  # noqa: E402
from fem_crossdiff.imaging.data import test_set  # noqa: E402
from fem_crossdiff.evaluation import tuned_tv_weight  # noqa: E402
from fem_crossdiff.learned import shipped_model  # noqa: E402
from fem_crossdiff.imaging.metrics import EDGE_BINS, edge_strength, error_by_edge_strength  # noqa: E402

parser = argparse.ArgumentParser(description="squared error split by edge strength")
parser.add_argument("--sigma", type=float, default=25.0, help="noise level, 0-255 scale (default 25)")
parser.add_argument("--quick", action="store_true", help="two images, 128² crops")
parser.add_argument("--out", default="out/demos", help="folder of the figures (default %(default)s)")
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)
BINS = [f"{name} <{e:g}" for name, e in zip(("flat", "shading", "texture"), EDGE_BINS)] + ["edges"]

# %% [markdown]
# ## Denoise and split
#
# The learned model is the one shipped for the nearest noise level; TV's weight is the best one for each image
# (chosen with the clean original: a bound, not a method); BM3D gets the true σ (skipped if not installed).

# %%
model = fc.load_model(shipped_model(args.sigma))
data = test_set(args.sigma, size=128 if args.quick else 256)[: 2 if args.quick else None]
splits, maps = {}, {}
for name, clean, noisy in data:
    results = {"learned": fc.denoise(noisy, model),
               "TV (oracle)": tv_oracle(clean, noisy, tuned=tuned_tv_weight(args.sigma))[0]}
    u_bm = bm3d_denoise(noisy, args.sigma / 255)
    if u_bm is not None:
        results["BM3D"] = u_bm
    for method, u in results.items():
        splits[name, method] = error_by_edge_strength(clean, u)
    maps[name] = (clean, results)
methods = list(results)

# %% [markdown]
# ## The table: share of the MSE per bin, in units of $10^{-5}$ (PSNR 40 dB is an MSE of $10^{-4}$)

# %%
print(f"σ = {args.sigma:g}: MSE share per edge-strength bin (1e-5), pixel fraction in brackets")
print(f"{'image':<10}{'method':<13}" + "".join(f"{b:>16}" for b in BINS) + f"{'MSE':>9}{'PSNR':>8}")
for name, _, _ in data:
    for method in methods:
        frac, share = splits[name, method]
        cells = "".join(f"{1e5 * s:>9.2f} ({f:.2f})" for f, s in zip(frac, share))
        print(f"{name:<10}{method:<13}{cells}{1e5 * share.sum():>9.2f}{10 * np.log10(1 / share.sum()):>8.2f}")
mean = {m: np.mean([splits[n, m][1] for n, _, _ in data], axis=0) for m in methods}
for method in methods:
    print(f"{'mean':<10}{method:<13}" + "".join(f"{1e5 * s:>16.2f}" for s in mean[method])
          + f"{1e5 * mean[method].sum():>9.2f}")

# %% [markdown]
# ## The figure: squared-error maps beside the edge strength, and the mean shares per bin

# %%
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

name = data[0][0]
clean, results = maps[name]
fig, axes = plt.subplots(1, len(methods) + 2, figsize=(3.1 * (len(methods) + 2), 3.8))
axes[0].imshow(edge_strength(clean), cmap="magma", vmax=0.15)
axes[0].set_title(f"{name}: |∇c| (Sobel)", fontsize=9)
vmax = np.percentile((results["learned"] - clean) ** 2, 99.5)
for ax, method in zip(axes[1:], methods):
    ax.imshow((results[method] - clean) ** 2, cmap="viridis", vmin=0, vmax=vmax)
    ax.set_title(f"(u - c)², {method}\n{fc.psnr(clean, results[method]):.2f} dB", fontsize=9)
for ax in axes[:-1]:
    ax.set_axis_off()
x = np.arange(len(BINS))
for j, method in enumerate(methods):
    axes[-1].bar(x + (j - 1) * 0.27, 1e5 * mean[method], width=0.27, label=method)
axes[-1].set_xticks(x, [b.split()[0] for b in BINS], fontsize=8)
axes[-1].set_ylabel("MSE share (1e-5), mean over images", fontsize=8)
axes[-1].legend(fontsize=7)
fig.tight_layout()
path = os.path.join(args.out, f"where_errors_sigma{args.sigma:g}.png")
fig.savefig(path, dpi=110, bbox_inches="tight")
print(f"figure: {path}")
