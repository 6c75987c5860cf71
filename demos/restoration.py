# %% [markdown]
# # Deblurring, inpainting and upscaling beside their anchors
#
# The learned cross-diffusion models restore more than noise: with the task's data term in place of the fidelity
# (`fem_crossdiff.fem.deblur`, `inpaint`, `upscale`) they deblur a known PSF, fill missing pixels and upscale through
# the sensor's k×k block mean. This demo shows each case of `fem_crossdiff.evaluation.restoration.CASES` on the
# camera test crop: the clean crop, the input, every anchor (`fem_crossdiff.imaging.anchors`: Richardson–Lucy with the
# oracle count, unsupervised Wiener, TV with the oracle weight; biharmonic and TV inpainting; bicubic, Lanczos, TV
# upscaling) and ours, with PSNR / SSIM / blur_effect (Crété-Roffet 2007: 0 sharp, 1 blurred) under each panel, and a
# colour example. The tables over all test crops are `fem-crossdiff evaluate --task deblur|inpaint|upscale`, their
# record `demos/RESTORATION.md`.
#
# Run: `python demos/restoration.py` (about 2 minutes on one core; `--quick`: 64² crops, a few seconds). Figures go
# to `out/restoration/`.

# %%
import argparse
import os
import sys
import time

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="64² crops, one case per task, no colour example")
parser.add_argument("--out", default="out/restoration")
args = parser.parse_args()
sys.argv = sys.argv[:1]
os.makedirs(args.out, exist_ok=True)

import matplotlib                                                             # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt                                               # noqa: E402

from fem_crossdiff.evaluation.restoration import CASES, degrade, methods     # noqa: E402
from fem_crossdiff.imaging.anchors import blur_effect                         # noqa: E402
from fem_crossdiff.imaging.data import centre_crop, load                      # noqa: E402
from fem_crossdiff.imaging.metrics import psnr, ssim                          # noqa: E402

size = 64 if args.quick else 256
t_start = time.perf_counter()


def run_case(task, case, name="camera", colour=False):
    """Every method on one crop: [(label, image, PSNR, SSIM, blur_effect)], the clean crop first."""
    clean, observed, data = degrade(task, case, centre_crop(load(name, colour), size), seed=0)
    out = [("clean", clean, float("inf"), 1.0, blur_effect(clean))]
    for label, fn in methods(task).items():
        u = np.clip(fn(clean, observed, data)[0], 0, 1)
        out.append((label, u, psnr(clean, u), ssim(clean, u), blur_effect(u)))
    if task == "upscale":                        # the input at its own size, for the figure
        out[1] = ("input (pixels repeated)", np.clip(observed, 0, 1), *out[1][2:])
    return out


def figure(results, title, path):
    fig, axes = plt.subplots(1, len(results), figsize=(2.6 * len(results), 3.0))
    for ax, (label, img, p, s, b) in zip(axes, results):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label if label == "clean" else f"{label}\n{p:.2f} dB / {s:.3f} / {b:.2f}", fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=90)
    plt.close(fig)


# %% [markdown]
# ## Every case on the camera crop

# %%
summary = []
for task, cases in CASES.items():
    for case in list(cases)[:1 if args.quick else None]:
        results = run_case(task, case)
        stem = case.replace(" ", "").replace("%", "pc").replace(":", "_").replace("×", "x")
        path = os.path.join(args.out, f"{task}_{stem}.png")
        figure(results, f"{task}, {case}: PSNR / SSIM / blur_effect (camera, {size}²)", path)
        print(f"\n{task}, {case} (camera {size}²; clean blur_effect {results[0][4]:.3f}) -> {path}")
        for label, _, p, s, b in results[1:]:
            print(f"  {label:<26} {p:6.2f} dB  SSIM {s:.3f}  blur_effect {b:.3f}")
        best_anchor = max((r for r in results[2:] if not r[0].startswith("ours")), key=lambda r: r[2])
        ours = [r for r in results if r[0].startswith("ours")]
        summary.append((task, case, best_anchor[0], best_anchor[2], ours[0][2] if ours else float("nan")))

# %% [markdown]
# ## Colour: ×2 upscaling of the astronaut crop, channel by channel for the anchors

# %%
if not args.quick:
    results = run_case("upscale", "×2", name="astronaut", colour=True)
    path = os.path.join(args.out, "upscale_x2_colour.png")
    figure(results, f"upscale ×2, colour astronaut {size}²", path)
    print(f"\ncolour ×2 (astronaut) -> {path}")
    for label, _, p, s, b in results[1:]:
        print(f"  {label:<26} {p:6.2f} dB  SSIM {s:.3f}  blur_effect {b:.3f}")

# %%
print("\nsummary (camera): best anchor and ours, PSNR (dB)")
for task, case, label, p, q in summary:
    print(f"  {task:<8} {case:<14} {label:<26} {p:6.2f}   ours {q:6.2f}   ours − best {q - p:+.2f}")
print(f"\n{time.perf_counter() - t_start:.0f} s in all; figures in {args.out}")
