# %% [markdown]
# # Hand-tuning the classic models (on training images only)
#
# The public test crops (camera, astronaut, coins, moon) are never used here. For each classic model we
# search a small grid of its edge threshold and time horizon on 128² crops of *training* images and report the
# parameters with the best mean PSNR at σ = 15 and σ = 25 (and, the same way, one TV-Chambolle weight). The result
# goes to `out/demos/tuned.json` (`--out`); with `--install` it replaces the package's
# `fem_crossdiff/evaluation/tuned.json`, which `fem-crossdiff evaluate` uses as "the best hand-tuned classic
# models", and which guided the models' defaults. Without `--install` the package's file is never written.
#
# Run: `python demos/tune_classic.py [--quick] [--install]`

# %%
import argparse
import itertools
import json
import math
import os
import sys
import time

import numpy as np

import fem_crossdiff as fc
from fem_crossdiff.evaluation.tuned import TUNED
from fem_crossdiff.imaging.baselines import tv_weight_for
from fem_crossdiff.imaging.data import centre_crop, load
from fem_crossdiff.imaging.noise import gaussian_noise

parser = argparse.ArgumentParser(description="tune the classic models and TV's weight on training images")
parser.add_argument("--quick", action="store_true", help="two images, 64² crops; nothing written")
parser.add_argument("--speckle", type=float, metavar="L",
                    help="instead: tune nonlinear complex diffusion for speckle of L looks (added to the file)")
parser.add_argument("--out", default=os.path.join("out", "demos", "tuned.json"),
                    help="the file written (default %(default)s; the package's own file only with --install)")
parser.add_argument("--install", action="store_true",
                    help=f"write the package's {TUNED} instead (what fem-crossdiff evaluate uses)")
args = parser.parse_args()
sys.argv = sys.argv[:1]                   # PETSc (started with Firedrake later) must not read these options
if args.install and args.out != parser.get_default("out"):
    parser.error("--install writes the package's file: give it or --out, not both")
elif args.install:
    args.out = TUNED
elif os.path.abspath(args.out) == os.path.abspath(TUNED):
    parser.error(f"--out {args.out} is the package's own file: pass --install to replace it")


def previous():
    """The file this run adds to: --out if it exists, else the package's file (its other parts are kept)."""
    path = args.out if os.path.exists(args.out) else TUNED
    with open(path) as fh:
        return json.load(fh)


def write(content):
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(content, fh, indent=1)
    print(f"wrote {args.out}" + ("" if args.install else " (the package's file is unchanged; --install replaces it)"))


images = ["brick", "text", "clock", "chelsea"][: 2 if args.quick else None]
size = 64 if args.quick else 128
times = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
short = [0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0]
GRIDS = {
    "heat": dict(time=short),
    "linear-complex": dict(time=short),
    "linear-cross": dict(time=short),
    "perona-malik": dict(k=[0.04, 0.07, 0.1, 0.15], time=times),
    "nonlinear-complex": dict(k=[0.01, 0.02, 0.05, 0.1, 0.25], time=times),
    "nonlinear-cross": dict(k=[0.0002, 0.0005, 0.001, 0.002, 0.005], time=times),
}


def steps_for(t):
    return int(max(8, 2 * t))


# %% [markdown]
# ## Speckle (`--speckle L`): the companion papers' despeckling filter, nonlinear complex diffusion, tuned the same way
# on the same training crops with multiplicative Gamma noise of L looks; the result joins the file's "speckle" part.

# %%
if args.speckle:
    from fem_crossdiff.imaging.noise import speckle_noise
    data = [(c, speckle_noise(c, args.speckle, seed=100 + i))
            for i, c in enumerate(centre_crop(load(n), size) for n in images)]
    grid = dict(theta=[0.02, math.pi / 30, 0.2], k=[0.02, 0.05, 0.1, 0.25, 0.5], time=times)
    best = (-np.inf, None)
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values))
        params["steps"] = steps_for(params["time"])
        score = np.mean([fc.psnr(c, fc.denoise(f, "nonlinear-complex", **params)) for c, f in data])
        best = max(best, (score, params), key=lambda b: b[0])
    print(f"speckle {args.speckle:g} looks: nonlinear-complex {best[1]}  mean train PSNR {best[0]:.2f} dB")
    tuned = previous()
    tuned.setdefault("speckle", {})[f"{args.speckle:g}"] = {"nonlinear-complex": dict(
        params=best[1], train_psnr=round(float(best[0]), 3),
        provenance=f"python demos/tune_classic.py --speckle {args.speckle:g}", images=images, size=size)}
    if not args.quick:
        write(tuned)
    raise SystemExit(0)

# %%
results, tv = {}, {}
t0 = time.perf_counter()
for sigma in (15, 25):
    data = [(c, gaussian_noise(c, sigma / 255, seed=100 + i))
            for i, c in enumerate(centre_crop(load(n), size) for n in images)]
    results[sigma] = {}
    for name, grid in GRIDS.items():
        best = (-np.inf, None)
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values))
            params["steps"] = steps_for(params["time"])
            score = np.mean([fc.psnr(c, fc.denoise(f, name, **params)) for c, f in data])
            best = max(best, (score, params), key=lambda b: b[0])
        results[sigma][name] = dict(params=best[1], train_psnr=round(float(best[0]), 3))
        print(f"σ={sigma:2d} {name:18s} {best[1]}  mean train PSNR {best[0]:.2f} dB  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    # TV-Chambolle tuned the same way: one weight for all images (evaluate also shows its per-image oracle)
    weight, score = tv_weight_for(data)
    tv[sigma] = dict(params=dict(weight=round(weight, 5)), train_psnr=round(score, 3))
    print(f"σ={sigma:2d} {'tv-chambolle':18s} weight {weight:.4f}  mean train PSNR {score:.2f} dB", flush=True)

# %%
provenance = dict(command="python demos/tune_classic.py" + (" --quick" if args.quick else "")
                  + (" --install" if args.install else ""),
                  images=images, size=size, seeds="100+i", grids=GRIDS)
if not args.quick:
    kept = {k: v for k, v in previous().items() if k == "speckle"}   # tuned by --speckle: kept
    write(dict(tuned=results, tv=tv, provenance=provenance, **kept))
