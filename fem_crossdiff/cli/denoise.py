"""``fem-crossdiff denoise``: one image (``IN OUT``) or many (``IN... --out-dir DIR``: files, folders, globs) in one
process; every output is checked before any work. Without ``--model`` the learned models restore the image, at the
noise level given by ``--sigma`` or estimated from each image; colour stays colour.

Many files (``--out-dir DIR``): each result is ``DIR/<the input's name>.<suffix>`` (the input's suffix when it can be
written, else ``--format``'s or png). Before anything is read or computed, and before a user's model file is imported:
- the same file given twice (another spelling, a symlink, a hard link) is restored once;
- no output may be any input, with or without ``--force`` (``denoise E --out-dir E`` with ``x.png`` and ``x.jpg`` in
  ``E`` would write x.jpg's result over the input ``E/x.png``);
- two inputs whose outputs would be one file (``a/x.png b/x.png``, ``x.jpg x.png``, ``x.PNG x.png``; names equal but
  for case count as one, as they are on a case-insensitive file system) refuse the whole command, in one line naming
  the inputs. Refused, not renamed (``x-1.png``): a result's name stays a function of its input's name alone, the
  same whatever else is in the batch, so that scripts and later runs find it; a renamed result could itself take an
  input's or a later result's name; and refusing costs nothing, since nothing has been computed;
- only then is an existing result refused with "pass --force" (reported and skipped, as a failing file): ``--force``
  can replace nothing else;
- a missing ``DIR`` is created (as every batch tool does) once every check has passed: a refused command creates
  nothing.
Options that would have no effect are refused by name (``--sigma`` or ``--noise`` with ``--model``, ``--sigma`` with
``--noise speckle``, ``--format`` without ``--out-dir``).

Under ``mpiexec`` the files are dealt out over the ranks; a file that fails is reported and skipped, and an internal
error on one rank stops that rank's files, after which every rank stops with it (no rank waits for ever)."""
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
    s.add_argument("--out-dir", help="write each result here, named as its input (the folder is made if missing)")
    s.add_argument("--format", choices=["png", "tif", "jpg", "npy"],
                   help="--out-dir: the results' format (default: the input's when writable, else png)")
    s.add_argument("--model", help="model name, model .json or definition file.py:Class (default: the learned "
                                   "models, for the noise level of each image)")
    s.add_argument("--sigma", type=float, help="Gaussian noise level on the 0-255 scale (default: estimated from "
                                               "each image); chooses the learned model")
    s.add_argument("--noise", choices=["gaussian", "speckle"],
                   help="the noise the default learned model removes (default gaussian)")
    s.add_argument("--looks", type=float, help="--noise speckle: its equivalent number of looks (default: the "
                                               "shipped model's); chooses the learned speckle model")
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
    """Input files from files, folders and globs (:func:`~fem_crossdiff.imaging.files.image_paths`; a name that is
    none of these is kept, for reading to refuse by name), in order, each file once (however it is named:
    :func:`~fem_crossdiff.safeio.file_key`)."""
    from ..imaging.files import image_paths
    from ..safeio import unique_files
    return unique_files(f for p in patterns for f in (image_paths(p) or [p]))


def _output_for(path, out_dir, fmt):
    from ..imaging.files import WRITE_SUFFIXES
    stem, suffix = os.path.splitext(os.path.basename(path))
    suffix = f".{fmt}" if fmt else (suffix.lower() if suffix.lower() in WRITE_SUFFIXES else ".png")
    return os.path.join(out_dir, stem + suffix)


def _batch(args):
    """The ``(input, output)`` pairs of ``--out-dir``; refuses (one line) an output that is any input, then inputs
    whose outputs would be one file."""
    from ..errors import InputError
    from ..safeio import check_not_inputs, name_key
    if os.path.lexists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise InputError(f"--out-dir {args.out_dir}: is a file, expected a directory")
    jobs = [(p, _output_for(p, args.out_dir, args.format)) for p in _inputs(args.paths)]
    check_not_inputs([target for _, target in jobs], [source for source, _ in jobs])
    groups = {}
    for source, target in jobs:
        groups.setdefault(name_key(target), []).append(source)
    clashes = [sources for sources in groups.values() if len(sources) > 1]
    if clashes:
        sources = clashes[0]
        target = _output_for(sources[0], args.out_dir, args.format)
        fix = "restore them in separate runs (another --out-dir each)"
        if args.format and len({name_key(_output_for(p, args.out_dir, None)) for p in sources}) == len(sources):
            fix = "drop --format, or " + fix
        more = f" (and {len(clashes) - 1} more such group(s))" if len(clashes) > 1 else ""
        names = {os.path.basename(_output_for(p, args.out_dir, args.format)) for p in sources}
        case = " (names equal but for case are one file on some file systems)" if len(names) > 1 else ""
        raise InputError(f"{target}: would be the result of each of {', '.join(sources)}{more}{case}; {fix}")
    return jobs


