"""``fem-crossdiff denoise``: one image (``IN OUT``) or many (``IN... --out-dir DIR``: files, folders, globs) in one
process; every output is checked before any work. Without ``--model`` the learned models restore the image, at the
noise level given by ``--sigma`` or estimated from each image; colour stays colour."""
import glob
import os
import sys
import time

from ..model.base import SCHEME_NAMES
from .common import ProgressBar, param_option, rank0, say, start_firedrake

NAME, HELP = "denoise", "denoise image files (one, or many with --out-dir)"


def add_parser(sub):
    s = sub.add_parser(NAME, help=HELP, description=__doc__)
    s.add_argument("paths", nargs="+", metavar="PATH",
                   help="IN OUT, or with --out-dir: inputs (files, folders, globs); PNG/JPEG/TIFF/BMP/NPY")
    s.add_argument("--out-dir", help="write each result here, named as its input")
    s.add_argument("--format", choices=["png", "tif", "npy"],
                   help="--out-dir: the results' format (default: the input's when writable, else png)")
    s.add_argument("--model", help="model name, model .json or definition file.py:Class (default: the learned "
                                   "models, for the noise level of each image)")
    s.add_argument("--sigma", type=float, help="Gaussian noise level on the 0-255 scale (default: estimated from "
                                               "each image); chooses the learned model")
    s.add_argument("--noise", choices=["gaussian", "speckle"], default="gaussian",
                   help="the noise the default learned model removes (default gaussian)")
    s.add_argument("--time", type=float, help="final time T (pixel² units; default: the model's)")
    s.add_argument("--steps", type=int, help="number of time steps (default: the model's)")
    s.add_argument("--param", type=param_option, action="append", metavar="KEY=VALUE", help="model parameter")
    s.add_argument("--scheme", choices=SCHEME_NAMES, help="time scheme (default: the model's own; the learned "
                                                         "models': split)")
    s.add_argument("--refine", type=int, default=0, help="solve on a mesh refined this many times (default 0)")
    s.add_argument("--edges", help="also write |v| (the edge indicator), normalised, to this file (one input)")
    s.add_argument("--force", action="store_true", help="replace existing output files (never an input)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run, firedrake=False)            # started when a model needs it (not the split fast path)


def _inputs(patterns):
    """Input files from files, folders (their image files, sorted) and globs, in order, without repeats."""
    from ..errors import InputError
    from ..imaging.files import IMAGE_SUFFIXES
    found = []
    for p in patterns:
        if os.path.isdir(p):
            found += sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_SUFFIXES))
        elif any(ch in p for ch in "*?[") and not os.path.exists(p):
            matches = sorted(glob.glob(p))
            if not matches:
                raise InputError(f"{p}: no file matches")
            found += matches
        else:
            found.append(p)
    return list(dict.fromkeys(found))


def _output_for(path, out_dir, fmt):
    from ..imaging.files import WRITE_SUFFIXES
    stem, suffix = os.path.splitext(os.path.basename(path))
    suffix = f".{fmt}" if fmt else (suffix.lower() if suffix.lower() in WRITE_SUFFIXES else ".png")
    return os.path.join(out_dir, stem + suffix)


def run(args):
    from ..errors import InputError
    if args.out_dir is None:
        if len(args.paths) != 2:
            raise InputError(f"give IN OUT for one image, or --out-dir DIR for several (got {len(args.paths)} paths)")
        jobs = [(args.paths[0], args.paths[1])]
    else:
        if args.edges:
            raise InputError("--edges names one file: use it with IN OUT, not with --out-dir")
        if not os.path.isdir(args.out_dir):
            raise InputError(f"--out-dir {args.out_dir}: no such directory")
        jobs = [(p, _output_for(p, args.out_dir, args.format)) for p in _inputs(args.paths)]
        if not jobs:
            raise InputError(f"no image files in {' '.join(args.paths)}")
    if args.time is not None and not args.time > 0:
        raise InputError(f"--time must be > 0, got {args.time}")
    params = dict(args.param or [])
    for key in ("time", "steps"):                      # listed by `models` as parameters: the same as --time/--steps
        if key in params:
            given = getattr(args, key)
            if given is not None and given != params[key]:
                raise InputError(f"--param {key}={params[key]:g} contradicts --{key} {given:g}; give one")
            setattr(args, key, params.pop(key))
    if args.model is not None and args.sigma is not None:
        raise InputError("--sigma chooses the learned model; with --model it has no effect (drop one)")
    if args.model is None and params:
        raise InputError(f"--param {sorted(params)[0]}: the learned models take no parameters; give --model")
    chooser = ModelChooser(args, params)
    if len(jobs) == 1 and args.out_dir is None:
        _one(jobs[0], chooser, args, single=True)
        return 0
    return _many(jobs, chooser, args)


