# %% [markdown]
# # Real photographs: colour, an unknown noise level, speckle
#
# What a user of a denoiser brings is not a grey crop with a known σ: it is a colour photograph whose noise level
# nobody wrote down, or an OCT scan with multiplicative speckle. This demo measures, on test crops no training
# touched, what `fem-crossdiff denoise photo.png out.png` does with each:
#
# 1. **the noise level**: estimated from the image (the PCA of its weak-texture patches,
#    `fem_crossdiff.imaging.noise.estimate_sigma255`) — its error on the test crops (the full record, textured and
#    saturated crops too: `python -m fem_crossdiff.evaluation.blind`, `demos/PHOTOGRAPHS.md` §1–2);
# 2. **the blind default**: the learned model for the estimated σ (`fem_crossdiff.learned.blind_model`: the shipped
#    model at a shipped level, between two levels the convex combination of their parameters in $\log\sigma$ — inside
#    the box bounds, so elliptic) against a model trained for the true σ and TV with the oracle weight, at
#    σ ∈ {10, 15, 25, 35, 50}, on the unclipped protocol and on 8-bit PNG inputs (clipped and rounded, as a file holds
#    them); and interpolation against the nearest shipped model between levels;
# 3. **colour** as one system (`fem_crossdiff.model.ColourModel`: luma by the grey learned model for $\sigma/\sqrt3$,
#    chroma smoothed away from the edges of the joint colour gradient) against the grey model channel by channel,
#    colour TV (oracle) and CBM3D;
# 4. **speckle** of L looks: the learned speckle model against the companion papers' nonlinear complex diffusion
#    (tuned on training crops), and TV and BM3D on the bias-corrected log image.
#
# Run: `python demos/photographs.py` (about 3 minutes with BM3D installed; `--quick`: half a minute, small crops).

# %%
import argparse
import os
import sys
import time

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="64² crops, two noise levels, no BM3D")
parser.add_argument("--out", default="out/demos")
args = parser.parse_args()
sys.argv = sys.argv[:1]
os.makedirs(args.out, exist_ok=True)

import fem_crossdiff as fc                                                    # noqa: E402
from fem_crossdiff.evaluation import evaluate                                 # noqa: E402
from fem_crossdiff.imaging.baselines import tv_oracle                         # noqa: E402
from fem_crossdiff.imaging.data import test_set                               # noqa: E402
from fem_crossdiff.imaging.noise import estimate_sigma255                     # noqa: E402
from fem_crossdiff.learned import blind_model, shipped_models                 # noqa: E402

size = 64 if args.quick else 256
levels = (15, 25) if args.quick else (10, 15, 25, 35, 50)
t_start = time.perf_counter()


def table(title, header, rows):
    print(f"\n{title}\n" + "  ".join(f"{h:>14}" for h in header))
    for row in rows:
        print("  ".join(f"{x:>14.2f}" if isinstance(x, float) else f"{x!s:>14}" for x in row))


# %% [markdown]
# ## 1. The noise level, estimated

# %%
rows = []
for sigma in levels:
    est = [estimate_sigma255(noisy) for _, _, noisy in test_set(sigma, size=size)]
    png = [estimate_sigma255(np.round(np.clip(n, 0, 1) * 255) / 255) for _, _, n in test_set(sigma, size=size)]
    rows.append([sigma, float(np.mean(est)), float(np.max(np.abs(np.subtract(est, sigma)))), float(np.mean(png))])
table("estimated σ on the grey test crops (mean; largest error; mean from 8-bit PNG)",
      ["σ", "mean σ̂", "max |σ̂ − σ|", "mean σ̂ (PNG)"], rows)

# %% [markdown]
# ## 2. The blind default against a model trained for σ and TV-oracle
#
# "trained for σ" is the shipped model of that level (every level in the table has one); the blind default estimates
# σ from each image and takes `blind_model(σ̂)`. Mean PSNR over the four grey test crops.

