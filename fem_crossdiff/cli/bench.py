"""``fem-crossdiff bench``: time per step and per denoise against TV and BM3D, or (``--gradient``) a training
gradient's cost against the forward solve and its peak memory."""
from ..errors import check_counts
from ..model.base import SCHEME_NAMES
from .common import checkpoints_option

NAME, HELP = "bench", "time per step and per denoise for several image sizes, vs TV and BM3D (with their PSNR)"


def add_parser(sub):
    s = sub.add_parser(NAME, help=HELP)
    s.add_argument("--sizes", type=int, nargs="+", help="image sizes (default 64 128 256 512; --gradient: 64 128 256)")
    s.add_argument("--model", help="model (default: the learned default at --sigma, what denoise runs without "
                                   "--model; --gradient: sigma25, the shipped learned model, or a model .json)")
    s.add_argument("--gradient", action="store_true",
                   help="cost of a training gradient (pyadjoint) against the forward solve, and peak memory")
    s.add_argument("--steps", type=int, help="--gradient: time steps (default: the model's); more steps, longer tape")
    s.add_argument("--checkpoints", type=checkpoints_option, nargs="+", metavar="{tape,all,K}",
                   help="--gradient: how to compute it (default: tape all 4; see train --checkpoints)")
    s.add_argument("--batch", type=int, metavar="N", help="N photographs (--sizes: one size, default 256) as one "
                                                           "denoise command, against BM3D on the same files")
    s.add_argument("--large", action="store_true", help="learned-model seconds per megapixel and peak memory, "
                                                         "--sizes (default 512 1024 2048 4096)")
    s.add_argument("--colour", action="store_true", help="--batch/--large: colour images (against CBM3D)")
    s.add_argument("--scheme", choices=SCHEME_NAMES, help="time scheme (default: the model's own)")
    s.add_argument("--repeats", type=int, default=3, help="timed runs per case; the best is shown (default 3)")
    s.add_argument("--sigma", type=float, default=25.0, help="noise level on the 0-255 scale")
    s.set_defaults(func=run, firedrake=True)


def run(args):
    from ..evaluation.bench import run_batch_bench, run_bench, run_gradient_bench, run_large_bench
    check_counts(sizes=(args.sizes, 2), repeats=(args.repeats, 1), steps=(args.steps, 1), batch=(args.batch, 1))
    if args.batch:
        run_batch_bench(args.batch, (args.sizes or [256])[0], args.colour, args.sigma, scheme=args.scheme)
    elif args.large:
        run_large_bench(args.sizes or [512, 1024, 2048, 4096], args.colour, args.sigma, scheme=args.scheme)
    elif args.gradient:
        run_gradient_bench(sizes=args.sizes or [64, 128, 256], model=args.model or "sigma25",
                           repeats=args.repeats, steps=args.steps, checkpoints=args.checkpoints, scheme=args.scheme)
    else:
        run_bench(sizes=args.sizes or [64, 128, 256, 512], model=args.model,
                  repeats=args.repeats, sigma255=args.sigma, scheme=args.scheme)