class ModelChooser:
    """The model for an image: the one given by ``--model`` (made once), or the learned one for its noise level."""

    def __init__(self, args, params):
        from ..model import make_model
        self.args = args
        self.fixed = make_model(args.model, **params) if args.model is not None else None

    def __call__(self, img):
        from ..imaging.noise import estimate_sigma255
        from ..learned import blind_model, shipped_models
        if self.fixed is not None:
            return self.fixed, self.args.model
        if self.args.noise == "speckle":
            found = shipped_models(kind="speckle")
            if not found:
                from ..errors import InputError
                raise InputError("no learned speckle model is shipped; give one with --model")
            from ..model import load_model
            level = max(found)
            return load_model(found[level]), f"learned speckle ({level} looks)"
        kind = "colour" if img.ndim == 3 and shipped_models(kind="colour") else "grey"
        if self.args.sigma is not None:
            sigma, how = self.args.sigma, "given"
        else:
            sigma, how = estimate_sigma255(img), "estimated"
            least = min(shipped_models(kind=kind))
            if not sigma >= least:                          # (nearly) noise-free, or flat: the least-noise model
                sigma, how = least, f"estimated {sigma:.2g}, below the learned range: the σ {least} model"
        model = blind_model(sigma, kind=kind)
        return model, f"{model.description}; σ {sigma:.1f} {how}"


def _one(job, chooser, args, single, label=None, own_rank=False):
    """Denoise one file (``own_rank``: on this rank alone, as one of many files dealt out over the ranks); returns
    the seconds taken."""
    import numpy as np
    from ..fem import denoise, split_fast_path
    from ..imaging.files import WRITE_SUFFIXES, read_image, write_image
    from ..safeio import check_outputs
    source, target = job
    check_outputs([target, args.edges if single else None], inputs=[source], force=args.force,
                  suffixes=WRITE_SUFFIXES)
    img, depth = read_image(source, with_depth=True, colour=True)
    model, described = chooser(img)
    if not split_fast_path(model, args.scheme):
        start_firedrake()
    t0 = time.perf_counter()
    bar = None if args.quiet or not single else ProgressBar(os.path.basename(source))
    u, v = denoise(img, model, time=args.time, steps=args.steps, refine=args.refine, scheme=args.scheme,
                   return_v=True, callback=bar, own_rank=own_rank)
    if rank0() or own_rank:
        notes = [write_image(target, u, replace=args.force, depth=depth)]
        if single and args.edges:
            notes.append(write_image(args.edges, np.abs(v) / max(np.abs(v).max(), 1e-300), replace=args.force,
                                     depth=depth))
        for note in filter(None, notes):
            print(f"fem-crossdiff denoise: note: {note}", file=sys.stderr)
    kind = "colour" if img.ndim == 3 else "grey"
    line = (f"{label or ''}{source} -> {target}  ({img.shape[0]}×{img.shape[1]} {kind}, model {described}, "
            f"{time.perf_counter() - t0:.2f} s)")
    if own_rank:
        print(line, flush=True)
    else:
        say(line)
    return time.perf_counter() - t0


def _many(jobs, chooser, args):
    """Every job in turn — under ``mpiexec`` the files are dealt out over the ranks, each solving its own alone —: a
    failing file is reported in one line and skipped; returns the number that failed."""
    from mpi4py import MPI
    from ..errors import InputError
    comm = MPI.COMM_WORLD
    failed, t0 = [], time.perf_counter()
    for i, job in enumerate(jobs, start=1):
        if (i - 1) % comm.size != comm.rank:
            continue
        try:
            _one(job, chooser, args, single=False, label=f"[{i}/{len(jobs)}] ", own_rank=comm.size > 1)
        except InputError as e:
            failed.append(job[0])
            print(f"fem-crossdiff denoise: error: {e}", file=sys.stderr, flush=True)
    failed = [f for part in comm.allgather(failed) for f in part]
    say(f"{len(jobs) - len(failed)} of {len(jobs)} image(s) restored in {time.perf_counter() - t0:.1f} s"
        + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""))
    return min(len(failed), 125)
