r"""Restoration beyond denoising, numpy in and numpy out: :func:`deblur`, :func:`inpaint`, :func:`upscale`.

Each runs a cross-diffusion model whose fidelity :math:`\lambda(f - u)` is replaced by the task's data term
:math:`\frac{\lambda}{L}A^*(f - Au)` (:mod:`fem_crossdiff.fast.dataterms`: the maths, the stable time discretisation,
the initial states), the model's diffusion and certificate untouched:

* the split scheme of the built-in family and colour models (the learned models') on grid arrays, without
  Firedrake (:func:`~fem_crossdiff.fast.dataterms.run_split`);
* every other model and scheme on an :class:`~fem_crossdiff.fem.evolution.Evolution` of the solution's pixel mesh
  (:class:`~fem_crossdiff.fem.dataterms.DataTermRun`); the two agree to round-off.

**Default model** (``model=None``): the shipped learned denoiser for the noise level σ (0–255 scale;
:func:`~fem_crossdiff.learned.blind_model`), for ``deblur`` given or estimated from the blurred image, for
``inpaint`` and ``upscale`` given or else :data:`CLEAN_SIGMA` (their inputs taken as nearly clean), a colour image
through :func:`~fem_crossdiff.learned.blind_colour_model`. Its fidelity weight in every stage is replaced by the
task's :math:`\lambda` and it runs :data:`TASK_STEPS` steps over its own horizon (more steps: more data-term
iterations; a trained model's horizon is never exceeded). :data:`TASK_LAMBDA` and :data:`TASK_STEPS` were chosen on
held-out crops of the *training* pictures (:data:`~fem_crossdiff.learned.HELDOUT`), never on the test crops
(``python -m fem_crossdiff.fem.restoration`` reproduces the choice). A classic model (``model="perona-malik"``, any
name of :data:`~fem_crossdiff.model.MODELS`, a model file or object) runs with its own horizon and, if it has a
fidelity weight ``lam``, the task's :math:`\lambda` (``lam`` overrides it in either case; a colour model's chroma
weight ``lamc`` is set alike).
"""
import numpy as np

from ..errors import InputError, ModelError
from ..fast.dataterms import DataTerm, run_split
from ..fast.split import Grid, SplitScheme
from ..imaging.degrade import parse_psf
from ..imaging.files import check_image
from ..model import make_model
from ..model.base import StagedModel
from .arrays import MAX_STEPS, check_memory, evolution_for, split_fast_path
from .certify import certify

__all__ = ["deblur", "inpaint", "upscale", "restore", "default_model", "TASK_LAMBDA", "TASK_STEPS", "CLEAN_SIGMA"]

#: The data term's weight λ of each task for the default (learned) model, chosen with :data:`TASK_STEPS` on held-out
#: training crops (8 crops of 96², ``training_pairs(TRAIN_IMAGES, 2.55, **HELDOUT)[::2]``; λ in {3, 10, 30, 100, 300},
#: steps in {12, 24, 48}; mean PSNR): deblur (gaussian:1.6, 1 % noise) 29.53 dB (input 26.80), inpaint (80 % missing)
#: 28.66 dB (its start, the biharmonic fill, 28.61; λ = 30: 27.97, the diffusion blurs the fill), upscale ×2
#: 32.13 dB (bicubic 31.62).
TASK_LAMBDA = {"deblur": 30.0, "inpaint": 300.0, "upscale": 30.0}
#: Time steps of the default model's horizon for each task (chosen with :data:`TASK_LAMBDA`).
TASK_STEPS = {"deblur": 12, "inpaint": 12, "upscale": 12}
#: The noise level σ (0–255) the default model of ``inpaint`` and ``upscale`` assumes unless given.
CLEAN_SIGMA = 2.55


def default_model(task, image, sigma=None):
    """``(model, sigma, how)``: the learned default for ``task`` and the (H, W[, 3]) ``image``: the shipped
    denoiser for σ (given; for ``deblur`` estimated from the image; else :data:`CLEAN_SIGMA`)."""
    from ..learned import blind_model, estimated_model
    from ..imaging.noise import estimate_sigma255
    kind = "colour" if image.ndim == 3 else "grey"
    if sigma is not None:
        return blind_model(sigma, kind=kind), float(sigma), "given"
    if task == "deblur":
        estimate = estimate_sigma255(image)
        model, sigma = estimated_model(estimate, kind=kind)
        return model, sigma, "estimated"
    return blind_model(CLEAN_SIGMA, kind=kind), CLEAN_SIGMA, "assumed"


def _with_lambda(model, lam):
    if lam is None or "lam" not in model.parameter_names:
        return model
    if not (np.isfinite(lam) and lam >= 0):
        raise InputError(f"lam {lam!r}: expected a finite number >= 0")
    keys = [key for key in ("lam", "lamc") if key in model.parameter_names]     # a colour model: chroma's too
    return model.with_stages([dict(st, **{key: float(lam) for key in keys}) for st in model.stages])


