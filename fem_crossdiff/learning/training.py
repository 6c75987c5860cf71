"""Training: L-BFGS-B with box bounds over :class:`~fem_crossdiff.learning.loss.DatasetLoss`, resumable from a file
written after every iteration (one whose fields are not what a run writes is refused by name), the model saved with
its provenance (command, settings, the data, losses, chain of runs).

The data: the bundled pictures, the user's clean images (noise synthesised), synthetic dead-leaves images, or real
noisy/clean pairs (:mod:`.datasets`, :mod:`.pairs`). With a validation set (``val``: clean images, noise
synthesised with the fixed seed :data:`~.datasets.VAL_SEED`; or ``val_fraction``: that share of the training
images held out, chosen by ``seed``) the validation loss is evaluated at every iterate L-BFGS-B accepts, and the
iterate best on validation is the model saved: the optimiser minimises the training loss, validation chooses where
along its path to stop.

Stochastic training (``optimiser="adam"``): projected Adam (:mod:`.adam`) over ``epochs``; every epoch draws its
patches afresh (new crops, quarter turns and flips, new noise: :mod:`.pairs`, deterministic in (seed, epoch)), shuffles
them and takes one Adam step per minibatch of ``batch`` patches, each on a loss object of its own (constructing one
costs a fraction of a millisecond on the split path, ~0.06 s against a gradient's ~0.5 s for eight 48² patches on
the finite-element path: no re-pointing is needed). Every iterate is clipped into the box,
so the certificate holds throughout. After each epoch the validation loss is evaluated, the state (model, Adam's
moments and step count, the epoch: the random state is the epoch number, since each epoch's patches and order are
drawn from (seed, epoch)) is written to the resume file and the training curve to ``OUT.curve.csv``; the model saved
is the epoch best on validation, or the last one. Memory holds one epoch's patches (and the validation set).

Stability (``stability``): every iterate in the box (default), or the certificate of every stage kept >= eps by an
augmented Lagrangian (:mod:`.stability`): rounds of inner minimisation by either optimiser, each followed by the
update of the multipliers and the penalty, the model saved feasible. Early stopping (``patience``): the run ends
when validation has not improved for that many epochs or accepted iterates."""
import fcntl
import json
import os
import sys
import time

import numpy as np
from mpi4py import MPI
from scipy.optimize import minimize

from ..errors import InputError, ModelError, check_counts
from ..fem.certify import certify, sampled_ellipticity
from ..learned import blind_model
from ..model import (ColourModel, CrossDiffusionModel, UFLModel, load_model, make_model, model_from_dict,
                     save_model)
from ..model.base import check_scheme
from ..model.ufl_model import definition_spec
from ..resources import peak_memory_mb
from ..safeio import atomic_write, check_outputs
from .adam import Adam, step_size
from .loss import DatasetLoss, MultiResolutionLoss
from .settings import ADAM_DEFAULTS, LR_SCHEDULES, OPTIMISERS
from .datasets import VAL_SEED, Picture, Synthetic, held_out, image_sources, pair_sources, synthetic_sources
from .pairs import pair_patches, training_pairs
from .split_loss import SplitDatasetLoss, uses_split_path
from .stability import (AL_INNER, AL_TOL, STABILITIES, AugmentedLagrangian, SmoothCertificate, al_bounds, anchor,
                        check_eps, feasible_point, refuse_model)
from .parametrisation import bounds, flat_names, learned_template, pack, unpack, with_modulation, with_psi

__all__ = ["train", "ResumeFile", "RunLock"]


class RunLock:
    """``OUT.lock``, held (``flock``) by the training run that writes ``OUT`` and ``OUT.checkpoint``: a second run
    on the same ``--out`` is refused at once instead of sharing (and overwriting) the first one's files. Taken on
    rank 0, the outcome shared with every rank; the file is removed when the run ends."""

    def __init__(self, out, comm):
        self.path, self.comm, self.handle = out + ".lock", comm, None
        ok, message = True, None
        if comm.rank == 0:
            try:
                self.handle = open(self.path, "a")
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                ok, message = False, (f"{out}: another training run is writing it (it holds {self.path}); wait for "
                                      "it to finish or choose another --out")
            except OSError as e:
                ok, message = False, f"{self.path}: cannot take the run's lock ({e.strerror})"
            if not ok and self.handle is not None:
                self.handle.close()
                self.handle = None
        ok, message = comm.bcast((ok, message))
        if not ok:
            raise InputError(message)

    def release(self):
        if self.handle is not None:
            try:
                os.remove(self.path)
            except OSError:
                pass
            self.handle.close()
            self.handle = None


