r"""The named models of the literature, each a special case of :class:`~fem_crossdiff.model.family.CrossDiffusionModel`.

Defaults (time horizon in pixel² units, edge thresholds for images in [0, 1]) are the values that
``demos/tune_classic.py`` found best at σ = 25 on training images (``fem_crossdiff/evaluation/tuned.json`` has
σ = 15 too).
"""
import inspect
import math

from ..errors import ModelError
from .family import CrossDiffusionModel
from .files import load_model
from .ufl_model import UFLModel, load_definition
from .influence import Influence

__all__ = ["MODELS", "REGISTERED", "register_model", "make_model", "model_help", "heat", "perona_malik", "linear_complex", "nonlinear_complex",
           "linear_cross", "nonlinear_cross"]


def _stage(d11=1.0, d12=0.0, d21=0.0, d22=1.0, lam=0.0, mu=0.0, **influence):
    """Stage dictionary from the user-facing matrix entries."""
    if d11 <= 0 or d22 <= 0:
        raise ModelError(f"d11={d11:g} and d22={d22:g} must be > 0 for an elliptic model")
    rho = (d12 + d21) / (2 * math.sqrt(d11 * d22))
    if abs(rho) >= 1:
        raise ModelError(f"(d12 + d21)^2 = {(d12 + d21) ** 2:g} must be < 4 d11 d22 = {4 * d11 * d22:g} "
                         "for an elliptic model")
    return dict(d11=d11, d22=d22, rho=rho, beta=(d12 - d21) / 2, lam=lam, mu=mu, **influence)


def heat(time=0.75, steps=8, lam=0.0):
    r"""Linear diffusion :math:`u_t = \Delta u` (Gaussian scale space, :math:`\sigma = \sqrt{2t}`)."""
    return CrossDiffusionModel("heat", stages=[_stage(lam=lam)], time=time, steps=steps,
                               description=heat.__doc__)


def perona_malik(k=0.1, time=2.0, steps=8, lam=0.0):
    r"""Perona–Malik :math:`u_t = \nabla\cdot(g(|\nabla u|)\nabla u)`, :math:`g = 1/(1+(|\nabla u|/k)^2)`."""
    return CrossDiffusionModel("perona-malik", g11=Influence("rational", "grad_u"),
                               stages=[_stage(lam=lam, k11=k)], time=time, steps=steps,
                               description=perona_malik.__doc__)


def linear_complex(theta=math.pi / 30, time=0.75, steps=8, lam=0.0):
    r"""Gilboa's linear complex diffusion :math:`I_t = e^{i\theta}\Delta I`, :math:`I = u + iv`.

    :math:`D = \begin{pmatrix}\cos\theta & -\sin\theta\\ \sin\theta & \cos\theta\end{pmatrix}`; for small
    :math:`\theta`, :math:`v/\theta \to t\,\Delta u` (a smoothed Laplacian: an edge detector).
    """
    if not 0 <= theta < math.pi / 2:
        raise ModelError(f"theta={theta:g} must lie in [0, pi/2) for an elliptic model")
    c, s = math.cos(theta), math.sin(theta)
    return CrossDiffusionModel("linear-complex", stages=[_stage(c, -s, s, c, lam=lam)], time=time,
                               steps=steps, description=linear_complex.__doc__)


def nonlinear_complex(theta=math.pi / 30, k=0.05, time=1.0, steps=8, lam=0.0):
    r"""Gilboa's nonlinear complex diffusion (NCDF): :math:`D = g(v)R(\theta)`, :math:`g = 1/(1+(v/(k\theta))^2)`."""
    if not 0 < theta < math.pi / 2:
        raise ModelError(f"theta={theta:g} must lie in (0, pi/2) for an elliptic model")
    c, s = math.cos(theta), math.sin(theta)
    g = Influence("rational", "v")
    kk = k * theta
    return CrossDiffusionModel("nonlinear-complex", g11=g, g22=g,
                               stages=[_stage(c, -s, s, c, lam=lam, k11=kk, k22=kk)], time=time, steps=steps,
                               description=nonlinear_complex.__doc__)


def linear_cross(d11=1.0, d12=0.0, d21=0.1, d22=1.0, time=0.75, steps=8, lam=0.0, mu=0.0):
    r"""Araújo–Barbeiro–Cuesta–Durán linear cross-diffusion: constant positive definite :math:`D = (d_{ij})`."""
    return CrossDiffusionModel("linear-cross", stages=[_stage(d11, d12, d21, d22, lam=lam, mu=mu)],
                               time=time, steps=steps, description=linear_cross.__doc__)


