"""Command line: ``fem-crossdiff {models, denoise, bench, ...}``. Every command also runs under ``mpiexec``."""
import argparse
import os
import sys
import time

__all__ = ["main"]


def _rank0():
    from mpi4py import MPI
    return MPI.COMM_WORLD.rank == 0


def say(*args, **kwargs):
    """print on rank 0 only."""
    if _rank0():
        print(*args, **kwargs, flush=True)


class ProgressBar:
    """``[#####.....] 5/10 steps 0.4 s`` on stderr (rank 0 only, redrawn in place on a terminal)."""

    def __init__(self, label, width=30):
        self.label, self.width, self.t0 = label, width, time.perf_counter()
        self.tty = sys.stderr.isatty()

    def __call__(self, n, total):
        if not _rank0() or (not self.tty and n != total):
            return
        done = int(self.width * n / total)
        bar = "#" * done + "." * (self.width - done)
        end = "\n" if n == total else ""
        sys.stderr.write(f"\r{self.label} [{bar}] {n}/{total} steps {time.perf_counter() - self.t0:.1f} s{end}")
        sys.stderr.flush()


def _param(text):
    key, sep, val = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got '{text}'")
    try:
        return key, float(val)
    except ValueError:
        raise argparse.ArgumentTypeError(f"parameter {key}: '{val}' is not a number") from None


def cmd_models(args):
    from .models import model_help
    for name, doc, defaults in model_help():
        say(f"{name}\n    {doc}")
        say("    parameters: " + ", ".join(f"{k}={v:g}" for k, v in defaults.items()))


def cmd_denoise(args):
    from .images import read_image, write_image, ImageError
    from .timestepping import denoise
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise ImageError(f"{args.output}: output would overwrite the input image; choose another name")
    if os.path.exists(args.output) and not args.force:
        raise ImageError(f"{args.output}: exists; pass --force to replace it")
    img = read_image(args.input)
    if args.time is not None and not args.time > 0:
        raise ValueError(f"--time must be > 0, got {args.time}")
    params = dict(args.param or [])
    t0 = time.perf_counter()
    u, v = denoise(img, args.model, time=args.time, steps=args.steps, refine=args.refine, scheme=args.scheme,
                   return_v=True, callback=None if args.quiet else ProgressBar(os.path.basename(args.input)),
                   **params)
    if _rank0():
        write_image(args.output, u)
        if args.edges:
            import numpy as np
            write_image(args.edges, np.abs(v) / max(np.abs(v).max(), 1e-300))
    say(f"{args.input} -> {args.output}  ({img.shape[0]}×{img.shape[1]}, model {args.model}, "
        f"{time.perf_counter() - t0:.2f} s)")


def checkpoints_option(text):
    """``--checkpoints`` value: ``tape`` (None), ``all`` or a snapshot count K >= 1."""
    if text in ("tape", "all"):
        return None if text == "tape" else text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"'{text}': expected tape, all or a number of snapshots >= 1")


def check_counts(**options):
    """Refuse a count option ``name=(value, least)`` (``value`` a number or a list; None: not given) that is not an
    integer ``>= least``, naming its command-line flag."""
    for name, (value, least) in options.items():
        values = value if isinstance(value, list) else [] if value is None else [value]
        if any(int(v) != v or v < least for v in values):
            what = "integers" if isinstance(value, list) else "an integer"
            raise ValueError(f"--{name.replace('_', '-')} {' '.join(map(str, values))}: expected {what} >= {least}")


def cmd_bench(args):
    from .bench import run_bench, run_gradient_bench
    check_counts(sizes=(args.sizes, 2), repeats=(args.repeats, 1), steps=(args.steps, 1))
    if args.gradient:
        run_gradient_bench(sizes=args.sizes or [64, 128, 256], model=args.model or "sigma25",
                           repeats=args.repeats, steps=args.steps,
                           checkpoints=args.checkpoints or [None, "all", 4])
    else:
        run_bench(sizes=args.sizes or [64, 128, 256, 512], model=args.model or "nonlinear-complex",
                  repeats=args.repeats, sigma255=args.sigma)


def build_parser():
    p = argparse.ArgumentParser(prog="fem-crossdiff", description=__doc__.splitlines()[0].split(":")[0] +
                                ": learned cross-diffusion image restoration with Firedrake.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("models", help="list the models and their parameters")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("denoise", help="denoise an image file")
    s.add_argument("input", help="PNG/JPEG/TIFF/NPY image (colour is converted to grey)")
    s.add_argument("output", help="output .png, .tif or .npy (written atomically)")
    s.add_argument("--model", default="nonlinear-complex", help="model name or model .json (default: %(default)s)")
    s.add_argument("--time", type=float, help="final time T (pixel² units; default: the model's)")
    s.add_argument("--steps", type=int, help="number of time steps (default: the model's)")
    s.add_argument("--param", type=_param, action="append", metavar="KEY=VALUE", help="model parameter")
    s.add_argument("--scheme", default="semi-implicit", choices=["semi-implicit", "implicit", "crank-nicolson"])
    s.add_argument("--refine", type=int, default=0, help="solve on a mesh refined this many times (default 0)")
    s.add_argument("--edges", help="also write |v| (the edge indicator), normalised, to this file")
    s.add_argument("--force", action="store_true", help="replace an existing output file")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_denoise)

    s = sub.add_parser("bench", help="time per step and per denoise for several image sizes, vs TV and BM3D")
    s.add_argument("--sizes", type=int, nargs="+", help="image sizes (default 64 128 256 512; --gradient: 64 128 256)")
    s.add_argument("--model", help="model (default nonlinear-complex; --gradient: sigma25, the shipped learned "
                                   "model, or a model .json)")
    s.add_argument("--gradient", action="store_true",
                   help="cost of a training gradient (pyadjoint) against the forward solve, and peak memory")
    s.add_argument("--steps", type=int, help="--gradient: time steps (default: the model's); more steps, longer tape")
    s.add_argument("--checkpoints", type=checkpoints_option, nargs="+", metavar="{tape,all,K}",
                   help="--gradient: how to compute it (default: tape all 4; see train --checkpoints)")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--sigma", type=float, default=25.0, help="noise level on the 0-255 scale")
    s.set_defaults(func=cmd_bench)

    for extra in _extra_commands():
        extra(sub)
    return p


def _extra_commands():
    """Sub-commands contributed by other modules (learning, studies), each adding its own parser."""
    found = []
    for modname in ("learning", "evaluation", "studies"):
        try:
            mod = __import__(f"fem_crossdiff.{modname}", fromlist=["add_commands"])
        except ModuleNotFoundError as e:
            if e.name != f"fem_crossdiff.{modname}":
                raise
            continue
        if hasattr(mod, "add_commands"):
            found.append(mod.add_commands)
    return found


def main(argv=None):
    import shlex
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = "fem-crossdiff " + shlex.join(argv)  # recorded in the provenance of outputs
    saved, sys.argv = sys.argv, sys.argv[:1]  # PETSc reads sys.argv when Firedrake starts it: ours are not
    import firedrake  # noqa: F401            # PETSc options (PETSC_OPTIONS="-ksp_monitor" ...) go in the environment
    sys.argv = saved
    from .images import ImageError
    from .models import ModelError
    from .timestepping import EvolutionError
    try:
        args.func(args)
    except (ImageError, ModelError, EvolutionError, ValueError, FileNotFoundError) as e:
        if _rank0():
            print(f"fem-crossdiff {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if _rank0():
            print(f"fem-crossdiff {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
