"""``fem-crossdiff evaluate`` (the public test crops) and ``fem-crossdiff validate`` (held-out crops of the
training pictures: how models are chosen)."""
import os
import sys

from ..errors import check_counts
from ..learned import HELDOUT
from .common import rank0


def add_parser(sub):
    s = sub.add_parser("evaluate", help="PSNR/SSIM on the public test crops: learned vs tuned classic, TV, "
                                        "BM3D; --task: deblurring, inpainting, upscaling vs their anchors")
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
    s.add_argument("--task", help="deblur, inpaint or upscale: their cases on the test crops (PSNR / SSIM / "
                                  "blur_effect) beside the anchors (Richardson-Lucy, Wiener, TV, biharmonic, bicubic, "
                                  "Lanczos) and ours; uses --size, --colour, --case, --images, --no-ours only")
    s.add_argument("--case", nargs="+", help="--task: only these cases (e.g. 'gaussian:1.6', '80 %% missing', "
                                             "'×2'; default all)")
    s.add_argument("--images", nargs="+", help="--task: only these test crops by name (default all)")
    s.add_argument("--no-ours", action="store_true", help="--task: the anchors only (not the learned restoration)")
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
    s.add_argument("--tv-oracle", action="store_true", help="first a reference column: TV-Chambolle with the "
                   "weight best on each crop (the last column then reads: last model minus TV-oracle)")
    s.add_argument("--task", help="deblur, inpaint or upscale: held-out PSNR of the anchors and the learned "
                                  "restoration on the task's cases (uses --images, --patch, --per-image, --seed, "
                                  "--colour)")
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


def run_task(args):
    """``evaluate --task``: the restoration table of one task."""
    from ..evaluation.restoration import check_task, evaluate_task, print_task_table
    check_task(args.task)
    check_counts(size=(args.size, 16))
    rows = evaluate_task(args.task, size=args.size, colour=args.colour, cases=args.case, images=args.images,
                         ours=not args.no_ours, log=_progress)
    if rank0():
        print(f"--task {args.task} on the {'colour ' if args.colour else ''}test crops ({args.size}²)")
        print_task_table(rows)


def run_evaluate(args):
    if args.task is not None:
        return run_task(args)
    from ..evaluation.testcrops import evaluate, print_table
    check_counts(refine=(args.refine, 0))
    models = _load_labelled(args.model) if args.model else None
    rows = evaluate(models, sigmas=args.sigma, size=args.size, classic=not args.no_classic,
                    baselines=not args.no_baselines, refine=args.refine, log=_progress, noise=args.noise,
                    colour=args.colour, png=args.png)
    if rank0():
        print_table(rows)


def run_validate(args):
    if args.task is not None:
        return run_task_validate(args)
    from ..evaluation.validation import print_validation, validate
    from ..learned import shipped_model
    kind = "speckle" if args.noise == "speckle" else ("colour" if args.colour else "grey")
    models = _load_labelled(args.model or [shipped_model(args.looks if kind == "speckle" else args.sigma, kind=kind)])
    scores = validate(models, args.sigma, images=args.images, refine=args.refine, log=lambda *a: None,
                      patch=args.patch, per_image=args.per_image, seed=args.seed, colour=args.colour,
                      noise=args.noise, looks=args.looks, tv_oracle=args.tv_oracle)
    if rank0():
        noise = f"speckle of {args.looks:g} looks" if kind == "speckle" else f"σ = {args.sigma:g}"
        print(f"held-out {'colour ' if args.colour else ''}crops {args.patch}² ({args.per_image} per picture, seed "
              f"{args.seed}), {noise}: mean PSNR (dB)")
        print_validation(scores)



def run_task_validate(args):
    """``validate --task``: held-out PSNR of the anchors and the learned restoration on the task's cases."""
    from ..evaluation.restoration import check_task, heldout, print_heldout
    check_task(args.task)
    check_counts(patch=(args.patch, 16), per_image=(args.per_image, 1))
    scores = heldout(args.task, colour=args.colour, images=args.images, patch=args.patch, per_image=args.per_image,
                     seed=args.seed)
    if rank0():
        print(f"--task {args.task}, held-out crops {args.patch}² ({args.per_image} per picture, seed {args.seed})")
        print_heldout(scores)
