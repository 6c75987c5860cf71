"""``fem-crossdiff denoise IN OUT``: one image through a model; every output is checked before any work."""
import os
import sys
import time

from .common import ProgressBar, param_option, rank0, say

NAME, HELP = "denoise", "denoise an image file"


def add_parser(sub):
    s = sub.add_parser(NAME, help=HELP)
    s.add_argument("input", help="PNG/JPEG/TIFF/NPY image (colour is converted to grey)")
    s.add_argument("output", help="output .png, .tif or .npy at the input's depth (8/16-bit or float; written "
                                  "atomically, never over the input)")
    s.add_argument("--model", default="nonlinear-complex", help="model name or model .json (default: %(default)s)")
    s.add_argument("--time", type=float, help="final time T (pixel² units; default: the model's)")
    s.add_argument("--steps", type=int, help="number of time steps (default: the model's)")
    s.add_argument("--param", type=param_option, action="append", metavar="KEY=VALUE", help="model parameter")
    s.add_argument("--scheme", default="semi-implicit", choices=["semi-implicit", "implicit", "crank-nicolson"])
    s.add_argument("--refine", type=int, default=0, help="solve on a mesh refined this many times (default 0)")
    s.add_argument("--edges", help="also write |v| (the edge indicator), normalised, to this file")
    s.add_argument("--force", action="store_true", help="replace existing output files (never the input)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run, firedrake=True)


def run(args):
    import numpy as np
    from ..errors import InputError
    from ..fem import denoise
    from ..imaging.files import WRITE_SUFFIXES, read_image, write_image
    from ..safeio import check_outputs
    check_outputs([args.output, args.edges], inputs=[args.input], force=args.force, suffixes=WRITE_SUFFIXES)
    if args.time is not None and not args.time > 0:
        raise InputError(f"--time must be > 0, got {args.time}")
    img, depth = read_image(args.input, with_depth=True)
    params = dict(args.param or [])
    for key in ("time", "steps"):                      # listed by `models` as parameters: the same as --time/--steps
        if key in params:
            given = getattr(args, key)
            if given is not None and given != params[key]:
                raise InputError(f"--param {key}={params[key]:g} contradicts --{key} {given:g}; give one")
            setattr(args, key, params.pop(key))
    t0 = time.perf_counter()
    u, v = denoise(img, args.model, time=args.time, steps=args.steps, refine=args.refine, scheme=args.scheme,
                   return_v=True, callback=None if args.quiet else ProgressBar(os.path.basename(args.input)),
                   **params)
    if rank0():
        notes = [write_image(args.output, u, replace=args.force, depth=depth)]
        if args.edges:
            notes.append(write_image(args.edges, np.abs(v) / max(np.abs(v).max(), 1e-300), replace=args.force,
                                     depth=depth))
        for note in filter(None, notes):
            print(f"fem-crossdiff denoise: note: {note}", file=sys.stderr)
    say(f"{args.input} -> {args.output}  ({img.shape[0]}×{img.shape[1]}, model {args.model}, "
        f"{time.perf_counter() - t0:.2f} s)")