def nonlinear_cross(d11=1.0, d12=-0.05, d21=0.05, d22=0.5, k=0.002, time=1.0, steps=8, lam=0.0, mu=0.0):
    r"""Araújo et al. nonlinear cross-diffusion :math:`D = g(v)(d_{ij})`, :math:`g = 1/(1+(v/k)^2)`."""
    g = Influence("rational", "v")
    return CrossDiffusionModel("nonlinear-cross", g11=g, g22=g,
                               stages=[_stage(d11, d12, d21, d22, lam=lam, mu=mu, k11=k, k22=k)],
                               time=time, steps=steps, description=nonlinear_cross.__doc__)


#: Named models: name -> factory (keyword arguments are the documented parameters with their defaults).
MODELS = {"heat": heat, "perona-malik": perona_malik, "linear-complex": linear_complex,
          "nonlinear-complex": nonlinear_complex, "linear-cross": linear_cross,
          "nonlinear-cross": nonlinear_cross}


#: User models registered by name (:func:`register_model`): name -> :class:`UFLModel` subclass.
REGISTERED = {}


def register_model(name, cls):
    """Make the user model class ``cls`` available by ``name`` to :func:`make_model` (hence ``denoise``)."""
    if not (isinstance(cls, type) and issubclass(cls, UFLModel)):
        raise ModelError(f"register_model({name!r}, ...): expected a UFLModel subclass, got {cls!r}")
    if name in MODELS:
        raise ModelError(f"register_model: {name!r} is a built-in model's name")
    REGISTERED[name] = cls
    return cls


def _user_model(cls, params):
    """An instance of the user model class ``cls`` with parameter values (all stages) and horizon overridden."""
    for key, val in params.items():
        if key in ("time", "steps"):
            continue
        if not isinstance(val, (int, float)) or not math.isfinite(val):
            raise ModelError(f"model '{cls.__name__}': parameter {key}={val!r} must be a finite number")
    return cls(**params)


def _entry_point(name):
    """The user model class an installed package registers under ``name`` (entry-point group
    ``fem_crossdiff.models``, value ``module:Class``), or None."""
    from importlib.metadata import entry_points
    for ep in entry_points(group="fem_crossdiff.models"):
        if ep.name == name:
            return load_definition(ep.value)
    return None


def make_model(name, **params):
    """A model by name: a named model (see :data:`MODELS`) or a registered user model (:func:`register_model`, or
    an installed package's entry point in the group ``fem_crossdiff.models``) with some parameters overridden, a user model's definition ``path/to/file.py:Class`` or ``module:Class``, or a model
    JSON file's path (which accepts only ``time`` and ``steps`` overrides)."""
    if name not in MODELS:
        if name in REGISTERED:
            return _user_model(REGISTERED[name], params)
        if str(name).endswith(".json"):
            model = load_model(name)
            return _override_horizon(model, params)
        if ":" in str(name):
            return _user_model(load_definition(name), params)
        registered = _entry_point(name)
        if registered is not None:
            return _user_model(registered, params)
        raise ModelError(f"unknown model '{name}'; expected one of {', '.join([*MODELS, *REGISTERED])}, a model "
                         ".json file or a definition path/to/file.py:Class")
    factory = MODELS[name]
    allowed = inspect.signature(factory).parameters
    for key, val in params.items():
        if key not in allowed:
            raise ModelError(f"model '{name}' has no parameter '{key}'; its parameters are {', '.join(allowed)}")
        if not isinstance(val, (int, float)) or not math.isfinite(val):
            raise ModelError(f"model '{name}': parameter {key}={val!r} must be a finite number")
        if key == "steps":
            if int(val) != val or val < 1:
                raise ModelError(f"model '{name}': steps={val!r} must be a positive integer")
            params[key] = int(val)
    model = factory(**params)
    model.check_elliptic()
    return model


def _override_horizon(model, params):
    extra = set(params) - {"time", "steps"}
    if extra:
        raise ModelError(f"a learned model accepts only time and steps overrides, got {sorted(extra)}")
    if not params:
        return model
    time, steps = model.check_run(params.get("time", model.time), params.get("steps", model.steps))
    return model.replace(time=time, steps=steps)


def model_help():
    """(name, one-line description, {parameter: default}) for every named and registered model."""
    rows = []
    for name, factory in MODELS.items():
        defaults = {k: p.default for k, p in inspect.signature(factory).parameters.items()}
        rows.append((name, inspect.getdoc(factory).splitlines()[0], defaults))
    for name, cls in REGISTERED.items():
        defaults = {k: spec[0] for k, spec in cls.parameters.items()}
        rows.append((name, (inspect.getdoc(cls) or "a user model").splitlines()[0],
                     {**defaults, "time": cls.time, "steps": cls.steps}))
    return rows
