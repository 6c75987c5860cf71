# %% [markdown]
# # Learning a model from your own folder of images
#
# `fem-crossdiff train --images DIR` learns a stable cross-diffusion model from a folder of *clean* images: noise
# of level σ is synthesised, and projected Adam (Kingma & Ba) takes steps on minibatches of patches drawn afresh
# every epoch (new crops, quarter turns, flips and noise; `fem_crossdiff/learning/training.py`). Every iterate stays
# in the box that certifies ellipticity, so each model met on the way is well posed. A quarter of the images is
# held out: the epoch best on them is the model saved, and the comparison below is made on them only.
#
# By default the demo writes its own folder, `out/learn_your_data/images/`: 96² crops of bundled pictures that are
# not test pictures. Give `--images DIR` to learn from yours (grey or colour files, 8/16-bit or float; colour is
# made grey). It then compares the model it learned with the shipped model for the same σ, on the held-out images.
#
# Run: `python demos/learn_your_data.py` (about a minute on one core), or
# `python demos/learn_your_data.py --images my_scans/ --sigma 15`; `--quick` is a seconds-long smoke run.
# Outputs in `out/learn_your_data/`: the model, its training curve (CSV and PNG) and a figure of the held-out images.

# %%
import argparse
import os
import shutil
import sys
import time

import numpy as np

parser = argparse.ArgumentParser(description="train a small model on a folder of clean images and compare it with "
                                             "the shipped model")
parser.add_argument("--images", help="folder of clean images (default: crops of bundled pictures written here)")
parser.add_argument("--sigma", type=float, default=25.0, help="noise level, 0-255 scale (default 25)")
parser.add_argument("--epochs", type=int, default=30, help="Adam epochs (default 30)")
parser.add_argument("--out", default="out/learn_your_data", help="output folder (default out/learn_your_data)")
parser.add_argument("--quick", action="store_true", help="a smoke run: few small images, one epoch, a tiny model")
args = parser.parse_args()
sys.argv = sys.argv[:1]                                  # PETSc reads the command line too

import matplotlib                                                             # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt                                               # noqa: E402

import fem_crossdiff as fc                                                    # noqa: E402
from fem_crossdiff.imaging.data import TRAIN_IMAGES, load                     # noqa: E402
from fem_crossdiff.imaging.files import read_image, to_grey                   # noqa: E402
from fem_crossdiff.learned import blind_model                                 # noqa: E402
from fem_crossdiff.learning.datasets import held_out, image_sources           # noqa: E402
from fem_crossdiff.learning.settings import psnr_of_loss                      # noqa: E402
from fem_crossdiff.learning.training import train                             # noqa: E402

t_start = time.perf_counter()
os.makedirs(args.out, exist_ok=True)

# %% [markdown]
# ## 1. The folder: yours, or crops of bundled non-test pictures

# %%
if args.images:
    folder = args.images
else:
    import imageio.v3 as iio
    folder = os.path.join(args.out, "images")
    os.makedirs(folder, exist_ok=True)
    size, per_picture = (48, 1) if args.quick else (96, 2)
    rng = np.random.default_rng(0)
    for name in TRAIN_IMAGES[:6] if args.quick else TRAIN_IMAGES:
        img = load(name)
        for k in range(per_picture):
            r, c = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
            iio.imwrite(os.path.join(folder, f"{name}_{k}.png"),
                        (255 * img[r:r + size, c:c + size]).round().astype(np.uint8))
sources = image_sources([folder])
train_images, val_images = held_out(sources, 0.25, 0)
print(f"{len(sources)} images in {folder}: {len(train_images)} to train on, {len(val_images)} held out")

# %% [markdown]
# ## 2. Training: Adam on patches drawn afresh every epoch, the epoch best on the held-out images saved

# %%
model_path = os.path.join(args.out, "model.json")
for stale in (model_path, model_path + ".checkpoint", model_path + ".curve.csv", model_path + ".curve.png"):
    if os.path.exists(stale):
        os.remove(stale)                                 # our own output from a previous run of this demo
small = dict(patch=16, per_image=1, stages=1, steps=4, centres=4, modulation=0, epochs=1, batch=4) if args.quick \
    else dict(patch=32, per_image=3, stages=3, steps=12, centres=16, modulation=15, epochs=args.epochs, batch=8)
t0 = time.perf_counter()
model, history = train(model_path, images=train_images, val=val_images, sigma255=args.sigma, optimiser="adam",
                       command="demos/learn_your_data.py", **small)
p = model.provenance
print(f"trained in {time.perf_counter() - t0:.0f} s: {len(history)} epoch(s), validation PSNR "
      f"{psnr_of_loss(p['initial_val_loss']):.2f} -> {p['final_val_psnr']:.2f} dB "
      f"(epoch {p['best_iteration']} saved); certificate {model.certificate():.3e}")
print(f"curve: {model_path}.curve.csv, {model_path}.curve.png")

# %% [markdown]
# ## 3. Learned against shipped, on the held-out images (never trained on)
#
# Each held-out image gets noise of level σ (seed 1); the shipped model for σ (`fem_crossdiff/learned/`, trained on
# the bundled pictures' patches with L-BFGS-B) and the one just learned denoise it. On the default folder the
# shipped model has seen other crops of the same pictures, so it is a strong reference; on a folder of a new kind
# of image the learned one has the advantage of its data.

# %%
shipped = blind_model(args.sigma)
rows, shown = [], []
for path in val_images:
    clean = read_image(path, colour=True)
    clean = to_grey(clean) if clean.ndim == 3 else clean
    noisy = fc.gaussian_noise(clean, args.sigma / 255.0, seed=1)
    u_ship, u_new = fc.denoise(noisy, shipped), fc.denoise(noisy, model)
    rows.append((os.path.basename(path), fc.psnr(clean, noisy), fc.psnr(clean, u_ship), fc.psnr(clean, u_new)))
    shown.append((clean, noisy, u_ship, u_new))
print(f"\n{'held-out image':>24}  {'noisy':>7}  {'shipped':>7}  {'learned':>7}   (PSNR dB, σ = {args.sigma:g})")
for name, *v in rows:
    print(f"{name:>24}  " + "  ".join(f"{x:7.2f}" for x in v))
mean = np.mean([r[1:] for r in rows], axis=0)
print(f"{'mean':>24}  " + "  ".join(f"{x:7.2f}" for x in mean))

fig, axes = plt.subplots(len(shown), 4, figsize=(10, 2.6 * len(shown)), squeeze=False)
for row, (name, *v), images in zip(axes, rows, shown):
    for ax, img, title in zip(row, images, ["clean", f"noisy {v[0]:.2f}", f"shipped {v[1]:.2f}",
                                            f"learned {v[2]:.2f}"]):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{name}: {title}" if title == "clean" else title, fontsize=8)
        ax.set_axis_off()
fig.tight_layout()
figure = os.path.join(args.out, "held_out.png")
fig.savefig(figure, dpi=100, bbox_inches="tight")
if args.images is None and args.quick:
    shutil.rmtree(folder)                                # the smoke run's own pictures
print(f"figures: {figure}, {model_path}.curve.png; {time.perf_counter() - t_start:.0f} s in all")
