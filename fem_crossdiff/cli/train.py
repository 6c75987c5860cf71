"""``fem-crossdiff train``: learn a model from (clean, noisy) patches of the bundled training pictures, of the user's
clean images (noise synthesised), of synthetic dead-leaves images (``--synthetic``) or of real noisy/clean pairs,
optionally choosing the iterate best on validation images (see ``fem_crossdiff/learned/README.md``, "Training on
your own images"), by full-batch L-BFGS-B or by Adam on minibatches of patches drawn afresh each epoch ("Stochastic
training")."""
from ..learning.settings import ADAM_DEFAULTS, LR_SCHEDULES, MISFITS, OBJECTIVES, OPTIMISERS
from ..learning.stability import STABILITIES
from ..model.base import SCHEME_NAMES
from .common import checkpoints_option, say

NAME, HELP = "train", "learn a cross-diffusion model from (clean, noisy) pairs"


def add_parser(sub):
    s = sub.add_parser(NAME, help=HELP)
    s.add_argument("--out", required=True, help="model JSON to write (never overwritten)")
    s.add_argument("--images", nargs="+", metavar="IMAGES",
                   help="clean training images: files, folders (their image files), globs, or bundled scikit-image "
                        "names (default: all non-test bundled pictures); noise is synthesised per --noise/--sigma")
    s.add_argument("--pairs", nargs=2, metavar=("NOISY", "CLEAN"),
                   help="train on real noisy/clean pairs instead (no noise synthesised): two folders matched by file "
                        "name (without suffix), or two files/globs matched in sorted order")
    s.add_argument("--synthetic", type=int, metavar="N",
                   help="add N synthetic dead-leaves images (random occluding shapes of power-law sizes, shaded and "
                        "textured; side max(2×--patch, 128), seeds from --seed) to the training images")
    s.add_argument("--synthetic-only", action="store_true",
                   help="train on the --synthetic N dead-leaves images alone (no --images; the bundled pictures "
                        "are not used)")
    s.add_argument("--val", nargs="+", metavar="IMAGES",
                   help="clean validation images (as --images; noise synthesised with a fixed seed): the model saved "
                        "is the iterate best on them")
    s.add_argument("--val-fraction", type=float, metavar="F",
                   help="hold out this share of the training images (or pairs), chosen by --seed, for validation "
                        "instead of --val")
    s.add_argument("--sigma", type=float, default=25.0, help="noise level, 0-255 scale (default 25)")
    s.add_argument("--noise", choices=["gaussian", "speckle"], default="gaussian",
                   help="the noise to remove (default gaussian; speckle: multiplicative Gamma noise of --looks)")
    s.add_argument("--looks", type=float, default=10.0, help="--noise speckle: equivalent number of looks "
                                                             "(default 10)")
    s.add_argument("--colour", action="store_true", help="train a colour model's chroma on colour patches "
                                                         "(start: --init, else the grey models' luma for σ/√3)")
    s.add_argument("--patch", type=int, default=64, help="training patch size in pixels (default 64)")
    s.add_argument("--per-image", type=int, default=2, help="patches per image (default 2)")
    s.add_argument("--stages", type=int, default=3, help="stages: parameter sets, each for an equal share of the "
                                                         "steps (default 3)")
    s.add_argument("--steps", type=int, default=12, help="time steps to --time (default 12)")
    s.add_argument("--time", type=float, default=2.0, help="final time T, pixel² units (default 2)")
    s.add_argument("--centres", type=int, default=16, help="RBF centres per influence function (default 16)")
    s.add_argument("--maxiter", type=int, help="L-BFGS-B iterations at most (default 100); the time per iteration "
                                               "is estimated after the first")
    s.add_argument("--optimiser", choices=OPTIMISERS, default="lbfgsb",
                   help="lbfgsb: full-batch L-BFGS-B on a fixed set of patches (default); adam: projected Adam on "
                        "minibatches of patches drawn afresh each epoch (new crops, turns, flips and noise)")
    s.add_argument("--epochs", type=int, metavar="E",
                   help=f"--optimiser adam: epochs in all, a resumed run's included (default {ADAM_DEFAULTS['epochs']}"
                        "); each epoch takes --per-image new patches of every image")
    s.add_argument("--batch", type=int, metavar="B",
                   help=f"--optimiser adam: patches per minibatch, one Adam step each (default "
                        f"{ADAM_DEFAULTS['batch']})")
    s.add_argument("--lr", type=float, metavar="ETA",
                   help=f"--optimiser adam: step size, about how far each parameter moves per step, in its own units "
                        f"(with --rescale: relative to its start) (default {ADAM_DEFAULTS['lr']:g})")
    s.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help=f"--optimiser adam: step size over the run: constant, or cosine from --lr down to 0 over "
                        f"--epochs (default {ADAM_DEFAULTS['lr_schedule']})")
    s.add_argument("--stability", choices=STABILITIES, default="box",
                   help="box: every iterate in the parameters' box, which certifies ellipticity (default); "
                        "augmented-lagrangian: the ellipticity certificate of every stage kept >= --stability-eps as "
                        "a constraint with multipliers (a wider box; the built-in family only), the model saved "
                        "feasible")
    s.add_argument("--stability-eps", type=float, metavar="EPS",
                   help="--stability augmented-lagrangian: the certificate's least value, 0 < EPS <= 0.02 (default "
                        "5e-5, the margin the box guarantees)")
    s.add_argument("--patience", type=int, metavar="K",
                   help="stop when the validation loss has not improved for K epochs (Adam) or K accepted iterates "
                        "(L-BFGS-B); needs --val or --val-fraction (default: no early stop)")
    s.add_argument("--seed", type=int, default=0, help="random seed of the patches and their noise (default 0)")
    s.add_argument("--misfit", choices=MISFITS, default="L2",
                   help="L2: exact L2 norm of the Q1 error (default); pixels: mean squared pixel error")
    s.add_argument("--objective", choices=OBJECTIVES, default="mse",
                   help="mse: mean squared error over the patches (default); psnr: mean PSNR")
    s.add_argument("--modulation", type=int, default=15, metavar="N",
                   help="multiply g11(|grad u|) by h11(v) with N RBF centres, starting from h11 = 1 (default 15; "
                        "0: none; a model given to --init keeps its own h11)")
    s.add_argument("--psi", type=int, default=0, metavar="N",
                   help="add the reaction psi(v) to the u-equation, N RBF centres with signed weights, starting from "
                        "psi = 0 (default 0: none; a model given to --init keeps its own psi)")
    s.add_argument("--refine", type=int, nargs="+", default=[0], metavar="R",
                   help="mesh refinement level(s) to train on (default 0, the pixel mesh; e.g. 0 1: the mean loss "
                        "on the pixel mesh and on the mesh refined once, for resolution-consistent models)")
    s.add_argument("--checkpoints", type=checkpoints_option, default="all", metavar="{tape,all,K}",
                   help="gradients by a reverse sweep keeping all states (default: fastest), or only K snapshots "
                        "(binomial checkpointing: bounded memory for long horizons), or by pyadjoint's tape; "
                        "the same gradients")
    s.add_argument("--scheme", choices=SCHEME_NAMES,
                   help="time scheme to train for (default: --init's or --model's; a new model: split, the O(N) "
                        "line solves on the grid)")
    s.add_argument("--rescale", action="store_true",
                   help="let L-BFGS-B work on the parameters divided by their starting sizes (at least 1%% of their "
                        "box), so that parameters of very different scales move alike (default: as they are)")
    s.add_argument("--resume", action="store_true", help="continue from OUT.checkpoint")
    s.add_argument("--init", help="start from this learned model JSON instead of the default initial model")
    s.add_argument("--model", help="train a user model instead: its definition path/to/file.py:Class (its "
                                   "parameters in their box; --stages/--steps/--time/--centres/--modulation/--psi "
                                   "do not apply)")
    s.set_defaults(func=run, firedrake=True)


