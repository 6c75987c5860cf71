"""``fem-crossdiff adjoint-study`` and ``fem-crossdiff refinement-study``: the verification studies."""
import os
import time as _time

from ..errors import check_counts
from ..studies.cases import OUT, QUICK_LEVELS, STUDY_COUNTS, STUDY_LEVELS, STUDY_MODELS
from .common import say


def add_parser(sub):
    s = sub.add_parser("adjoint-study", help="continuous vs discrete adjoint vs finite differences under refinement")
    s.add_argument("--model", default="learned-v", choices=STUDY_MODELS,
                   help="the model whose gradient is compared (default learned-v: a two-stage learned-type model)")
    s.add_argument("--image", default="coins", help="bundled picture to crop (default coins)")
    s.add_argument("--size", type=int, default=32, help="crop size in pixels (default 32)")
    s.add_argument("--sigma", type=float, default=25.0, help="noise level, 0-255 scale (default 25)")
    for name, (least, text) in STUDY_COUNTS.items():
        quick = f"; --quick: {QUICK_LEVELS[name]}" if name in QUICK_LEVELS else ""
        s.add_argument("--" + name.replace("_", "-"), type=int,
                       help=f"{text} (default {STUDY_LEVELS[name]}{quick}; at least {least})")
    s.add_argument("--state-term", default="explicit", choices=["explicit", "implicit"],
                   help="D'(w) term of the implicit-Euler adjoint (default explicit)")
    s.add_argument("--quick", action="store_true", help="16x16 crop, fewer levels (unless given)")
    s.add_argument("--out", default=OUT, help="folder of the figure and JSON (default %(default)s)")
    s.set_defaults(func=run_adjoint_study, firedrake=True)

    s = sub.add_parser("refinement-study", help="errors and observed orders in h and dt (MMS, real image, J, grad J)")
    s.add_argument("--quick", action="store_true", help="fewer levels")
    s.add_argument("--image", default="coins", help="bundled picture for the real-image runs (default coins)")
    s.add_argument("--no-roi", action="store_true", help="skip the gmsh region-of-interest run")
    s.add_argument("--out", default=OUT, help="folder of the figures (default %(default)s)")
    s.set_defaults(func=run_refinement_study, firedrake=True)


def run_adjoint_study(args):
    from ..studies.adjoint import run_adjoint_study
    counts = {name: getattr(args, name) for name in STUDY_COUNTS if getattr(args, name) is not None}
    check_counts(**{name: (value, STUDY_COUNTS[name][0]) for name, value in counts.items()})
    run_adjoint_study(args.model, args.image, args.size, args.sigma, out=args.out, quick=args.quick,
                      state_term=args.state_term, **counts)


def run_refinement_study(args):
    from ..studies.plots import plot_refinement_study
    from ..studies.refinement import refinement_study
    from ..studies.roi import roi_denoise
    os.makedirs(args.out, exist_ok=True)
    t0 = _time.perf_counter()
    series = refinement_study(quick=args.quick, image=args.image)
    png = plot_refinement_study(series, os.path.join(args.out, "refinement_study.png"))
    if not args.no_roi:
        roi_denoise(out=args.out, compare_full=not args.quick)
    say(f"\nwrote {png}  ({_time.perf_counter() - t0:.0f} s)")

