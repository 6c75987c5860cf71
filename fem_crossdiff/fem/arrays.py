"""The numpy API: :func:`denoise` an image array with a named, learned or given model (scikit-image style: numpy
in, numpy out). Compiled evolutions are kept per (shape, refinement, scheme, model structure, horizon, solver
options), so denoising many images of one size compiles once."""
import firedrake as fd

from ..errors import ModelError
from ..imaging.files import check_image
from ..model import CrossDiffusionModel, make_model
from .evolution import Evolution
from .functions import function_to_image, image_mesh, image_to_function

__all__ = ["denoise", "evolution_for"]

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


def denoise(img, model="nonlinear-complex", *, time=None, steps=None, refine=0, scheme="semi-implicit",
            solver_parameters=None, return_v=False, callback=None, **params):
    """Restore the grey image ``img`` (2-D array in [0, 1]) with a cross-diffusion model.

    ``model`` is a name from :data:`fem_crossdiff.model.MODELS` (``params`` override its parameters), a
    path to a model JSON file, or a :class:`CrossDiffusionModel`. Returns ``u(T)`` as an array of the
    image's shape, and also ``v(T)`` (the edge indicator) when ``return_v``.
    """
    img = check_image(img)
    if not isinstance(model, CrossDiffusionModel):
        model = make_model(model, **params)
    elif params:
        raise ModelError("parameters can only be overridden for a named model")
    model.check_elliptic()
    time, steps = model.check_run(model.time if time is None else time, model.steps if steps is None else steps)
    ev = evolution_for(img.shape, model, refine, scheme, time, steps, solver_parameters)
    w = ev.run(image_to_function(img, ev.V), callback=callback)
    ev.check_finite()
    u = function_to_image(fd.Function(ev.V).interpolate(w[0]))
    if return_v:
        return u, function_to_image(fd.Function(ev.V).interpolate(w[1]))
    return u
