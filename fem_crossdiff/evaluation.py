"""The public benchmark: PSNR/SSIM on 256² centre crops of camera, astronaut, coins, moon at σ = 15 and 25.

Rows: noisy input, a learned model, every hand-tuned classic model (parameters tuned on *training* images by
``demos/tune_classic.py``, stored in ``fem_crossdiff/tuned.json``), TV-Chambolle with its weight tuned there too
and with the per-image oracle weight (the best for each test image: a bound, not a method), and BM3D when the
``bm3d`` package is installed.

Model *selection* never looks at those crops: :func:`validate` scores models on held-out crops of the training
pictures (other crops, other noise than any training run of the shipped models), per picture.
"""
import json
import os
import time

import numpy as np

from .baselines import bm3d_denoise, tv_oracle
from .data import test_set
from .metrics import psnr, ssim

__all__ = ["tuned_classic", "tuned_tv_weight", "shipped_model", "evaluate", "print_table", "HELDOUT",
           "validate", "print_validation"]

HERE = os.path.dirname(__file__)
TUNED = os.path.join(HERE, "tuned.json")
#: The held-out crops that chose every step of the shipped models: ``training_pairs(**HELDOUT)``.
HELDOUT = {"patch": 96, "per_image": 2, "seed": 12345}


def _tuned(section, sigma255):
    """The entry of ``tuned.json``'s ``section`` ("tuned": classic models, "tv") for the nearest noise level."""
    with open(TUNED) as fh:
        tuned = json.load(fh)[section]
    return tuned[min(tuned, key=lambda s: abs(float(s) - sigma255))]


def tuned_classic(sigma255):
    """{model name: parameters} tuned on training images for the nearest tuned noise level."""
    return {name: entry["params"] for name, entry in _tuned("tuned", sigma255).items()}


def tuned_tv_weight(sigma255):
    """The TV-Chambolle weight tuned on training images (``demos/tune_classic.py``) for the nearest noise level."""
    return _tuned("tv", sigma255)["params"]["weight"]


def shipped_model(sigma255):
    """Path of the shipped learned model for the nearest noise level (``fem_crossdiff/learned/sigmaNN.json``)."""
    folder = os.path.join(HERE, "learned")
    found = {int(f[5:-5]): os.path.join(folder, f) for f in os.listdir(folder)
             if f.startswith("sigma") and f.endswith(".json")} if os.path.isdir(folder) else {}
    if not found:
        raise FileNotFoundError(f"no learned model shipped in {folder}; train one with fem-crossdiff train")
    return found[min(found, key=lambda s: abs(s - sigma255))]


def evaluate(models=None, sigmas=(15, 25), size=256, classic=True, baselines=True, refine=0, log=print):
    """Rows of (method, image, σ, PSNR, SSIM, seconds). ``models``: {label: model or path or None=shipped}.

    ``refine > 0`` also runs the learned models on a mesh refined that many times (the image as its bilinear
    interpolant, read back at the pixel centres): a resolution-independence check."""
    from .models import load_model
    from .timestepping import denoise
    rows = []
    for sigma in sigmas:
        methods = {}
        for label, m in (models or {"learned": None}).items():
            m = m or shipped_model(sigma)
            m = load_model(m) if isinstance(m, str) else m
            methods[label] = (lambda noisy, m=m: denoise(noisy, m))
            if refine:
                methods[f"{label} (h/{2 ** refine})"] = (lambda noisy, m=m: denoise(noisy, m, refine=refine))
        if classic:
            for name, params in tuned_classic(sigma).items():
                methods[name] = (lambda noisy, name=name, params=params: denoise(noisy, name, **params))
        for image, clean, noisy in test_set(sigma, size=size):
            rows.append(("noisy", image, sigma, psnr(clean, noisy), ssim(clean, noisy), 0.0))
            for label, fn in methods.items():
                t0 = time.perf_counter()
                u = fn(noisy)
                rows.append((label, image, sigma, psnr(clean, u), ssim(clean, u), time.perf_counter() - t0))
            if baselines:
                from skimage.restoration import denoise_tv_chambolle
                weight = tuned_tv_weight(sigma)
                t0 = time.perf_counter()
                u = denoise_tv_chambolle(noisy, weight=weight)
                rows.append(("TV (tuned)", image, sigma, psnr(clean, u), ssim(clean, u), time.perf_counter() - t0))
                t0 = time.perf_counter()
                u, _ = tv_oracle(clean, noisy, tuned=weight)
                rows.append(("TV (oracle)", image, sigma, psnr(clean, u), ssim(clean, u), time.perf_counter() - t0))
                t0 = time.perf_counter()
                u = bm3d_denoise(noisy, sigma / 255)
                if u is not None:
                    rows.append(("BM3D", image, sigma, psnr(clean, u), ssim(clean, u), time.perf_counter() - t0))
            log(f"  σ={sigma} {image} done")
    return rows


def print_table(rows, out=print):
    """PSNR / SSIM per method (rows) and image (columns), with the mean per σ."""
    methods = list(dict.fromkeys(r[0] for r in rows))
    for sigma in sorted({r[2] for r in rows}):
        images = list(dict.fromkeys(r[1] for r in rows if r[2] == sigma))
        out(f"\nσ = {sigma}: PSNR (dB) / SSIM")
        out(f"{'method':<20}" + "".join(f"{im:>17}" for im in images) + f"{'mean':>17}")
        for m in methods:
            sel = {r[1]: r for r in rows if r[0] == m and r[2] == sigma}
            if not sel:
                continue
            cells = "".join(f"{sel[im][3]:>9.2f} / {sel[im][4]:.3f}" for im in images)
            mean_p, mean_s = np.mean([r[3] for r in sel.values()]), np.mean([r[4] for r in sel.values()])
            out(f"{m:<20}{cells}{mean_p:>9.2f} / {mean_s:.3f}")