class ResumeFile:
    """The state of a training run (settings, current model, history), written atomically after every optimiser
    iteration (Adam: every epoch) to ``OUT.checkpoint``, from which ``--resume`` continues. An Adam run's state also
    holds the field ``"adam"``: the moments ``m``, ``v``, the step count ``t``, the iterate ``y`` in the optimiser's
    units, those units ``size`` and the loss ``scale`` (:meth:`adam_state`); the epoch is the history's length. Files
    of L-BFGS-B runs have no such field and are read as before."""

    def __init__(self, path):
        self.path = path

    def save(self, state):
        def write(tmp):
            with open(tmp, "w") as fh:
                json.dump(state, fh)

        atomic_write(self.path, write, ".json", replace=True)

    def load(self):
        if not os.path.exists(self.path):
            raise InputError(f"{self.path}: no training state to resume from")
        try:
            with open(self.path) as fh:
                state = json.load(fh)
        except (OSError, ValueError) as e:
            raise InputError(f"{self.path}: not a readable training state ({e})") from None
        if not (isinstance(state, dict) and {"settings", "model", "history", "elapsed", "initial_loss"} <= set(state)
                and isinstance(state["history"], list) and state["history"]):
            raise InputError(f"{self.path}: not a complete training state (settings, model, history)")
        self.check_number(state["elapsed"], '"elapsed"', least=0.0)
        self.check_number(state["initial_loss"], '"initial_loss"')
        for k, entry in enumerate(state["history"]):
            if not isinstance(entry, dict):
                raise InputError(f"{self.path}: history entry {k + 1} is {entry!r}; expected a JSON object")
            for key in ("loss", "elapsed"):
                if key not in entry:
                    raise InputError(f"{self.path}: history entry {k + 1} has no \"{key}\"")
                self.check_number(entry[key], f'"{key}" of history entry {k + 1}')
        return state

    def adam_state(self, state, n):
        """The ``"adam"`` field of a loaded ``state`` of ``n`` parameters, checked: ``m``, ``v`` (>= 0), ``y``,
        ``size`` (> 0) as arrays of ``n`` finite numbers, ``t`` an integer >= 0, ``scale`` a finite number >= 0; a
        field missing or malformed is refused by name."""
        adam = state.get("adam")
        if not isinstance(adam, dict):
            raise InputError(f"{self.path}: not a complete training state (no Adam moments)")
        out = {}
        for key, least in (("m", None), ("v", 0.0), ("y", None), ("size", 0.0)):
            try:
                v = np.asarray(adam[key], dtype=float)
            except (KeyError, TypeError, ValueError):
                v = None
            if (v is None or v.shape != (n,) or not np.all(np.isfinite(v))
                    or (least is not None and not np.all(v > least if key == "size" else v >= least))):
                bound = "" if least is None else " > 0" if key == "size" else " >= 0"
                raise InputError(f"{self.path}: field \"{key}\" of \"adam\" is not {n} finite numbers{bound} (the "
                                 "training state is corrupt: restore it, or remove it to start afresh)")
            out[key] = v
        t = adam.get("t")
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise InputError(f"{self.path}: field \"t\" of \"adam\" is {t!r}; expected an integer >= 0")
        self.check_number(adam.get("scale"), '"scale" of "adam"', least=0.0)
        return dict(out, t=t, scale=float(adam["scale"]))

    def check_number(self, value, field, least=None):
        """Refuse a field of the training state that is not a finite number (``>= least``), naming the file."""
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value)
                or (least is not None and value < least)):
            expected = "a finite number" + ("" if least is None else f" >= {least:g}")
            raise InputError(f"{self.path}: field {field} is {value!r}; expected {expected} (the training state "
                             "is corrupt: restore it, or remove it to start afresh)")


def colour_start(sigma255):
    r"""The start of a colour training at ``sigma255`` without ``init``: the shipped grey models' choice for the
    luma's noise :math:`\sigma/\sqrt3` (:func:`~fem_crossdiff.learned.blind_model`) and the default chroma block
    (:class:`~fem_crossdiff.model.ColourModel`)."""
    luma = blind_model(sigma255 / np.sqrt(3))
    return ColourModel(luma, name="colour", time=luma.time, steps=luma.steps,
                       description=f"colour start: luma {luma.description}")