class TimeLeft:
    """The training's ``progress`` hook: after the first iteration of a run, its time per iteration and the time the
    rest may take (at most ``maxiter`` iterations; L-BFGS-B may stop earlier), said once."""

    def __init__(self, out=say):
        self.out, self.said = out, False

    def __call__(self, entry, maxiter):
        if self.said:
            return
        self.said = True
        per = entry["elapsed"] / entry["iteration"]
        left = max(maxiter - entry["iteration"], 0) * per
        rest = f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"
        self.out(f"about {per:.1f} s per iteration: ~{rest} more for --maxiter {maxiter} (at most; L-BFGS-B may "
                 "stop earlier)")


def run(args):
    from ..learning.training import train
    train(args.out, images=args.images, sigma255=args.sigma, patch=args.patch, per_image=args.per_image,
          stages=args.stages, steps=args.steps, time_=args.time, centres=args.centres, maxiter=args.maxiter,
          resume=args.resume, seed=args.seed, init=args.init, misfit=args.misfit, objective=args.objective,
          modulation=args.modulation, psi=args.psi, checkpoints=args.checkpoints, refine=args.refine,
          command=args.command_line, model=args.model, noise=args.noise, looks=args.looks, colour=args.colour,
          scheme=args.scheme, rescale=args.rescale, pairs=args.pairs, val=args.val,
          val_fraction=args.val_fraction, optimiser=args.optimiser, epochs=args.epochs, batch=args.batch,
          lr=args.lr, lr_schedule=args.lr_schedule, synthetic=args.synthetic, synthetic_only=args.synthetic_only,
          stability=args.stability, stability_eps=args.stability_eps, patience=args.patience,
          progress=TimeLeft() if args.optimiser == "lbfgsb" else None)       # Adam's epoch lines carry an ETA