def _check_options(args, params):
    """Refuse options that contradict each other or would have no effect (before any file is touched)."""
    from ..errors import InputError
    if args.out_dir is None:
        if len(args.paths) != 2:
            raise InputError(f"give IN OUT for one image, or --out-dir DIR for several (got {len(args.paths)} paths)")
        if args.format is not None:
            raise InputError(f"--format {args.format} names the results' format with --out-dir; with IN OUT the "
                             "format is OUT's suffix (drop --format)")
    elif args.edges:
        raise InputError("--edges names one file: use it with IN OUT, not with --out-dir")
    if args.time is not None and not args.time > 0:
        raise InputError(f"--time must be > 0, got {args.time}")
    for key in ("time", "steps"):                      # listed by `models` as parameters: the same as --time/--steps
        if key in params:
            given = getattr(args, key)
            if given is not None and given != params[key]:
                raise InputError(f"--param {key}={params[key]:g} contradicts --{key} {given:g}; give one")
            setattr(args, key, params.pop(key))
    if args.model is not None and args.sigma is not None:
        raise InputError("--sigma chooses the learned model; with --model it has no effect (drop one)")
    if args.model is not None and args.noise is not None:
        raise InputError(f"--noise {args.noise} chooses the learned model; with --model it has no effect (drop one)")
    if args.noise == "speckle" and args.sigma is not None:
        raise InputError(f"--sigma {args.sigma:g} is the level of Gaussian noise; with --noise speckle it has no "
                         "effect (drop one)")
    if args.model is None and params:
        raise InputError(f"--param {sorted(params)[0]}: the learned models take no parameters; give --model")


def run(args):
    from ..errors import InputError
    from ..imaging.files import WRITE_SUFFIXES
    from ..safeio import check_outputs
    params = dict(args.param or [])
    _check_options(args, params)
    jobs = [(args.paths[0], args.paths[1])] if args.out_dir is None else _batch(args)
    batch = args.out_dir is not None                   # a batch's existing result: refused file by file (_one)
    check_outputs([target for _, target in jobs] + [args.edges], inputs=[source for source, _ in jobs],
                  force=args.force or batch, suffixes=WRITE_SUFFIXES, create_dirs=batch)
    chooser = ModelChooser(args, params)               # after the outputs: a model file is imported for a run only
    if args.out_dir is None:
        _one(jobs[0], chooser, args, single=True)
        return 0
    try:
        os.makedirs(args.out_dir, exist_ok=True)       # every check passed: a refused command creates nothing
    except OSError as e:
        raise InputError(f"--out-dir {args.out_dir}: cannot be created ({e.strerror or e})") from None
    return _many(jobs, chooser, args)


class ModelChooser:
    """The model for an image: the one given by ``--model`` (made once), the learned speckle model for ``--looks``
    (chosen once), or the learned one for the image's noise level (``--sigma``, else estimated). The line printed
    per image names it plainly ("learned colour model for σ 14.4 (estimated)"); how it was made from the shipped
    models is its ``description``."""

    def __init__(self, args, params):
        from ..errors import InputError
        from ..learned import shipped_models, speckle_model
        from ..model import make_model
        self.args = args
        looks = getattr(args, "looks", None)
        if looks is not None and args.noise != "speckle":
            raise InputError(f"--looks {looks:g} chooses the learned speckle model: give it with --noise speckle")
        if looks is not None and args.model is not None:
            raise InputError("--looks chooses the learned speckle model; with --model it has no effect (drop one)")
        self.fixed = make_model(args.model, **params) if args.model is not None else None
        self.speckle = None
        if self.fixed is None and args.noise == "speckle":
            found = shipped_models(kind="speckle")
            if not found:
                raise InputError("no learned speckle model is shipped; give one with --model")
            level = max(found) if looks is None else looks
            self.speckle = (speckle_model(level), f"learned speckle model for {level:g} looks"
                            + (" (given)" if looks is not None else ""))

    def __call__(self, img):
        from ..imaging.noise import estimate_sigma255
        from ..learned import blind_model, estimated_model
        if self.fixed is not None:
            return self.fixed, f"model {self.args.model}"
        if self.speckle is not None:
            return self.speckle
        kind = "colour" if img.ndim == 3 else "grey"
        if self.args.sigma is not None:
            sigma, how = self.args.sigma, "given"
            model = blind_model(sigma, kind=kind)
        else:
            estimate = estimate_sigma255(img)
            model, sigma = estimated_model(estimate, kind=kind)
            how = "estimated" if sigma == estimate else f"estimated {estimate:.2g}, outside the learned range"
        return model, f"learned {'colour ' if kind == 'colour' else ''}model for σ {sigma:.3g} ({how})"


