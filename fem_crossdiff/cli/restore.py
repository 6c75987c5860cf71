"""``fem-crossdiff deblur | inpaint | upscale``: restoration beyond denoising, with the guarantees of ``denoise``.

* ``deblur IN OUT --psf gaussian:1.6 | box:5 | motion:15,30 | psf.png [--sigma S]``
* ``inpaint IN OUT --mask MASK.png`` (non-zero mask pixels are filled, as scikit-image's ``inpaint_biharmonic``)
* ``upscale IN OUT --factor 2|3|4`` (the output has kH × kW pixels; each input pixel is the mean of its k×k)

One image (``IN OUT``) or many (``IN... --out-dir DIR``: files, folders, globs), colour kept, the input's bit depth
kept, no file ever overwritten without ``--force`` (never an input), every output checked before any work. Without
``--model`` the shipped learned denoiser restores, with the task's data term (:mod:`fem_crossdiff.fem.restoration`);
``--model perona-malik`` (or any model name, file or definition) runs a classic model instead. Bad input — a mask of
another size, an empty or all-missing mask, a PSF that is not normalisable or larger than the image, a factor below
2, an image too small — is refused in one line, nothing written."""
import os
import sys
import time

from ..model.base import SCHEME_NAMES
from .common import ProgressBar, param_option, say, start_firedrake

TASKS = {"deblur": "deblur image files blurred by a known PSF",
         "inpaint": "fill the pixels a mask marks (one image, or many with --out-dir)",
         "upscale": "upscale image files by an integer factor (the output has k·H × k·W pixels)"}


def add_parser(sub):
    for name, help_text in TASKS.items():
        s = sub.add_parser(name, help=help_text, description=__doc__)
        s.add_argument("paths", nargs="+", metavar="PATH",
                       help="IN OUT, or with --out-dir: inputs (files, folders, globs); PNG/JPEG/TIFF/BMP/NPY")
        s.add_argument("--out-dir", help="write each result here, named as its input (the folder is made if "
                                         "missing)")
        s.add_argument("--format", choices=["png", "tif", "jpg", "npy"],
                       help="--out-dir: the results' format (default: the input's when writable, else png)")
        if name == "deblur":
            s.add_argument("--psf", required=True, help="the blur: gaussian:S (std S px), box:N (N odd), "
                                                        "motion:L,ANGLE (length px, degrees) or a PSF image file")
        if name == "inpaint":
            s.add_argument("--mask", required=True, help="mask image of the input's size: non-zero pixels are "
                                                         "missing (to fill)")
        if name == "upscale":
            s.add_argument("--factor", type=int, required=True, help="integer factor k >= 2 (2, 3 or 4 typical)")
        s.add_argument("--model", help="a classic model instead of the learned default: model name (e.g. "
                                       "perona-malik), model .json or definition file.py:Class")
        s.add_argument("--sigma", type=float, help="noise level on the 0-255 scale; chooses the learned model "
                                                   "(default: deblur estimates it, inpaint/upscale assume 2.55)")
        s.add_argument("--lam", type=float, help="weight of the data term (default: the task's, chosen on held-out "
                                                 "training crops)")
        s.add_argument("--time", type=float, help="final time T (pixel² units; default: the model's)")
        s.add_argument("--steps", type=int, help="number of time steps (default: the task's for the learned model, "
                                                 "else the model's)")
        s.add_argument("--param", type=param_option, action="append", metavar="KEY=VALUE",
                       help="model parameter (with --model)")
        s.add_argument("--scheme", choices=SCHEME_NAMES, help="time scheme (default: the model's own)")
        s.add_argument("--force", action="store_true", help="replace existing output files (never an input)")
        s.add_argument("--quiet", action="store_true", help="no progress bar")
        s.set_defaults(func=run, firedrake=False, task=name, edges=None)


def _check_options(args, params):
    from ..errors import InputError
    if args.out_dir is None:
        if len(args.paths) != 2:
            raise InputError(f"give IN OUT for one image, or --out-dir DIR for several (got {len(args.paths)} paths)")
        if args.format is not None:
            raise InputError(f"--format {args.format} names the results' format with --out-dir; with IN OUT the "
                             "format is OUT's suffix (drop --format)")
    if args.time is not None and not args.time > 0:
        raise InputError(f"--time must be > 0, got {args.time}")
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be an integer >= 1, got {args.steps}")
    if args.lam is not None and not args.lam >= 0:
        raise InputError(f"--lam must be a number >= 0, got {args.lam}")
    if args.model is not None and args.sigma is not None:
        raise InputError("--sigma chooses the learned model; with --model it has no effect (drop one)")
    if args.sigma is not None and not args.sigma > 0:
        raise InputError(f"--sigma must be > 0, got {args.sigma}")
    if args.model is None and params:
        raise InputError(f"--param {sorted(params)[0]}: the learned models take no parameters; give --model")
    if args.task == "upscale" and args.factor < 2:
        raise InputError(f"--factor {args.factor}: expected an integer >= 2")