def _training_seeds(provenance):
    """The ``--seed`` of every training run in a model's chain (its provenance and the ``init_provenance`` inside)."""
    seeds = []
    while provenance:
        seeds.append(provenance.get("settings", {}).get("seed"))
        provenance = provenance.get("init_provenance")
    return seeds


def validate(models, sigma255, images=None, refine=0, log=print, **crops):
    """Held-out PSNR, ``{label: [{picture: mean PSNR over its crops}, …]}`` (the list: the pixel mesh, then each
    refinement up to ``refine``) on the crops ``training_pairs(images, sigma255, **HELDOUT)`` (``crops`` overrides
    ``patch``, ``per_image``, ``seed``). Refuses a model trained with the same seed (its own crops)."""
    from .data import TRAIN_IMAGES
    from .learning import training_pairs
    from .models import load_model
    from .timestepping import denoise
    crops = {**HELDOUT, **crops}
    if refine < 0:
        raise ValueError(f"refine = {refine}; expected 0 (the pixel mesh) or more")
    images = list(images or TRAIN_IMAGES)
    pairs = training_pairs(images, sigma255, **crops)
    scores = {}
    for label, m in models.items():
        m = load_model(m) if isinstance(m, str) else m
        if crops["seed"] in _training_seeds(m.provenance):
            raise ValueError(f"model '{label}' was trained with --seed {crops['seed']}: held-out crops need "
                             "another seed")
        scores[label] = []
        for r in range(refine + 1):
            psnrs = [psnr(clean, denoise(noisy, m, refine=r)) for clean, noisy in pairs]
            scores[label].append(dict(zip(images, np.reshape(psnrs, (len(images), -1)).mean(axis=1))))
        log(f"  {label} done")
    return scores


def print_validation(scores, out=print):
    """Held-out PSNR per training picture (rows) and model and mesh (columns), the mean last; with two or more
    models a last column: the last model minus the first on the pixel mesh."""
    labels = list(scores)
    columns = [(x, r) for x in labels for r in range(len(scores[x]))]
    names = [x if r == 0 else f"{x} (h/{2 ** r})" for x, r in columns]
    width = max(18, *(len(n) + 2 for n in names))
    diff = len(labels) > 1
    out(f"{'picture':<22}" + "".join(f"{n:>{width}}" for n in names) + (f"{'last − first':>14}" if diff else ""))
    def value(x, r, im):
        return np.mean(list(scores[x][r].values())) if im == "mean" else scores[x][r][im]
    for im in list(scores[labels[0]][0]) + ["mean"]:
        row = "".join(f"{value(x, r, im):>{width}.2f}" for x, r in columns)
        out(f"{im:<22}{row}" + (f"{value(labels[-1], 0, im) - value(labels[0], 0, im):>+14.3f}" if diff else ""))


def add_commands(sub):
    s = sub.add_parser("evaluate", help="PSNR/SSIM on the public test crops: learned vs tuned classic, TV, BM3D")
    s.add_argument("--model", nargs="+", help="learned model JSON(s) (default: the shipped model for each σ)")
    s.add_argument("--sigma", type=float, nargs="+", default=[15, 25], help="noise levels, 0-255 scale")
    s.add_argument("--size", type=int, default=256, help="centre-crop size (default 256)")
    s.add_argument("--no-baselines", action="store_true", help="skip TV-Chambolle and BM3D")
    s.add_argument("--refine", type=int, default=0, help="also run the learned model(s) on a refined mesh")
    s.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser("validate", help="held-out PSNR per training picture (crops no training run used): "
                                        "how models are chosen")
    s.add_argument("--model", nargs="+", help="learned model JSON(s) to compare (default: the shipped model)")
    s.add_argument("--sigma", type=float, default=25.0, help="noise level, 0-255 scale (default 25)")
    s.add_argument("--images", nargs="+", help="bundled training pictures (default: all)")
    s.add_argument("--patch", type=int, default=HELDOUT["patch"], help="crop size (default %(default)s)")
    s.add_argument("--per-image", type=int, default=HELDOUT["per_image"], help="crops per picture (default "
                   "%(default)s)")
    s.add_argument("--seed", type=int, default=HELDOUT["seed"], help="crops and noise (default %(default)s)")
    s.add_argument("--refine", type=int, default=0, help="also run the models on a refined mesh")
    s.set_defaults(func=_cmd_validate)


def _load_labelled(paths):
    """{label: model} for model files, labelled by file name (by path where two names coincide)."""
    from .models import load_model
    names = [os.path.basename(p) for p in paths]
    return {(n if names.count(n) == 1 else p): load_model(p) for n, p in zip(names, paths)}


def _cmd_evaluate(args):
    from mpi4py import MPI
    models = _load_labelled(args.model) if args.model else None
    rows = evaluate(models, sigmas=args.sigma, size=args.size, baselines=not args.no_baselines,
                    refine=args.refine, log=lambda *a: None)
    if MPI.COMM_WORLD.rank == 0:
        print_table(rows)


def _cmd_validate(args):
    from mpi4py import MPI
    models = _load_labelled(args.model or [shipped_model(args.sigma)])
    scores = validate(models, args.sigma, images=args.images, refine=args.refine, log=lambda *a: None,
                      patch=args.patch, per_image=args.per_image, seed=args.seed)
    if MPI.COMM_WORLD.rank == 0:
        print(f"held-out crops {args.patch}² ({args.per_image} per picture, seed {args.seed}), σ = {args.sigma:g}: "
              "mean PSNR (dB)")
        print_validation(scores)