def _one(job, chooser, args, single, label=None, own_rank=False):
    """Denoise one file (``own_rank``: on this rank alone, as one of many files dealt out over the ranks); returns
    the seconds taken."""
    import numpy as np
    from ..fem import denoise, split_fast_path
    from ..fem.arrays import check_image_memory
    from ..resources import mpi_world
    from ..imaging.files import WRITE_SUFFIXES, read_image, write_image
    from ..safeio import check_outputs
    source, target = job
    if not single:                                     # (the batch's were checked at the start; one may appear since)
        check_outputs([target], inputs=[source], force=args.force, suffixes=WRITE_SUFFIXES)
    shape = _stored_shape(source)
    if shape is not None:                              # before decoding: a huge file refused, not killed
        check_image_memory(shape, source, comm=None if own_rank else mpi_world())
    img, depth = read_image(source, with_depth=True, colour=True)
    model, described = chooser(img)
    if not split_fast_path(model, args.scheme):
        if own_rank and "firedrake" not in sys.modules:  # _many starts it on every rank, or the others would wait
            raise RuntimeError(f"{source}: model '{model.name}' needs Firedrake, not started on every rank")
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
    line = (f"{label or ''}{source} -> {target}  ({img.shape[0]}×{img.shape[1]} {kind}, {described}, "
            f"{time.perf_counter() - t0:.2f} s)")
    if own_rank:
        print(line, flush=True)
    else:
        say(line)
    return time.perf_counter() - t0


def _stored_shape(path):
    """``(H, W)`` or ``(H, W, channels)`` of the image in the file ``path`` from its header alone (no pixels
    decoded), or None when it cannot be told so (the reader then says what is wrong)."""
    import numpy as np
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".npy":
            shape = np.load(path, mmap_mode="r").shape
        elif suffix in (".tif", ".tiff"):
            import tifffile
            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
        else:
            from PIL import Image
            with Image.open(path) as im:
                bands = len(im.getbands())
                shape = (im.height, im.width) if bands == 1 else (im.height, im.width, bands)
    except Exception:                                  # unreadable here: read_image names the problem
        return None
    if len(shape) == 2:
        return tuple(shape)
    if len(shape) == 3 and min(shape) <= 4:            # channels first or last; alpha is composited away
        channels = min(shape)
        H, W = (d for d in shape if d != channels) if shape.count(channels) == 1 else shape[:2]
        return (H, W) if channels < 3 else (H, W, 3)
    return None


def _needs_firedrake(chooser, args):
    """Whether the batch's models run on Firedrake: the ``--model`` given, unless on the split fast path; the learned
    models (split-scheme models) only with another ``--scheme``."""
    from ..fem import split_fast_path
    fixed = getattr(chooser, "fixed", None)
    if fixed is not None:
        return not split_fast_path(fixed, args.scheme)
    return args.scheme not in (None, "split")


def _many(jobs, chooser, args):
    """Every job in turn — under ``mpiexec`` the files are dealt out over the ranks, each solving its own alone —: a
    failing file is reported in one line and skipped; returns the number that failed.

    An internal error (a bug, not bad input) stops the files of its rank, as it stops a run on one rank; the other
    ranks finish theirs, all meet in the closing ``allgather`` (never left waiting), and the error is raised there
    (its traceback, exit status 1)."""
    from mpi4py import MPI
    from ..errors import InputError
    comm = MPI.COMM_WORLD
    if comm.size > 1 and _needs_firedrake(chooser, args):
        start_firedrake()                              # on every rank at once: starting PETSc is collective
    failed, restored, bug, t0 = [], 0, None, time.perf_counter()
    for i, job in enumerate(jobs, start=1):
        if (i - 1) % comm.size != comm.rank:
            continue
        try:
            _one(job, chooser, args, single=False, label=f"[{i}/{len(jobs)}] ", own_rank=comm.size > 1)
            restored += 1
        except InputError as e:
            failed.append(job[0])
            print(f"fem-crossdiff denoise: error: {e}", file=sys.stderr, flush=True)
        except Exception as e:
            if comm.size == 1:
                raise
            bug = (e, job[0])
            break
    parts = comm.allgather((failed, restored, None if bug is None else bug[1]))
    failed = [f for part, _, _ in parts for f in part]
    stopped = [(rank, where) for rank, (_, _, where) in enumerate(parts) if where is not None]
    say(f"{sum(n for _, n, _ in parts)} of {len(jobs)} image(s) restored in {time.perf_counter() - t0:.1f} s"
        + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else "")
        + "".join(f"; rank {rank} stopped by an internal error at {where}" for rank, where in stopped))
    if bug is not None:
        raise bug[0]
    return min(len(failed), 125)