# %%
shipped = shipped_models()
for png in (False, True):
    rows = []
    for sigma in levels:
        crops = test_set(sigma, size=size)
        if png:
            crops = [(n, c, np.round(np.clip(f, 0, 1) * 255) / 255) for n, c, f in crops]
        trained = fc.load_model(shipped[sigma]) if sigma in shipped else None
        scores = {"noisy": [], "trained": [], "blind": [], "TV-oracle": []}
        for _, clean, noisy in crops:
            scores["noisy"].append(fc.psnr(clean, noisy))
            if trained is not None:
                scores["trained"].append(fc.psnr(clean, fc.denoise(noisy, trained)))
            scores["blind"].append(fc.psnr(clean, fc.denoise(noisy, blind_model(max(estimate_sigma255(noisy),
                                                                                       min(shipped))))))
            scores["TV-oracle"].append(fc.psnr(clean, tv_oracle(clean, noisy)[0]))
        mean = {k: float(np.mean(v)) if v else float("nan") for k, v in scores.items()}
        rows.append([sigma, mean["noisy"], mean["trained"], mean["blind"], mean["blind"] - mean["trained"],
                     mean["TV-oracle"], mean["blind"] - mean["TV-oracle"]])
    table(f"blind default, {'8-bit PNG inputs' if png else 'unclipped'}: mean PSNR (dB)",
          ["σ", "noisy", "trained for σ", "blind", "blind − trained", "TV-oracle", "blind − TV"], rows)

# %% [markdown]
# Between shipped levels: the interpolated parameters against the nearest shipped model (known σ).

# %%
rows = []
between = [s for s in (20, 30, 42) if min(shipped) < s < max(shipped)][: 1 if args.quick else None]
for sigma in between:
    crops = test_set(sigma, size=size)
    interp = blind_model(sigma)
    nearest = blind_model(sigma, interpolate=False)
    rows.append([sigma, interp.description.split(", ", 1)[1], float(np.mean([fc.psnr(c, fc.denoise(n, interp))
                                                                               for _, c, n in crops])),
                 float(np.mean([fc.psnr(c, fc.denoise(n, nearest)) for _, c, n in crops]))])
table("between levels: mean PSNR (dB)", ["σ", "interpolation", "interpolated", "nearest"], rows)

# %% [markdown]
# ## 3. Colour: one system against channel by channel and CBM3D

# %%
colour_levels = [s for s in (15, 25) if s in shipped_models(kind="colour")]
if colour_levels:
    rows = evaluate(sigmas=colour_levels, size=size, colour=True, baselines=not args.quick, log=lambda *a: None)
    from fem_crossdiff.evaluation import print_table                         # noqa: E402
    print("\ncolour test crops (astronaut, retina, stereo_motorcycle):")
    print_table(rows)
else:
    print("\n(no colour model shipped: colour is restored channel by channel)")

# %% [markdown]
# ## 4. Speckle

# %%
speckle_levels = list(shipped_models(kind="speckle"))
if speckle_levels:
    print("\nspeckle, grey test crops:")
    from fem_crossdiff.evaluation import print_table                         # noqa: E402
    print_table(evaluate(sigmas=speckle_levels, size=size, noise="speckle", baselines=not args.quick,
                         log=lambda *a: None))

# %% [markdown]
# ## A colour photograph, restored

# %%
import matplotlib                                                             # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt                                               # noqa: E402
name, clean, noisy = test_set(25, size=size, colour=True)[0]
sigma_hat = estimate_sigma255(noisy)
model = blind_model(sigma_hat, kind="colour") if shipped_models(kind="colour") else blind_model(sigma_hat)
restored = np.clip(fc.denoise(noisy, model), 0, 1)
fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
for ax, img, title in zip(axes, [clean, np.clip(noisy, 0, 1), restored],
                          ["clean", f"noisy σ 25 ({fc.psnr(clean, noisy):.2f} dB)",
                           f"learned, σ̂ {sigma_hat:.1f} ({fc.psnr(clean, restored):.2f} dB)"]):
    ax.imshow(img)
    ax.set_title(title)
    ax.axis("off")
fig.tight_layout()
fig.savefig(os.path.join(args.out, "photographs.png"), dpi=100)
print(f"\nwrote {os.path.join(args.out, 'photographs.png')} ({time.perf_counter() - t_start:.0f} s in all)")
