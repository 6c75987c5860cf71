"""The numpy API: :func:`denoise` an image array with a named, learned or given model (scikit-image style: numpy
in, numpy out). Compiled evolutions are kept per (shape, refinement, scheme, model structure, horizon, solver
options), so denoising many images of one size compiles once."""
import os

import numpy as np
import firedrake as fd

from ..errors import InputError, ModelError
from ..imaging.files import check_image
from ..model import make_model
from ..model.base import StagedModel
from .certify import certify
from .evolution import Evolution
from .functions import function_to_image, image_mesh, image_to_function

__all__ = ["denoise", "evolution_for", "memory_estimate", "available_memory", "check_memory"]

#: Peak memory of a denoise on one rank, measured (``/usr/bin/time -v fem-crossdiff denoise``, 256²–2048²): a base
#: (Python, Firedrake, PETSc, compiled kernels) and, per mesh vertex, the mesh, spaces, solvers and fast path, plus
#: the stage parameters, which are held per cell (8 bytes each, every stage): nonlinear complex diffusion 2048²
#: 11.2 GiB (estimate 11.1), the shipped learned model (804 parameters) 1024² 10.2 GiB (estimate 9.6).
BASE_MEMORY, BYTES_PER_VERTEX = 0.3 * 2 ** 30, 2700

_CACHE = {}


def evolution_for(shape, model, refine, scheme, time, steps, solver_parameters):
    """Reuse one compiled :class:`Evolution` per (shape, refinement, scheme, model structure, horizon)."""
    key = (tuple(shape), refine, scheme, model.structure, time, steps, repr(sorted((solver_parameters or {}).items())))
    ev = _CACHE.get(key)
    if ev is None:
        if len(_CACHE) > 16:
            _CACHE.clear()
        ev = _CACHE[key] = Evolution(model, image_mesh(shape, refine), time=time, steps=steps, scheme=scheme,
                                     solver_parameters=solver_parameters)
    else:
        ev.discrete.set_stages(model.stages)
    return ev


def memory_estimate(shape, refine, model, ranks=1):
    """Bytes one rank needs to denoise an image of ``shape`` on the mesh refined ``refine`` times with ``model``."""
    H, W = shape
    r = 2 ** int(refine)
    vertices = ((H - 1) * r + 1) * ((W - 1) * r + 1)
    parameters = len(model.stages) * sum(n for _, n, _ in model.stage_layout)
    return BASE_MEMORY + vertices * (BYTES_PER_VERTEX + 8 * parameters) / ranks


def available_memory():
    """Bytes of memory available to a new process here (``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def check_memory(shape, refine, model, ranks=1):
    """Refuse, before anything is built, a problem that would not fit in this machine's available memory."""
    need, have = memory_estimate(shape, refine, model, ranks), available_memory()
    if have is not None and need > 0.9 * have:
        where = f" on the mesh refined {refine} time(s)" if refine else ""
        raise InputError(f"image of {shape[0]}×{shape[1]} pixels{where}: needs about {need / 2 ** 30:.1f} GiB per rank "
                         f"with model '{model.name}', {have / 2 ** 30:.1f} GiB available; use a smaller image or "
                         "refinement, or more ranks (mpiexec)")


def denoise(img, model="nonlinear-complex", *, time=None, steps=None, refine=0, scheme="semi-implicit",
            solver_parameters=None, return_v=False, callback=None, **params):
    """Restore the image ``img`` — grey (H, W) or colour (H, W, 3), values in [0, 1] (uint8/uint16 scaled) — with a
    cross-diffusion model.

    ``model`` is a name from :data:`fem_crossdiff.model.MODELS` or a registered user model (``params`` override
    its parameters), a user model's definition ``path/to/file.py:Class``, a path to a model JSON file, or a model
    object (:class:`~fem_crossdiff.model.CrossDiffusionModel`, :class:`~fem_crossdiff.model.UFLModel`, a colour
    model). A colour image goes through a colour model as one system; a grey model restores it channel by channel.
    Returns ``u(T)`` as an array of the image's shape, and also ``v(T)`` (the edge indicator, the second component;
    zeros for a one-component model) when ``return_v``.
    """
    img = check_image(img, colour=True)
    if not isinstance(model, StagedModel):
        model = make_model(model, **params)
    elif params:
        raise ModelError("parameters can only be overridden for a model given by name")
    certify(model)
    channels = getattr(model, "channels", 1)
    if img.ndim == 2 and channels != 1:
        raise ModelError(f"model '{model.name}' restores colour images; got a grey image of shape {img.shape}")
    if img.ndim == 3 and channels == 1:                  # a grey model on a colour image: channel by channel
        parts = [denoise(img[..., c], model, time=time, steps=steps, refine=refine, scheme=scheme,
                         solver_parameters=solver_parameters, return_v=True, callback=callback) for c in range(3)]
        u = np.stack([p[0] for p in parts], axis=-1)
        return (u, np.mean([p[1] for p in parts], axis=0)) if return_v else u
    time, steps = model.check_run(model.time if time is None else time, model.steps if steps is None else steps)
    check_memory(img.shape[:2], refine, model, fd.COMM_WORLD.size)
    ev = evolution_for(img.shape[:2], model, refine, scheme, time, steps, solver_parameters)
    w = ev.run(image_to_function(img, ev.F), callback=callback)
    ev.check_finite()
    u = function_to_image(fd.Function(ev.F).interpolate(ev.discrete.output(w)))
    if return_v:
        v = function_to_image(fd.Function(ev.V).interpolate(w[1])) if ev.discrete.components > 1 else 0 * u
        return u, v
    return u
