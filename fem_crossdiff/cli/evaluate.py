"""``fem-crossdiff evaluate`` (the public test crops) and ``fem-crossdiff validate`` (held-out crops of the
training pictures: how models are chosen)."""
import os
import sys

from ..errors import check_counts
from ..learned import HELDOUT
from .common import rank0


def add_parser(sub):
    s = sub.add_parser("evaluate", help="PSNR/SSIM on the public test crops: learned vs tuned classic, TV, BM3D")
    s.add_argument("--model", nargs="+", help="learned model JSON(s) (default: the shipped model for each σ)")
    s.add_argument("--sigma", type=float, nargs="+", default=[15, 25], help="noise levels, 0-255 scale")
    s.add_argument("--size", type=int, default=256, help="centre-crop size (default 256)")
    s.add_argument("--no-baselines", action="store_true", help="skip TV-Chambolle and BM3D")
    s.add_argument("--refine", type=int, default=0, help="also run the learned model(s) on a refined mesh")
    s.add_argument("--no-classic", action="store_true", help="skip the hand-tuned classic models")
    s.add_argument("--noise", choices=["gaussian", "speckle"], default="gaussian",
                   help="speckle: multiplicative noise, --sigma then gives the looks (default gaussian)")
    s.add_argument("--colour", action="store_true", help="the colour test crops (CBM3D and per-channel beside)")
    s.add_argument("--png", action="store_true", help="noisy inputs as 8-bit files hold them (clipped, rounded)")
    s.set_defaults(func=run_evaluate, firedrake=True)

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
    s.add_argument("--colour", action="store_true", help="colour crops of the colour training pictures")
    s.add_argument("--noise", choices=["gaussian", "speckle"], default="gaussian",
                   help="speckle: multiplicative noise of --looks (default gaussian)")
    s.add_argument("--looks", type=float, default=10.0, help="--noise speckle: looks (default 10)")
    s.set_defaults(func=run_validate, firedrake=True)


def _load_labelled(paths):
    """{label: model} for model files, labelled by file name (by path where two names coincide)."""
    from ..model import load_model
    names = [os.path.basename(p) for p in paths]
    return {(n if names.count(n) == 1 else p): load_model(p) for n, p in zip(names, paths)}


def _progress(line):
    """A progress line on stderr (rank 0), so that the table on stdout stays clean."""
    if rank0():
        print(f"fem-crossdiff evaluate: {line}", file=sys.stderr, flush=True)


def run_evaluate(args):
    from ..evaluation.testcrops import evaluate, print_table
    check_counts(refine=(args.refine, 0))
    models = _load_labelled(args.model) if args.model else None
    rows = evaluate(models, sigmas=args.sigma, size=args.size, classic=not args.no_classic,
                    baselines=not args.no_baselines, refine=args.refine, log=_progress, noise=args.noise,
                    colour=args.colour, png=args.png)
    if rank0():
        print_table(rows)


def run_validate(args):
    from ..evaluation.validation import print_validation, validate
    from ..learned import shipped_model
    kind = "speckle" if args.noise == "speckle" else ("colour" if args.colour else "grey")
    models = _load_labelled(args.model or [shipped_model(args.looks if kind == "speckle" else args.sigma, kind=kind)])
    scores = validate(models, args.sigma, images=args.images, refine=args.refine, log=lambda *a: None,
                      patch=args.patch, per_image=args.per_image, seed=args.seed, colour=args.colour,
                      noise=args.noise, looks=args.looks)
    if rank0():
        noise = f"speckle of {args.looks:g} looks" if kind == "speckle" else f"σ = {args.sigma:g}"
        print(f"held-out {'colour ' if args.colour else ''}crops {args.patch}² ({args.per_image} per picture, seed "
              f"{args.seed}), {noise}: mean PSNR (dB)")
        print_validation(scores)