def train(out, *, images=None, sigma255=25.0, patch=64, per_image=2, stages=3, steps=12, time_=2.0,
          centres=16, maxiter=None, resume=False, seed=0, refine=0, init=None, misfit="L2", objective="mse",
          modulation=15, psi=0, checkpoints="all", log=print, command=None, model=None, noise="gaussian",
          looks=10.0, colour=False, scheme=None, rescale=False, progress=None, pairs=None, val=None,
          val_fraction=None, optimiser="lbfgsb", epochs=None, batch=None, lr=None, lr_schedule=None, synthetic=None,
          synthetic_only=False, stability="box", stability_eps=None, patience=None):
    r"""Learn a model and save it to ``out`` (JSON). Returns (model, history). ``misfit``, ``objective``: see
    :data:`~.settings.MISFITS`, :data:`~.settings.OBJECTIVES`; ``modulation``: RBF centres of the factor
    :math:`h_{11}(v)` of the :math:`u`-diffusivity (0: none; see :func:`with_modulation`; an ``init`` model that
    has one keeps it);
    ``checkpoints``: how gradients are computed (:class:`DatasetLoss`; default ``"all"``, the reverse sweep
    keeping every state: the same gradient as pyadjoint's tape (None) in less time and memory; not a setting of
    the model: a run may resume with another value).

    ``refine``: train on the image mesh refined this many times, or on several levels at once (a list: the
    mean loss, :class:`MultiResolutionLoss`).

    ``init``: start from this learned model (JSON path) instead of :func:`learned_template`; its stages, time
    and steps are used (``stages``, ``steps``, ``time_``, ``centres`` are then ignored).

    ``model``: train a user model instead (a :class:`~fem_crossdiff.model.UFLModel`, or its definition
    ``path/to/file.py:Class`` / registered name): its parameters within its box, on the UFL path; before the first
    iteration its box is sampled for ellipticity (:func:`~fem_crossdiff.fem.certify.sampled_ellipticity`, over the
    states the training patches reach), so that every iterate is elliptic. ``modulation`` and ``psi`` belong to the
    built-in family and are ignored.

    ``noise="speckle"``: train for multiplicative Gamma noise of ``looks`` (``sigma255`` unused). ``colour``: train a
    colour model (:class:`~fem_crossdiff.model.ColourModel`) on colour patches — the chroma block only, the luma
    block is the grey model for :math:`\sigma/\sqrt3`; it starts from ``model`` or ``init`` if given, else from
    :func:`colour_start`.

    ``scheme``: the time scheme to train for (recorded in the model: it runs with it by default); None keeps the
    scheme of ``init`` or ``model``, and a new template trains for ``"split"``. The built-in family and colour
    models train for the split scheme on its grid arrays (:class:`~.split_loss.SplitDatasetLoss`, the exact gradient
    by the split steps' adjoint, which keeps every state: ``checkpoints`` other than ``"all"`` is refused), any other
    case on the finite-element path (:class:`DatasetLoss`).

    ``rescale``: L-BFGS-B works on :math:`y = x/s`, :math:`s_i = \max(|x_{0,i}|, 0.01\,(b_i - a_i))` (:math:`x_0` the
    start of this run, :math:`[a_i, b_i]` the box), so that parameters of very different sizes (a chroma diffusion
    of 10, an edge scale of 0.05) move alike; the box and the minimiser are the same.

    ``images``: files, folders, globs of clean images or bundled names (:func:`~.datasets.image_sources`; default:
    the bundled training pictures); ``pairs``: ``(NOISY, CLEAN)``, real pairs instead (:func:`~.datasets.pair_sources`;
    no noise synthesised). ``val``: clean validation images (as ``images``), or ``val_fraction``: the share of the
    training images (or pairs) held out; the saved model is then the iterate best on validation, and the provenance
    records its train and val PSNR and the files of both sets.

    ``synthetic``: add this many dead-leaves images (:func:`~fem_crossdiff.imaging.synthetic.dead_leaves`, side
    ``max(2 * patch, 128)``, seeds derived from ``seed``: :func:`~.datasets.synthetic_sources`) to the training
    images, clean images like any other (noise synthesised, cropped afresh each Adam epoch, held out by
    ``val_fraction`` like any image); ``synthetic_only``: train on them alone (``images`` not given). Not with
    ``pairs``. The provenance names each, ``dead_leaves(size=..., seed=...)``.

    ``optimiser``: ``"lbfgsb"`` (default: scipy's L-BFGS-B on the fixed patches, at most ``maxiter`` iterations,
    default 100) or ``"adam"``: projected Adam (:mod:`.adam`) for ``epochs`` epochs (the total, a resumed run
    included), each on patches drawn afresh (``per_image`` of every image), in minibatches of ``batch`` patches, with
    step size ``lr`` (in the units of the parameters, of :math:`y` with ``rescale``) and ``lr_schedule``
    (:data:`~.settings.LR_SCHEDULES`; defaults :data:`~.settings.ADAM_DEFAULTS`); the curve (epoch, train loss,
    val loss, seconds) goes to ``OUT.curve.csv`` (and a plot to ``OUT.curve.png``). Adam's options with L-BFGS-B,
    and ``maxiter`` with Adam, are refused.

    ``stability``: ``"box"`` (default: every iterate in the box of :data:`~.parametrisation.BOUNDS`, certified by
    it) or ``"augmented-lagrangian"``: the certificate of every stage kept :math:`\ge` ``stability_eps`` (default
    :data:`~.stability.BOX_MARGIN`, the box's own margin) as a constraint with multipliers, within a wider box
    (:mod:`.stability`, the maths there; the built-in family only): an outer update of the multipliers and penalty
    every :data:`~.stability.AL_INNER` L-BFGS-B iterations or every Adam epoch, the model saved feasible (the last
    iterate backtracked towards a feasible one if it misses, said in a line), only feasible iterates chosen on
    validation; the log, the history and the provenance (``stability``) record the multipliers ``mu``, the penalty
    ``r`` and the certificate.

    ``patience``: with validation only, stop when the validation loss has not improved for this many epochs (Adam)
    or accepted iterates (L-BFGS-B); said in a line, recorded as ``stopped_early_at`` in the provenance.

    ``progress``: called on rank 0 after every iteration (Adam: every epoch) with its history entry (``iteration``,
    ``elapsed`` seconds since the run began, resumed runs included) and ``maxiter`` (Adam: ``epochs``; the command
    line prints an estimate of the time left from it)."""
    rank0 = MPI.COMM_WORLD.rank == 0
    log = log if rank0 else (lambda *a, **k: None)
    if not out.endswith(".json"):
        raise InputError(f"--out {out}: the model file must end in .json")
    if isinstance(model, str):
        model = make_model(model)
    user = model is not None
    if colour and model is not None and getattr(model, "channels", 1) != 3:
        raise InputError(f"--colour trains a colour model; '{model.name}' restores grey images")
    if user and init:
        raise InputError("give either a user model to train (--model) or a model file to continue (--init)")
    if pairs is not None and images:
        raise InputError("give either clean images (--images) or noisy/clean pairs (--pairs), not both")
    if val and val_fraction is not None:
        raise InputError("give either validation images (--val) or a share held out (--val-fraction), not both")
    if val and pairs is not None:
        raise InputError("--val takes clean images with synthesised noise; with --pairs hold out a share of the pairs "
                         "(--val-fraction)")
    check_counts(synthetic=(synthetic, 1))
    if synthetic_only and synthetic is None:
        raise InputError("--synthetic-only: give the number of dead-leaves images with --synthetic N")
    if synthetic_only and images:
        raise InputError("--synthetic-only trains on dead-leaves images alone; drop --images (or drop "
                         "--synthetic-only to add them to the images)")
    if synthetic is not None and pairs is not None:
        raise InputError(f"--synthetic {synthetic}: dead-leaves images are clean images with synthesised noise; "
                         "they do not mix with real noisy/clean pairs (--pairs)")
    if optimiser not in OPTIMISERS:
        raise InputError(f"--optimiser {optimiser}: expected one of {', '.join(OPTIMISERS)}")
    adam_options = {"--epochs": epochs, "--batch": batch, "--lr": lr, "--lr-schedule": lr_schedule}
    if optimiser == "lbfgsb":
        given = [name for name, value in adam_options.items() if value is not None]
        if given:
            raise InputError(f"{', '.join(given)}: options of --optimiser adam (this run uses L-BFGS-B, the default: "
                             "give --optimiser adam, or --maxiter for L-BFGS-B)")
        maxiter = 100 if maxiter is None else maxiter
    else:
        if maxiter is not None:
            raise InputError(f"--maxiter {maxiter}: counts L-BFGS-B iterations; with --optimiser adam give --epochs")
        epochs, batch, lr, lr_schedule = (ADAM_DEFAULTS[k] if v is None else v for k, v in
                                          dict(epochs=epochs, batch=batch, lr=lr, lr_schedule=lr_schedule).items())
        check_counts(epochs=(epochs, 1), batch=(batch, 1))
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (np.isfinite(lr) and lr > 0):
            raise InputError(f"--lr {lr}: expected a step size > 0")
        if lr_schedule not in LR_SCHEDULES:
            raise InputError(f"--lr-schedule {lr_schedule}: expected one of {', '.join(LR_SCHEDULES)}")
    adam = optimiser == "adam"
    if stability not in STABILITIES:
        raise InputError(f"--stability {stability}: expected one of {', '.join(STABILITIES)}")
    if stability == "box" and stability_eps is not None:
        raise InputError(f"--stability-eps {stability_eps}: the margin of --stability augmented-lagrangian (the box "
                         "has its own); add --stability augmented-lagrangian or drop it")
    constrained = stability == "augmented-lagrangian"
    eps = check_eps(stability_eps) if constrained else None
    if patience is not None:
        check_counts(patience=(patience, 1))
        if not val and val_fraction is None:
            raise InputError(f"--patience {patience}: stops when the validation loss stops improving; give "
                             "validation images (--val) or a share held out (--val-fraction)")
    check_counts(maxiter=(maxiter, 1), modulation=(modulation, 0), psi=(psi, 0),  # --patch, --per-image: training_pairs
                 **({} if init or user else dict(stages=(stages, 1), steps=(steps, 1), centres=(centres, 1))))
    if not init and not user and stages > steps:
        raise InputError(f"--stages {stages} exceeds --steps {steps}: every stage needs at least one time step")
    ckpt = ResumeFile(out + ".checkpoint")
    levels = list(np.atleast_1d(refine))
    if not all(int(r) == r and r >= 0 for r in levels) or len(set(levels)) != len(levels):
        raise InputError(f"--refine {refine}: expected distinct refinement levels >= 0")
    levels = [int(r) for r in levels]
    refine = levels[0] if len(levels) == 1 else levels          # as recorded in the settings: [0] is plain 0
    settings = dict(images=list(images) if images else None, sigma=sigma255, patch=patch, per_image=per_image,
                    stages=stages, steps=steps, time=time_, centres=centres, seed=seed, refine=refine, init=init,
                    misfit=misfit, objective=objective, modulation=modulation)
    if psi:
        settings["psi"] = psi
    if pairs is not None:
        settings.update(pairs=[os.fspath(p) for p in pairs], sigma=sigma255 if colour else None)
    if val:
        settings["val"] = [os.fspath(v) for v in val]
    if val_fraction is not None:
        settings["val_fraction"] = val_fraction
    if synthetic is not None:
        settings["synthetic"] = int(synthetic)
    if synthetic_only:
        settings["synthetic_only"] = True
    if noise != "gaussian":
        settings.update(noise=noise, looks=looks, sigma=None)
    if colour:
        settings["colour"] = True
    if scheme is not None:
        settings["scheme"] = check_scheme(scheme, "--scheme")
    if rescale:
        settings["rescale"] = True
    if constrained:
        settings["stability"] = dict(name=stability, eps=eps)
    if patience is not None:
        settings["patience"] = int(patience)
    if adam:                           # not --epochs: a resumed run may go on to more epochs
        settings["optimiser"] = dict(name="adam", batch=batch, lr=float(lr), lr_schedule=lr_schedule)
    if user:
        spec = (definition_spec(type(model), os.path.dirname(os.path.abspath(out))) if isinstance(model, UFLModel)
                else model.name)
        settings.update(model=spec, modulation=0,
                        stages=len(model.stages), steps=model.steps, time=model.time, centres=None)
    if constrained and colour:
        raise InputError("--stability augmented-lagrangian: needs the built-in family's certificate "
                         "(differentiable); a colour model's learned chroma enters it only through d_c > 0, a box "
                         "already: use --stability box")
    if constrained and user:
        refuse_model(model)
    if os.path.exists(out):
        raise InputError(f"{out}: exists; choose another --out or remove it (it is never overwritten; to train a "
                         "finished model further, start a new run with --init)")
    check_outputs([out, ckpt.path], force=True, suffixes=(".json", ".checkpoint"))   # directory, writable
    # the data named: resolved (paths, folders, globs) before anything is written; read after the lock is taken
    if pairs is not None:
        sources = pair_sources(*pairs)
    else:
        sources = ([] if synthetic_only else image_sources(images, colour)) + synthetic_sources(synthetic or 0, seed,
                                                                                              patch)
    val_sources = None
    if val_fraction is not None:
        sources, val_sources = held_out(sources, val_fraction, seed)
    elif val:
        val_sources = image_sources(val, colour, "--val")
    lock = RunLock(out, MPI.COMM_WORLD)
    try:
        if not resume and os.path.exists(ckpt.path):
            raise InputError(f"{ckpt.path}: holds the progress of an earlier run; continue it with --resume (same "
                             "options), or remove it to start afresh")
        curve = out + ".curve.csv"
        for path in (curve, out + ".curve.png") if adam and not resume else ():
            if os.path.exists(path):
                raise InputError(f"{path}: exists (the curve of an earlier run?); remove it or choose another --out")
        history, t_used = [], 0.0

        def epoch_patches(epoch):
            return _patches(sources, pairs is not None, sigma255, patch, per_image, seed, colour, noise, looks,
                            epoch=epoch)
        data = epoch_patches(0 if adam else None)
        val_data = (_patches(val_sources, pairs is not None, sigma255, patch, per_image, VAL_SEED, colour, noise,
                             looks) if val_sources else None)
        start, init_provenance = _initial_model(init) if init else (None, None)
        if init and colour != (getattr(start, "channels", 1) == 3):
            kind = "grey" if colour else "colour"
            raise InputError(f"--init {init}: a {kind} model; {'give' if kind == 'colour' else 'drop'} --colour or "
                             f"start from a {'grey' if kind == 'colour' else 'colour'} model")
        if resume:
            state = ckpt.load()
            if state["settings"] != settings:
                raise InputError(f"{ckpt.path}: checkpoint was made with other settings {state['settings']}; "
                                 "rerun with the same options or without --resume")
            model = model_from_dict(state["model"], ckpt.path, os.path.dirname(os.path.abspath(out)), file=True)
            history, t_used = state["history"], state["elapsed"]
            if val_data:
                best_state = state.get("best")
                if not (isinstance(best_state, dict) and {"iteration", "val_loss", "model"} <= set(best_state)
                        and "initial_val_loss" in state):
                    raise InputError(f"{ckpt.path}: not a complete training state (no best iterate on validation)")
                ckpt.check_number(best_state["val_loss"], '"val_loss" of "best"')
                ckpt.check_number(state["initial_val_loss"], '"initial_val_loss"')
            log(f"resuming from {ckpt.path} at {'epoch' if adam else 'iteration'} {len(history)} "
                f"(loss {history[-1]['loss']:.6g})")
        elif colour and not user and not init:
            model = colour_start(sigma255)
        elif not user:
            model = start if init else learned_template(stages=stages, centres=centres, time=time_, steps=steps)
            if isinstance(model, CrossDiffusionModel):
                model = with_modulation(model, modulation) if modulation else model
                model = with_psi(model, psi) if psi else model
        if scheme is not None or not (init or user or resume):
            model = model.replace(scheme=scheme or "split")
        # the states the data can reach (u over the noisy patches' range): what ellipticity is sampled on
        seen = data + (val_data or [])
        data_range = (min(float(np.min(f)) for _, f in seen), max(float(np.max(f)) for _, f in seen))
        box_alpha = None                 # a user model without its own bound: the sampled minimum over its box
        if isinstance(model, UFLModel):
            alpha = box_alpha = sampled_ellipticity(model, box_samples=16, data_range=data_range)
            if not alpha > 0:
                raise ModelError(f"model '{model.name}': its box admits models that are not uniformly elliptic "
                                 f"(sampled eigenvalue {alpha:.3g} of D's symmetric part); narrow the box")
        if uses_split_path(model) and checkpoints != "all":
            given = "tape" if checkpoints is None else checkpoints
            raise InputError(f"--checkpoints {given}: this model trains for the split scheme, whose gradient is its "
                             "own adjoint keeping every state ('all'); the tape and the checkpointed sweep belong to "
                             "the finite-element schemes: drop --checkpoints, or add --scheme semi-implicit")

        def dataset_loss(patches):
            if uses_split_path(model):
                losses = [SplitDatasetLoss(model, patches, refine=r, misfit=misfit, objective=objective)
                          for r in levels]
            else:
                losses = [DatasetLoss(model, patches, refine=r, misfit=misfit, objective=objective,
                                      checkpoints=checkpoints) for r in levels]
            return losses[0] if len(losses) == 1 else MultiResolutionLoss(losses)

        loss = dataset_loss(data)
        val_loss = dataset_loss(val_data) if val_data else None
        if constrained:
            refuse_model(model)
        x0, box = pack(model), (al_bounds(model) if constrained else bounds(model))
        x0 = np.clip(x0, [b[0] for b in box], [b[1] for b in box])
        if isinstance(model, ColourModel):     # the luma block is the grey model for σ/√3: only chroma is learned
            frozen = set(model.luma.parameter_names)
            box = [(x, x) if name in frozen else b for x, b, name in zip(x0, box, flat_names(model))]
        J0 = loss.loss(x0)
        scale = abs(J0) if objective == "mse" else 1.0       # "psnr": J is in dB already
        lo, hi = np.array([b[0] for b in box]), np.array([b[1] for b in box])
        size = np.maximum(np.abs(x0), 0.01 * (hi - lo)) if rescale else np.ones_like(x0)
        size[size == 0] = 1.0                                  # a frozen parameter at 0
        saved = ckpt.adam_state(state, len(x0)) if adam and resume else None
        al = AugmentedLagrangian(SmoothCertificate(model), eps) if constrained else None
        if al is not None and resume:
            al.load(state.get("al"), f"{ckpt.path}: field \"al\"")

        def feasible(x):
            """Whether the model at ``x`` is certified: always in the box; with the augmented Lagrangian, its true
            certificate >= eps."""
            return al is None or model.with_stages(unpack(model, x)).certificate() >= eps

        def al_entry(entry):
            """The augmented Lagrangian's state into a history ``entry``, and the text the log line shows."""
            if al is None:
                return ""
            entry.update(mu=al.mu.tolist(), r=al.r)
            return f"  AL max mu {max(al.mu):.2e} r {al.r:.0e}"
        stopped = dict(at=None)
        if saved:                # Adam's units and gradient scale are those of the run's start: its moments use them
            size, scale = saved["size"], saved["scale"] or 1.0
        initial = state["initial_loss"] if resume else J0
        initial_val = None if val_loss is None else state["initial_val_loss"] if resume else val_loss.loss(x0)
        best = {}                        # with validation: the iterate best on it so far (0: the start)
        if resume and val_loss is not None:
            folder = os.path.dirname(os.path.abspath(out))
            best.update(state["best"], x=pack(model_from_dict(state["best"]["model"], ckpt.path, folder, file=True)))
        elif val_loss is not None:
            best.update(iteration=0, val_loss=initial_val, x=np.array(x0), feasible=feasible(x0),
                        model=model_dict(model.with_stages(unpack(model, x0)), out))
        t0 = time.perf_counter() - t_used
        last = {}

        def judge(entry, xk, current):
            """With validation: the loss of the iterate ``xk`` (``current`` its model) on it, into ``entry``, and the
            best so far kept; returns the text the progress line shows."""
            if val_loss is None:
                return ""
            Jv = val_loss.loss(xk)
            entry.update(val_loss=Jv, val_psnr=val_loss.psnr(Jv))
            if feasible(xk) and (Jv < best["val_loss"] or not best.get("feasible", True)):
                best.update(iteration=entry["iteration"], val_loss=Jv, x=np.array(xk), model=model_dict(current, out),
                            feasible=True)
            return f"  val PSNR {entry['val_psnr']:6.2f} dB"

        def save_state(current, entry, **more):
            """The training state after ``entry`` (``current`` its model) into the resume file (rank 0)."""
            if rank0:
                extra = {} if val_loss is None else dict(
                    initial_val_loss=initial_val, best={k: v for k, v in best.items() if k != "x"})
                ckpt.save(dict(settings=settings, model=model_dict(current, out), history=history,
                               elapsed=entry["elapsed"], initial_loss=initial, **more, **extra))

        def fun(y):
            """L-BFGS-B sees J/scale (order one) and its gradient, in y = x / size."""
            x = y * size
            J, g = loss.loss_and_gradient(x)
            last.update(x=x, J=J, g=g)
            if al is None:
                return J / scale, g * size / scale
            P, dP = al.penalty(x)                     # the augmented Lagrangian: L = J/scale + penalty
            last["g"] = g + scale * dP
            return J / scale + P, (g / scale + dP) * size

        def patience_over(entry, what):
            """True (said in a line) when validation has not improved for ``patience`` epochs or iterates."""
            if patience is None or entry["iteration"] - best["iteration"] < patience:
                return False
            stopped["at"] = entry["iteration"]
            log(f"early stop at {what} {entry['iteration']}: the validation loss has not improved for {patience} "
                f"{what}s (best: {what} {best['iteration']})")
            return True

        def callback(intermediate_result):
            xk, J = intermediate_result.x * size, intermediate_result.fun * scale
            current = model.with_stages(unpack(model, xk))
            pg = _projected_gradient(xk, last["g"], box) if np.array_equal(last.get("x"), xk) else float("nan")
            entry = dict(iteration=len(history) + 1, loss=J, psnr=loss.psnr(J), grad=pg,
                         certificate=current.certificate() or box_alpha, elapsed=time.perf_counter() - t0,
                         peak_mb=peak_memory_mb(MPI.COMM_WORLD))
            shown = judge(entry, xk, current) + al_entry(entry)
            history.append(entry)
            log(f"it {entry['iteration']:4d}  loss {J:.6e}  PSNR {entry['psnr']:6.2f} dB{shown}  |proj grad| {pg:.2e}  "
                f"ellipticity {entry['certificate']:.3e}  {entry['elapsed']:7.1f} s  peak {entry['peak_mb']:.0f} MiB")
            if progress is not None and rank0:
                progress(entry, maxiter)
            save_state(current, entry, **({} if al is None else dict(al=al.state())))
            if patience_over(entry, "iteration"):
                raise StopIteration                   # scipy ends the minimisation, returning this iterate

        def outer_update(x, what):
            """The augmented Lagrangian's outer update at ``x`` (said in a line, kept in the resume file)."""
            info = al.update(x)
            log(f"AL round {al.rounds} after {what} {len(history)}: min h {info['h_min']:+.3e} (certificate/eps - 1), "
                f"infeasibility {info['V']:.2e}, max mu {max(info['mu']):.3e}, r {info['r']:.0e}")
            if history:
                history[-1]["al_round"] = dict(info, round=al.rounds)
                save_state(model.with_stages(unpack(model, x)), history[-1],
                           **({"adam": adam_state[0]} if adam_state else {}), al=al.state())
            return info
        adam_state = [None]

        def lbfgsb_run():
            """L-BFGS-B to ``maxiter``; with the augmented Lagrangian, rounds of :data:`~.stability.AL_INNER`
            iterations each followed by the outer update, until converged and feasible; returns the last iterate."""
            y = x0 / size
            while len(history) < maxiter and stopped["at"] is None:
                done = len(history)
                budget = maxiter - done if al is None else min(AL_INNER, maxiter - done)
                res = minimize(fun, y, jac=True, method="L-BFGS-B", bounds=list(zip(lo / size, hi / size)),
                               callback=callback, options=dict(maxiter=budget, maxcor=20, ftol=1e-12, gtol=1e-8))
                y = res.x
                if al is None or stopped["at"] is not None:
                    break
                info = outer_update(np.clip(y * size, lo, hi), "iteration")
                if len(history) == done or (len(history) - done < budget and info["V"] <= AL_TOL):
                    break
            return np.clip(y * size, lo, hi)

        what = ("real noisy/clean pairs" if pairs is not None else f"speckle of {looks:g} looks" if noise == "speckle"
                else f"σ={sigma255:g}")
        held = f" (validation: {len(val_data)} patches of {len(val_sources)} image(s))" if val_data else ""
        dead = sum(isinstance(s, Synthetic) for s in sources)
        synth = f", {dead} of them dead leaves" if dead else ""
        log(f"training on {len(data)} {'colour ' if colour else ''}patches {patch}×{patch} of {len(sources)} "
            f"image(s){synth}{held}, {what}, "
            f"{len(model.stages)} stage(s), "
            f"{model.steps} steps to T={model.time:g} ({model.scheme}), {len(x0)} parameters, "
            f"{MPI.COMM_WORLD.size} rank(s); "
            f"loss {J0:.6e} (PSNR {loss.psnr(J0):.2f} dB)")

        def adam_run():
            """Projected Adam over the epochs left (see the module's docstring); returns the last iterate."""
            nonlocal data
            opt, y, done = Adam(lo / size, hi / size), x0 / size, len(history)
            if saved:
                opt.load(saved, f"{ckpt.path}: field \"adam\"")
                y = saved["y"]
            per_epoch = -(-n_patches // batch)
            if opt.t != done * per_epoch:
                raise InputError(f"{ckpt.path}: Adam's step count {opt.t} is not {done} epoch(s) of {per_epoch} "
                                 "minibatches (the training state is corrupt, or the data changed)")
            total, t_run = epochs * per_epoch, time.perf_counter()
            for epoch in range(done, epochs):
                patches = data if epoch == 0 else epoch_patches(epoch)
                data = None                                   # one epoch's patches in memory
                data_range[0] = min(data_range[0], min(float(np.min(f)) for _, f in patches))
                data_range[1] = max(data_range[1], max(float(np.max(f)) for _, f in patches))
                order = np.random.default_rng([seed, epoch, 1]).permutation(len(patches))
                Js, ns = [], []
                for b in range(per_epoch):
                    chosen = [patches[i] for i in order[b * batch:(b + 1) * batch]]
                    J, g = dataset_loss(chosen).loss_and_gradient(y * size)
                    counts["gradients"] += 1
                    Js.append(J)
                    ns.append(len(chosen))
                    gy = g * size / scale
                    if al is not None:                # the penalty's gradient (exact: no minibatch in it)
                        gy = gy + al.penalty(y * size)[1] * size
                    y = opt.step(y, gy, step_size(lr, lr_schedule, opt.t + 1, total))
                del patches
                xk = np.clip(y * size, lo, hi)
                current = model.with_stages(unpack(model, xk))
                Jt = float(np.average(Js, weights=ns))        # the minibatches' losses along the epoch
                now = time.perf_counter()
                entry = dict(iteration=epoch + 1, epoch=epoch + 1, loss=Jt, psnr=psnr_of(Jt), steps=opt.t,
                             lr=step_size(lr, lr_schedule, opt.t, total),
                             certificate=current.certificate() or box_alpha, elapsed=now - t0,
                             peak_mb=peak_memory_mb(MPI.COMM_WORLD))
                shown = judge(entry, xk, current) + al_entry(entry)
                history.append(entry)
                eta = (now - t_run) / (epoch + 1 - done) * (epochs - epoch - 1)
                log(f"epoch {epoch + 1}/{epochs}  train loss {Jt:.6e}  PSNR {entry['psnr']:6.2f} dB{shown}  "
                    f"ellipticity {entry['certificate']:.3e}  {entry['elapsed']:7.1f} s  ETA {_duration(eta)}  "
                    f"peak {entry['peak_mb']:.0f} MiB")
                adam_state[0] = dict(opt.state(), y=y.tolist(), size=size.tolist(), scale=scale)
                save_state(current, entry, adam=adam_state[0], **({} if al is None else dict(al=al.state())))
                if al is not None:
                    outer_update(xk, "epoch")
                if rank0:
                    _write_curve(curve, initial, initial_val, history)
                if progress is not None and rank0:
                    progress(entry, epochs)
                if patience_over(entry, "epoch"):
                    break
            return np.clip(y * size, lo, hi)

        counts, n_patches, psnr_of = dict(gradients=0), len(data), loss.psnr
        data_range = list(data_range)
        del seen
        if adam:
            log(f"Adam: {epochs} epoch(s) of {-(-n_patches // batch)} minibatch(es) of {batch} patches (drawn afresh "
                f"each epoch), step size {lr:g}, {lr_schedule} schedule")
            loss = None                # the epoch-0 patches' loss is rebuilt at the end: one epoch in memory
        interrupted = False
        try:
            if adam:
                x = adam_run()
            else:
                x = lbfgsb_run()
        except KeyboardInterrupt:
            interrupted = True
            if history:
                log(f"\ninterrupted: state of {'epoch' if adam else 'iteration'} {len(history)} is in {ckpt.path}; "
                    "continue with --resume")
            else:
                log("\ninterrupted before the first iteration finished: nothing saved; start again without --resume")
            folder = os.path.dirname(os.path.abspath(out))
            x = pack(model_from_dict(ckpt.load()["model"], ckpt.path, folder, file=True)) if history else x0
        if best and not interrupted:                    # the iterate best on validation (0: the start)
            x = np.clip(best["x"], lo, hi)
        moved = None
        if al is not None and not interrupted:       # end feasible: backtrack towards a feasible point if needed
            start_ok = feasible(x0)
            x, moved = feasible_point(x, x0 if start_ok else anchor(model, x0), feasible)
            if moved < 1:
                log(f"the last iterate's certificate is below eps = {eps:g}: moved back {1 - moved:.3g} of the way "
                    f"to {'the start' if start_ok else 'a feasible anchor (d11, d22 >= 1, rho = 0)'} (certificate "
                    f"{model.with_stages(unpack(model, x)).certificate():.3e})")
        final = model.with_stages(unpack(model, x))
        if adam:                       # the final loss on the patches of the initial one (epoch 0's)
            data = epoch_patches(0) if data is None else data
            loss = dataset_loss(data)
        Jf = loss.loss(x)
        final.provenance = dict(command=command or " ".join(sys.argv), settings=settings, initial_loss=initial,
                                final_loss=Jf, final_train_psnr=loss.psnr(Jf), iterations=len(history),
                                elapsed_seconds=time.perf_counter() - t0, interrupted=interrupted,
                                gradient_evaluations=counts["gradients"] if adam else loss.evaluations,
                                peak_memory_mb_per_rank=peak_memory_mb(MPI.COMM_WORLD),
                                data=dict(train=[_named(s) for s in sources]))
        Jvf = None
        if val_loss is not None:
            Jvf = val_loss.loss(x)
            final.provenance.update(initial_val_loss=initial_val, final_val_loss=Jvf,
                                    final_val_psnr=val_loss.psnr(Jvf), best_iteration=best.get("iteration"))
            final.provenance["data"]["val"] = [_named(s) for s in val_sources]
        if adam:
            final.provenance.update(optimiser=dict(settings["optimiser"], epochs=epochs), epochs=len(history))
        if al is not None:
            c_smooth = al.certificate.values_and_gradients(x)[0]
            final.provenance["stability"] = dict(al.state(), name="augmented-lagrangian",
                                                 certificate=final.certificate(), smooth_certificates=c_smooth.tolist(),
                                                 projected_fraction=moved)
            if not interrupted and not final.certificate() >= eps:
                raise AssertionError(f"augmented Lagrangian: the saved model's certificate {final.certificate():g} "
                                     f"< eps {eps:g}")
        if patience is not None:
            final.provenance.update(patience=int(patience), stopped_early_at=stopped["at"])
        if init:
            final.provenance["init_provenance"] = init_provenance  # the chain of runs behind the model
        final.check_elliptic(out)
        certify(final, tuple(data_range))
        if rank0 and not interrupted:
            try:
                save_model(final, out)
            except InputError as e:
                raise InputError(f"{e}; this run's trained state is in {ckpt.path} (--resume)") from None
            log(f"saved {out}: loss {initial:.4e} -> {Jf:.4e} (train PSNR {loss.psnr(initial):.2f} -> "
                f"{loss.psnr(Jf):.2f} dB), certificate {final.certificate():.3e}")
            if adam:
                _plot_curve(curve, out + ".curve.png", log)
            if Jvf is not None:
                chosen = (f"the {'epoch' if adam else 'iterate'} best on validation: {best['iteration']} of "
                          f"{len(history)}"
                          + (", the start: training did not improve on validation" if best["iteration"] == 0
                             else ""))
                log(f"validation PSNR {val_loss.psnr(initial_val):.2f} -> {val_loss.psnr(Jvf):.2f} dB ({chosen}); "
                    f"train PSNR {loss.psnr(Jf):.2f} dB")
        if interrupted:
            raise KeyboardInterrupt
        return final, history
    finally:
        lock.release()


def _initial_model(path):
    """``(model, its provenance)``: a learned model to continue from (:func:`train` clips its parameters into
    :data:`~.parametrisation.BOUNDS`), its own provenance moved out so that resume files carry only this run's."""
    model = load_model(path)
    if isinstance(model, CrossDiffusionModel) and (model.g11.kind != "rbf" or model.g22.kind != "rbf"):
        raise ModelError(f"{path}: --init needs a learned model (rbf influence functions, or a user model), not "
                         f"'{model.name}'")
    provenance, model.provenance = model.provenance, {}
    return model, provenance


def _patches(sources, paired, sigma255, patch, per_image, seed, colour, noise, looks, epoch=None):
    """The (clean, noisy) patches of resolved ``sources``: real pairs (``paired``), else with synthesised noise;
    ``epoch``: that epoch's, drawn afresh (:mod:`.pairs`)."""
    if paired:
        return pair_patches(sources, patch, per_image, seed, colour=colour, epoch=epoch)
    return training_pairs(sources, sigma255, patch, per_image, seed, colour=colour, noise=noise, looks=looks,
                          epoch=epoch)


def _duration(seconds):
    """``seconds`` as people read them: 42 s, 7 min, 2.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _write_curve(path, initial, initial_val, history):
    """The training curve as CSV: ``epoch, train_loss, val_loss, seconds`` (epoch 0: the start; val_loss empty
    without validation), rewritten whole after every epoch."""
    def fmt(v):
        return "" if v is None else repr(float(v))

    rows = ["epoch,train_loss,val_loss,seconds", f"0,{fmt(initial)},{fmt(initial_val)},0.0"]
    rows += [f"{e['epoch']},{fmt(e['loss'])},{fmt(e.get('val_loss'))},{fmt(e['elapsed'])}" for e in history]

    def write(tmp):
        with open(tmp, "w") as fh:
            fh.write("\n".join(rows) + "\n")

    atomic_write(path, write, ".csv", replace=True)


def _plot_curve(csv, png, log):
    """The curve of ``csv`` as a PNG (matplotlib, imported here: not on the learning layer's import path); skipped
    with a note if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log(f"note: matplotlib is not installed: no {png}")
        return
    rows = np.genfromtxt(csv, delimiter=",", names=True)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(rows["epoch"], rows["train_loss"], "o-", label="train (minibatches)")
    if np.any(np.isfinite(rows["val_loss"])):
        ax.plot(rows["epoch"], rows["val_loss"], "s-", label="validation")
    ax.set(xlabel="epoch", ylabel="loss", yscale="log")
    ax.legend()
    fig.tight_layout()

    def write(tmp):
        fig.savefig(tmp, dpi=100, format="png")

    try:
        atomic_write(png, write, ".png", replace=True)
    finally:
        plt.close(fig)


def _named(source):
    """A source as the provenance names it: a bundled picture's name, a synthetic image's call
    (``dead_leaves(size=..., seed=...)``), a file's absolute path, a pair of them."""
    if isinstance(source, tuple):
        return [_named(s) for s in source]
    return str(source) if isinstance(source, (Picture, Synthetic)) else os.path.abspath(source)


def model_dict(model, out):
    """A model as stored in ``out``'s resume file (a user model's definition relative to ``out``'s folder)."""
    if isinstance(model, UFLModel):
        return model.to_dict(os.path.dirname(os.path.abspath(out)))
    return model.to_dict()


def _projected_gradient(x, g, box):
    """Norm of the gradient projected on the box (zero at a constrained optimum)."""
    lo, hi = np.array([b[0] for b in box]), np.array([b[1] for b in box])
    return float(np.linalg.norm(np.clip(x - g, lo, hi) - x))