def _term(task, shape, psf=None, mask=None, factor=None):
    """The data term on the solution's grid for the data of ``shape`` (H, W)."""
    if task == "upscale":
        if isinstance(factor, bool) or factor is None or not float(factor).is_integer() or factor < 2:
            raise InputError(f"factor {factor!r}: expected an integer >= 2")
        k = int(factor)
        return DataTerm("upscale", (shape[0] * k, shape[1] * k), factor=k)
    if task == "deblur":
        return DataTerm("deblur", shape, psf=parse_psf(psf))
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.any(axis=2)
    if mask.shape != tuple(shape):
        raise InputError(f"mask of {mask.shape[0]}×{mask.shape[1]} pixels does not fit the image of {shape[0]}×"
                         f"{shape[1]} pixels")
    return DataTerm("inpaint", shape, mask=mask != 0)


def restore(task, image, model=None, *, psf=None, mask=None, factor=None, sigma=None, lam=None, time=None,
            steps=None, scheme=None, callback=None, return_model=False):
    """The task's restoration of ``image`` (grey (H, W) or colour (H, W, 3), values in [0, 1]); see :func:`deblur`,
    :func:`inpaint`, :func:`upscale`. ``return_model``: also ``(model, described)``."""
    image = check_image(image, colour=True)
    term = _term(task, image.shape[:2], psf, mask, factor)
    if model is None:
        model, level, how = default_model(task, image, sigma)
        described = f"learned {'colour ' if image.ndim == 3 else ''}model for σ {level:.3g} ({how})"
        steps = TASK_STEPS[task] if steps is None else steps
        lam = TASK_LAMBDA[task] if lam is None else lam
    else:
        if sigma is not None:
            raise InputError("sigma chooses the learned model; with a given model it has no effect (drop one)")
        described = f"model {model if isinstance(model, str) else model.name}"
        if not isinstance(model, StagedModel):
            model = make_model(model)
        lam = TASK_LAMBDA[task] if lam is None and "lam" in model.parameter_names else lam
    model = _with_lambda(model, lam)
    u = _run(term, image, model, time, steps, scheme, callback)
    return (u, (model, described)) if return_model else u


def _run(term, f, model, time, steps, scheme, callback):
    certify(model, (float(f.min()), float(f.max())))
    channels = getattr(model, "channels", 1)
    if f.ndim == 2 and channels != 1:
        raise ModelError(f"model '{model.name}' restores colour images; got a grey image")
    if f.ndim == 3 and channels == 1:                      # a grey model on a colour image: channel by channel
        return np.stack([_run(term, f[..., c], model, time, steps, scheme, callback) for c in range(3)], axis=-1)
    time, steps = model.check_run(model.time if time is None else time, model.steps if steps is None else steps)
    if steps > MAX_STEPS:
        raise InputError(f"steps {steps}: at most {MAX_STEPS}")
    scheme = model.scheme if scheme is None else scheme
    if split_fast_path(model, scheme):
        check_memory(term.shape, 0, model, split=True)
        return run_split(SplitScheme(model, Grid(term.shape), time, steps), term, f, callback=callback)[1]
    import firedrake as fd
    from .dataterms import DataTermRun
    from .functions import function_to_image
    check_memory(term.shape, 0, model)
    ev = evolution_for(term.shape, model, 0, scheme, time, steps, None)
    w = DataTermRun(ev, term).run(f, callback=callback)
    ev.check_finite()
    return function_to_image(fd.Function(ev.F).interpolate(ev.discrete.output(w)))


def deblur(image, psf, sigma=None, model=None, **options):
    """Deblur ``image`` (grey or colour, [0, 1]) blurred by ``psf`` — ``"gaussian:S"``, ``"box:N"``,
    ``"motion:L,ANGLE"``, a PSF image file or an array (:func:`~fem_crossdiff.imaging.degrade.parse_psf`) — with
    noise of level ``sigma`` (0–255; None: estimated). ``model``: None (the learned default) or a classic model.
    ``options``: ``lam``, ``time``, ``steps``, ``scheme``, ``callback`` (see the module docstring). Returns an array
    of the image's shape."""
    return restore("deblur", image, model, psf=psf, sigma=sigma, **options)


def inpaint(image, mask, model=None, sigma=None, **options):
    """Fill the pixels of ``image`` where ``mask`` (H, W) is non-zero (as scikit-image's ``inpaint_biharmonic``);
    the other pixels are the data. Refused: a mask of another size, one marking no pixel or every pixel."""
    return restore("inpaint", image, model, mask=mask, sigma=sigma, **options)


def upscale(image, factor, model=None, sigma=None, **options):
    """``image`` ``factor`` (an integer >= 2) times larger, kH × kW pixels; each input pixel is the mean of its
    k×k output pixels (the sensor model), and the result honours it to the data term's weight."""
    return restore("upscale", image, model, factor=factor, sigma=sigma, **options)
