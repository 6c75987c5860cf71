"""fem_crossdiff: learned cross-diffusion image restoration as a finite-element variational problem.

A grey image ``f`` is the initial state of ``w = (u, v)`` evolved by the weak form of
``∂t w = ∇·(D(w)∇w) + R(w, f)`` (Neumann boundaries) with Firedrake; pyadjoint differentiates it.

    >>> import fem_crossdiff as fc
    >>> u = fc.denoise(noisy, "nonlinear-complex")          # numpy in, numpy out
    >>> fc.psnr(clean, u)

Modules: ``images`` (pixels ↔ Q1 functions), ``models`` (the model family and named cases), ``forms`` (UFL),
``timestepping`` (schemes, :class:`Evolution`, :func:`denoise`), ``noise``, ``metrics``, ``data``, ``cli``.
"""
__version__ = "0.1.0"

_LAZY = {
    "denoise": "timestepping", "Evolution": "timestepping", "EvolutionError": "timestepping",
    "read_image": "images", "write_image": "images", "image_mesh": "images", "image_to_function": "images",
    "function_to_image": "images", "ImageError": "images",
    "make_model": "models", "load_model": "models", "save_model": "models", "MODELS": "models",
    "CrossDiffusionModel": "models", "Influence": "models", "ModelError": "models",
    "psnr": "metrics", "ssim": "metrics", "gaussian_noise": "noise", "speckle_noise": "noise",
}


def __getattr__(name):
    """Import submodules on first use (Firedrake is heavy; ``fem-crossdiff models`` need not load it)."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'fem_crossdiff' has no attribute '{name}'")


__all__ = sorted(_LAZY)
