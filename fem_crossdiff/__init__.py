"""fem_crossdiff: learned cross-diffusion image restoration as a finite-element variational problem.

A grey image ``f`` is the initial state of ``w = (u, v)`` evolved by the weak form of
``∂t w = ∇·(D(w)∇w) + R(w, f)`` (Neumann boundaries) with Firedrake; pyadjoint differentiates it.

    >>> import fem_crossdiff as fc
    >>> u = fc.denoise(noisy, "nonlinear-complex")          # numpy in, numpy out
    >>> fc.psnr(clean, u)

The public names below are imported on first use (Firedrake is heavy; ``fem-crossdiff models`` need not load
it). Subpackages, lowest layer first: ``model`` and ``imaging`` (numpy), ``learned`` (the shipped models),
``fast`` (the one-rank fast path), ``fem`` (Firedrake: functions, forms, schemes, :class:`Evolution`,
:func:`denoise`), ``learning``, ``studies`` and ``evaluation``, and ``cli`` (the command line, imported by
nothing else).
"""
from .lazy import attach

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = attach(__name__, {
    "InputError": "errors", "ImageError": "errors", "ModelError": "errors",
    "denoise": "fem", "deblur": "fem", "inpaint": "fem", "upscale": "fem",
    "Evolution": "fem", "EvolutionError": "fem", "image_mesh": "fem", "image_to_function": "fem",
    "function_to_image": "fem",
    "read_image": "imaging", "write_image": "imaging", "psnr": "imaging", "ssim": "imaging",
    "gaussian_noise": "imaging", "speckle_noise": "imaging", "estimate_sigma255": "imaging",
    "make_model": "model", "load_model": "model", "save_model": "model", "MODELS": "model",
    "CrossDiffusionModel": "model", "Influence": "model",
    "UFLModel": "model", "ColourModel": "model",
    "train": "learning", "shipped_model": "learned", "blind_model": "learned",
})