def _batch(args):
    """The ``(input, output)`` pairs of ``--out-dir`` (each output ``DIR/<input name>.<suffix>``), as ``denoise``'s:
    each input once, no output an input, no two inputs with one output (refused in one line)."""
    from ..errors import InputError
    from ..imaging.files import WRITE_SUFFIXES, image_paths
    from ..safeio import check_not_inputs, name_key, unique_files
    if os.path.lexists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise InputError(f"--out-dir {args.out_dir}: is a file, expected a directory")
    sources = unique_files(f for p in args.paths for f in (image_paths(p) or [p]))
    jobs = []
    for path in sources:
        stem, suffix = os.path.splitext(os.path.basename(path))
        suffix = f".{args.format}" if args.format else (suffix.lower() if suffix.lower() in WRITE_SUFFIXES
                                                        else ".png")
        jobs.append((path, os.path.join(args.out_dir, stem + suffix)))
    check_not_inputs([target for _, target in jobs], [source for source, _ in jobs])
    seen = {}
    for source, target in jobs:
        other = seen.setdefault(name_key(target), source)
        if other != source:
            raise InputError(f"{target}: would be the result of each of {other}, {source}; restore them in separate "
                             "runs (another --out-dir each)")
    return jobs


def _prepare(args):
    """What every image shares, checked before any output is touched: the PSF, the mask (read once)."""
    from ..imaging.degrade import parse_psf
    from ..imaging.files import read_image
    if args.task == "deblur":
        return {"psf": parse_psf(args.psf)}
    if args.task == "inpaint":
        mask = read_image(args.mask, colour=True)
        return {"mask": (mask if mask.ndim == 2 else mask.max(axis=2)) != 0}
    return {"factor": args.factor}


def run(args):
    from ..errors import InputError
    from ..imaging.files import WRITE_SUFFIXES
    from ..model import make_model
    from ..safeio import check_outputs
    params = dict(args.param or [])
    _check_options(args, params)
    jobs = [(args.paths[0], args.paths[1])] if args.out_dir is None else _batch(args)
    batch = args.out_dir is not None
    extra = [args.mask] if args.task == "inpaint" else []
    check_outputs([target for _, target in jobs], inputs=[source for source, _ in jobs] + extra,
                  force=args.force or batch, suffixes=WRITE_SUFFIXES, create_dirs=batch)
    operator = _prepare(args)
    model = make_model(args.model, **params) if args.model is not None else None
    if args.out_dir is None:
        _one(jobs[0], args, operator, model, single=True)
        return 0
    try:
        os.makedirs(args.out_dir, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out-dir {args.out_dir}: cannot be created ({e.strerror or e})") from None
    failed, t0 = [], time.perf_counter()
    for i, job in enumerate(jobs, start=1):
        try:
            _one(job, args, operator, model, single=False, label=f"[{i}/{len(jobs)}] ")
        except InputError as e:
            failed.append(job[0])
            print(f"fem-crossdiff {args.task}: error: {e}", file=sys.stderr, flush=True)
    say(f"{len(jobs) - len(failed)} of {len(jobs)} image(s) restored in {time.perf_counter() - t0:.1f} s"
        + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""))
    return min(len(failed), 125)


def _one(job, args, operator, model, single, label=""):
    from ..fem.arrays import split_fast_path
    from ..fem.restoration import restore
    from ..imaging.files import WRITE_SUFFIXES, read_image, write_image
    from ..safeio import check_outputs
    source, target = job
    if not single:
        check_outputs([target], inputs=[source], force=args.force, suffixes=WRITE_SUFFIXES)
    img, depth = read_image(source, with_depth=True, colour=True)
    if model is not None and not split_fast_path(model, args.scheme):
        start_firedrake()
    elif model is None and args.scheme not in (None, "split"):
        start_firedrake()
    t0 = time.perf_counter()
    bar = None if args.quiet or not single else ProgressBar(os.path.basename(source))
    u, (_, described) = restore(args.task, img, model, sigma=args.sigma, lam=args.lam, time=args.time,
                                steps=args.steps, scheme=args.scheme, callback=bar, return_model=True, **operator)
    note = write_image(target, u, replace=args.force, depth=depth)
    if note:
        print(f"fem-crossdiff {args.task}: note: {note}", file=sys.stderr)
    kind = "colour" if img.ndim == 3 else "grey"
    say(f"{label}{source} -> {target}  ({img.shape[0]}×{img.shape[1]} {kind} -> {u.shape[0]}×{u.shape[1]}, "
        f"{described}, {time.perf_counter() - t0:.2f} s)")
