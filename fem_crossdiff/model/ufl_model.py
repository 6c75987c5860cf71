r"""A user's own cross-diffusion–reaction model, written in UFL, with any number of components.

Subclass :class:`UFLModel` and write the model's UFL; the framework does the rest (time schemes, ``denoise``, the
command line, training with adjoint gradients and box bounds, Taylor tests, refinement and adjoint studies)::

    import ufl
    from fem_crossdiff.model import UFLModel

    class Complex(UFLModel):
        '''Gilboa's nonlinear complex diffusion with a learnable angle and threshold.'''
        components = 2                                    # w = (u, v)
        parameters = {"theta": (0.1, 0.01, 1.0),          # name: (value, lower bound, upper bound)
                      "k": (0.05, 0.005, 1.0)}

        def diffusion(self, w, p):                        # D(w; p), n×n: the flux of w_i is sum_j D_ij grad w_j
            g = 1 / (1 + (w[1] / (p["k"] * p["theta"])) ** 2)
            c, s = ufl.cos(p["theta"]), ufl.sin(p["theta"])
            return g * ufl.as_matrix([[c, -s], [s, c]])

        def ellipticity(self, p):                         # optional: a lower bound of ξᵀDξ/|ξ|² (numbers)
            return math.cos(p["theta"]) / (1 + (1 / (p["k"] * p["theta"])) ** 2)

The hooks (UFL in, UFL out; ``w`` the state as a UFL vector, ``f`` the data, ``p`` the stage's parameters by
name):

* :meth:`UFLModel.diffusion` — required;
* :meth:`UFLModel.reaction` — :math:`R(w, f)`, default 0; the semi-implicit scheme treats it linearly implicitly,
  :math:`R(w^n) + R'(w^n)(w^{n+1} - w^n)` (exact for a linear fidelity such as :math:`\lambda(f - u)`);
* :meth:`UFLModel.explicit_reaction` — a part evaluated at :math:`w^n` only, default none;
* :meth:`UFLModel.initial` — :math:`w(0)`, default :math:`(f, 0, \dots, 0)`;
* :meth:`UFLModel.ellipticity` — optional lower bound of :math:`\xi^TD\xi/|\xi|^2` over the state range for numeric
  parameters. Without it the framework samples the symmetric part's smallest eigenvalue over states, gradients (and,
  before training, parameters in the box) and refuses a model found not to be uniformly elliptic; with it the
  sampling checks the claim.

The states on which ellipticity is checked: :math:`u` over the data's range (at least :math:`[0, 1]`, the range of
an image file) widened by a margin on either side (:data:`~fem_crossdiff.fem.certify.U_MARGIN` of its width: a
cross-diffusion has no maximum principle, :math:`u` may overshoot the data a little), the other components over
:math:`[-1, 1]`, and :math:`|\nabla u| \le 1` per pixel. A model whose components live elsewhere declares it with
the optional ``state_bounds``, component index -> ``(lower, upper)``, e.g. ``state_bounds = {1: (0.0, 5.0)}`` for an
indicator :math:`v_1 \in [0, 5]`; a declaration for :math:`u` (index 0) can only widen its range. A model whose
:math:`D` is not positive definite somewhere on these states is refused by name before any solve (e.g.
:math:`D_{11} = 0.75 - u`, which turns negative on bright pixels). The bounds are the user's statement of where the
model lives: they are sampled, not enforced during the run.

Parameters are scalars, one set per stage (``nstages``, default 1), each with a box: training keeps every iterate in
it. Model files (JSON) record where the definition lives (``"definition": "my_model.py:Complex"``, relative to the
file) and refuse to load without it. A definition is named ``path/to/file.py:Class`` or ``package.module:Class``.
They also record the SHA-256 of the definition's source file (``"definition_digest"``, the file's bytes as loaded),
and a file whose definition has changed since it was saved is refused, naming both files (the model would no longer
run as it was trained; restore the definition or train again). A file saved before definitions were digested is
accepted with a note; a hand-written file (no digest at all) is accepted as it is.

A faulty definition is refused in one line naming it: a class without ``diffusion``, a hook whose signature does
not take the framework's arguments, or a hook whose result has the wrong shape (``diffusion`` must give an n×n
matrix, ``reaction`` and ``explicit_reaction`` n entries, ``initial`` n entries). An error inside the user's own
code (a syntax error, a misspelt name) keeps its traceback.
"""
import hashlib
import importlib
import importlib.util
import inspect
import math
import numbers
import os
import sys

from ..errors import ModelError
from .base import StagedModel, check_horizon, check_scheme, check_sealed

__all__ = ["UFLModel", "load_definition", "definition_spec", "definition_digest", "definition_file", "file_digest",
           "describe_definition"]

#: The hooks a user model may define and the arguments the framework calls them with (besides ``self``).
HOOKS = {"diffusion": ("w", "p"), "reaction": ("w", "f", "p"), "explicit_reaction": ("w", "f", "p"),
         "initial": ("f",), "ellipticity": ("p",)}



class UFLModel(StagedModel):
    """Base class of a model given in UFL (see the module docstring); subclass it and override the hooks."""

    #: Number of components of :math:`w = (u, v_1, \dots)`; :math:`u = w_1` is the image.
    components = 2
    #: name -> (value, lower bound, upper bound) of every scalar parameter of a stage.
    parameters = {}
    #: Default number of stages (parameter sets along the horizon), final time (pixel² units) and steps.
    nstages, time, steps = 1, 1.0, 8
    #: Default time scheme (see :data:`~fem_crossdiff.model.base.SCHEME_NAMES`).
    scheme = "semi-implicit"
    #: Set by :func:`load_definition` (or given by the subclass): where the class is defined.
    definition = None
    #: Optional: component index -> ``(lower, upper)``, the states the model lives in, over which its ellipticity is
    #: checked (see the module docstring). None: :math:`u` over the data's range with a margin, others in [-1, 1].
    state_bounds = None

    def __init__(self, stages=None, *, time=None, steps=None, nstages=None, name=None, description=None,
                 provenance=None, scheme=None, **values):
        cls = type(self)
        if not (isinstance(cls.components, int) and cls.components >= 1):
            raise ModelError(f"{cls.__name__}: components must be an integer >= 1, got {cls.components!r}")
        _check_hooks(self)
        _check_state_bounds(cls)
        if not (isinstance(cls.parameters, dict) and cls.parameters):
            raise ModelError(f"{describe_definition(cls)}: parameters must be a dictionary of at least one parameter "
                             f"name: (value, lower, upper), got {cls.parameters!r}")
        for key, spec in cls.parameters.items():
            if not (isinstance(spec, (tuple, list)) and len(spec) == 3 and all(map(_finite, spec))
                    and spec[1] <= spec[0] <= spec[2]):
                raise ModelError(f"{cls.__name__}: parameter {key} must be given as (value, lower, upper) with "
                                 f"lower <= value <= upper, got {spec!r}")
        self.name = name or cls.__name__
        self.description = description if description is not None else (cls.__doc__ or "").strip().split("\n")[0]
        self.provenance = dict(provenance or {})
        self.time = cls.time if time is None else time
        self.steps = cls.steps if steps is None else steps
        check_horizon(self.time, self.steps)
        self.time, self.steps = float(self.time), int(self.steps)
        self.scheme = check_scheme(cls.scheme if scheme is None else scheme, f"model '{self.name}'")
        unknown = set(values) - set(cls.parameters)
        if unknown:
            raise ModelError(f"model '{self.name}' has no parameter {sorted(unknown)[0]!r}; its parameters are "
                             f"{', '.join(cls.parameters) or 'none'}")
        if stages is None:
            count = cls.nstages if nstages is None else nstages
            if not (isinstance(count, int) and count >= 1):
                raise ModelError(f"model '{self.name}': nstages must be an integer >= 1, got {count!r}")
            stages = [{key: float(values.get(key, spec[0])) for key, spec in cls.parameters.items()}
                      for _ in range(count)]
        elif values:
            raise ModelError(f"model '{self.name}': give parameter values or stages, not both")
        self.stages = [self._checked_stage(st, k) for k, st in enumerate(stages)]
        if not self.stages:
            raise ModelError(f"model '{self.name}' has no parameter stages")

    def _checked_stage(self, stage, k):
        if not isinstance(stage, dict):
            raise ModelError(f"model '{self.name}' stage {k}: expected a dictionary of parameters, got {stage!r}")
        if set(stage) != set(self.parameters):
            raise ModelError(f"model '{self.name}' stage {k}: parameters {sorted(stage)}; expected "
                             f"{sorted(self.parameters)}")
        out = {}
        for key, (_, lo, hi) in self.parameters.items():
            val = stage[key]
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
                raise ModelError(f"model '{self.name}' stage {k}: parameter {key}={val!r} must be a finite number")
            if not lo <= val <= hi:
                raise ModelError(f"model '{self.name}' stage {k}: parameter {key}={val:g} lies outside its box "
                                 f"[{lo:g}, {hi:g}]")
            out[key] = float(val)
        return out

    # -- the hooks (override) --------------------------------------------------------------------------
    def diffusion(self, w, p):
        """The n×n diffusion matrix :math:`D(w; p)` in UFL (the flux of :math:`w_i` is :math:`\\sum_j D_{ij}\\nabla
        w_j`); ``w`` the state (UFL vector of ``components``), ``p`` the stage's parameters by name (UFL scalars)."""
        raise NotImplementedError(f"{type(self).__name__} must define diffusion(self, w, p)")

    def reaction(self, w, f, p):
        """The reaction :math:`R(w, f; p)`, a UFL vector of ``components`` (default 0); linearly implicit in the
        semi-implicit scheme."""
        import ufl
        return ufl.as_vector([0.0] * self.components)

    def explicit_reaction(self, w, f, p):
        """A reaction evaluated at :math:`w^n` only by the semi-implicit scheme (default None: none)."""
        return None

    def initial(self, f):
        """The initial state :math:`w(0)` from the data ``f``: a list of ``components`` UFL expressions
        (default :math:`(f, 0, \\dots, 0)`)."""
        return [f] + [0.0] * (self.components - 1)

    def ellipticity(self, p):
        """Optional: a lower bound of :math:`\\xi^TD\\xi/|\\xi|^2` over the state range for the stage parameters
        ``p`` (a dictionary of numbers). None (the default): the framework samples it."""
        return None

    # -- what the framework reads ------------------------------------------------------------------------
    @property
    def parameter_names(self):
        return list(self.parameters)

    def box(self):
        """``(lower, upper)`` of every flat parameter, stage by stage (what the optimiser keeps iterates in)."""
        return [self.parameters[name][1:] for _ in self.stages for name in self.parameters]

    @property
    def structure(self):
        """What fixes the model's forms: its class, definition (and the digest of its source: an edited definition
        is another model), components and number of stages."""
        return (type(self).__qualname__, self.definition, definition_digest(type(self)), self.components,
                len(self.stages))

    def check_forms(self, w, f, p):
        """Refuse, naming the definition, hooks whose results have the wrong shape for ``components`` = n:
        ``diffusion`` an n×n matrix, ``reaction`` and ``explicit_reaction`` (unless None) and ``initial`` n entries.
        ``w``, ``f``, ``p``: the UFL state, data and stage parameters (the finite-element layer calls this before
        it builds any form: :func:`fem_crossdiff.fem.certify.sampled_ellipticity`)."""
        n, where = self.components, describe_definition(type(self))
        wanted = {"diffusion": ((n, n), f"a {n}×{n} matrix (n×n for n components)"),
                  "reaction": ((n,), f"a vector of {n} entries (one per component)"),
                  "explicit_reaction": ((n,), f"None or a vector of {n} entries (one per component)"),
                  "initial": ((n,), f"a list of {n} entries (one per component)")}
        results = {"diffusion": self.diffusion(w, p), "reaction": self.reaction(w, f, p),
                   "explicit_reaction": self.explicit_reaction(w, f, p), "initial": self.initial(f)}
        for hook, value in results.items():
            if hook == "explicit_reaction" and value is None:
                continue
            shape, expected = _shape_of(value), wanted[hook]
            if shape != expected[0]:
                raise ModelError(f"{where}: {hook}() returned {_describe_shape(shape)}; expected {expected[1]}")

    def certificate(self):
        """The user's lower bound (minimum over the stages), or None when the model gives none (then the
        finite-element layer samples it: :func:`fem_crossdiff.fem.certify.certify`)."""
        bounds = [self.ellipticity(dict(st)) for st in self.stages]
        if any(b is None for b in bounds):
            return None
        for b in bounds:
            if not _finite(b):
                raise ModelError(f"{describe_definition(type(self))}: ellipticity() returned {b!r}; expected a "
                                 "finite number (a lower bound of the ellipticity) or None")
        return float(min(bounds))

    def check_elliptic(self, where=None):
        """Raise :class:`ModelError` if the model's own bound says it is not uniformly elliptic; the bound (or
        None, to be sampled)."""
        alpha = self.certificate()
        if alpha is not None and not alpha > 0:
            src = f" ({where})" if where else ""
            raise ModelError(f"model '{self.name}'{src} is not uniformly elliptic: its ellipticity bound is "
                             f"{alpha:g} <= 0")
        return alpha

    # -- copies and files --------------------------------------------------------------------------------
    def fields(self):
        return dict(name=self.name, stages=[dict(st) for st in self.stages], time=self.time, steps=self.steps,
                    scheme=self.scheme, description=self.description, provenance=dict(self.provenance))

    def replace(self, **changes):
        """A validated copy with some fields changed."""
        return type(self)(**{**self.fields(), **changes})

    def to_dict(self, folder=None):
        """JSON-ready data with the definition (relative to ``folder``, the model file's, when it is a file) and
        the digest of its source (:func:`definition_digest`, when it has one), the certificate (the user's bound, or
        None) and the digest of the whole content."""
        d = dict(self.fields(), components=self.components, definition=definition_spec(type(self), folder))
        source = definition_digest(type(self))
        if source is not None:
            d["definition_digest"] = source
        return self.sealed(d)

    @classmethod
    def from_dict(cls, d, where="model"):
        d, _ = check_sealed(d, where)
        d.pop("definition", None)
        d.pop("definition_digest", None)            # compared with the source by model.files.model_from_dict
        components = d.pop("components", cls.components)
        if components != cls.components:
            raise ModelError(f"{where}: made for {components} components; the definition {cls.__name__} has "
                             f"{cls.components}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ModelError(f"{where}: malformed model description ({e})") from None


def _check_hooks(model):
    """Refuse a class without ``diffusion`` or with a hook that cannot take the framework's arguments, naming its
    definition."""
    cls = type(model)
    if not callable(getattr(cls, "diffusion", None)) or cls.diffusion is UFLModel.diffusion:
        raise ModelError(f"{describe_definition(cls)}: defines no diffusion(self, w, p) method; every UFLModel gives "
                         "its n×n diffusion matrix D(w; p) by one")
    for hook, args in HOOKS.items():
        method = getattr(model, hook, None)
        if not callable(method):
            raise ModelError(f"{describe_definition(cls)}: {hook} is {method!r}, not a method {hook}(self, "
                             f"{', '.join(args)})")
        try:
            signature = inspect.signature(method)
        except (TypeError, ValueError):                     # no signature to read (a builtin): let it be
            continue
        try:
            signature.bind(*args)
        except TypeError:
            raise ModelError(f"{describe_definition(cls)}: {hook}{signature} cannot be called as {hook}(self, "
                             f"{', '.join(args)})") from None


def _finite(x):
    """Whether ``x`` is a finite real number (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_state_bounds(cls):
    """Refuse a malformed ``state_bounds`` declaration, naming the definition."""
    bounds = cls.state_bounds
    if bounds is None:
        return
    ok = isinstance(bounds, dict) and all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i < cls.components
        and isinstance(b, (tuple, list)) and len(b) == 2 and _finite(b[0]) and _finite(b[1]) and b[0] < b[1]
        for i, b in bounds.items())
    if not ok:
        raise ModelError(f"{describe_definition(cls)}: state_bounds must map component indices 0..{cls.components - 1} "
                         f"to (lower, upper) with lower < upper, got {bounds!r}")


def _shape_of(value):
    """The shape of a hook's result: a UFL expression's, nested lists' (of UFL scalars or numbers), ``()`` for a
    number; ``"ragged"`` for lists of unequal shapes; the type's name for anything else."""
    shape = getattr(value, "ufl_shape", None)
    if shape is not None:
        return tuple(shape)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return ()
    if isinstance(getattr(value, "shape", None), tuple) and hasattr(value, "tolist"):     # a numpy array (UFL takes it)
        return _shape_of(value.tolist())
    if isinstance(value, (list, tuple)):
        inner = [_shape_of(x) for x in value]
        if not inner:
            return (0,)
        if any(not isinstance(s, tuple) or s != inner[0] for s in inner):
            return "ragged"
        return (len(value),) + inner[0]
    return type(value).__name__


def _describe_shape(shape):
    if shape == "ragged":
        return "nested lists of unequal shapes"
    if not isinstance(shape, tuple):
        return f"a {shape}, not a UFL expression"
    if shape == ():
        return "a scalar"
    if len(shape) == 1:
        return f"a vector of shape {shape}"
    if len(shape) == 2:
        return f"a {shape[0]}×{shape[1]} matrix"
    return f"an array of shape {shape}"


def describe_definition(cls):
    """How a message names a user model class: its definition ``file.py:Class`` (the path relative to the current
    folder when it lies below it) or ``module:Class``."""
    source, _, name = definition_spec(cls).rpartition(":")
    if source.endswith(".py") and os.path.isabs(source):
        rel = os.path.relpath(source)
        source = source if rel.startswith("..") else rel
    return f"{source}:{name}"


def file_digest(path):
    """SHA-256 (hex) of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def definition_digest(cls):
    """SHA-256 of the source of a user model class: the bytes of its definition file as :func:`load_definition` ran
    them, else of its module's file (read once, on first use), else of the class's own source; None if it has none
    (a class typed into an interactive session)."""
    digest = cls.__dict__.get("_source_digest")
    if digest is None:
        module = sys.modules.get(cls.__module__)
        path = getattr(module, "__file__", None)
        try:
            if path and os.path.isfile(path):
                digest = file_digest(path)
            else:
                digest = hashlib.sha256(inspect.getsource(cls).encode()).hexdigest()
        except (OSError, TypeError):
            return None
        cls._source_digest = digest
    return digest


def definition_file(spec, folder=None):
    """The absolute path of the ``.py`` file a definition ``spec`` names (relative to ``folder`` if given), without
    running it; for ``module:Class``, the module's file if it can be found without importing it; else None."""
    source, sep, _ = str(spec).rpartition(":")
    if not sep or not source:
        return None
    if source.endswith(".py"):
        path = source if folder is None or os.path.isabs(source) else os.path.join(folder, source)
        return os.path.abspath(path)
    module = sys.modules.get(source)
    return getattr(module, "__file__", None)


def definition_spec(cls, folder=None):
    """``path.py:Class`` (relative to ``folder`` if given) or ``module:Class`` for a user model class (a class
    of a script or of a file loaded by :func:`load_definition` is named by its file)."""
    module = sys.modules.get(cls.__module__)
    source_file = getattr(module, "__file__", None)
    installed = source_file is not None and os.path.abspath(source_file).startswith(
        tuple(os.path.abspath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(__file__)))))
    if cls.__dict__.get("definition"):              # the class's own (a subclass is defined elsewhere)
        spec = cls.definition
    elif source_file and not installed:               # a script's or a loose file's class: named by its file
        spec = f"{os.path.abspath(source_file)}:{cls.__qualname__}"
    else:
        spec = f"{cls.__module__}:{cls.__qualname__}"
    source, _, name = spec.rpartition(":")
    if source.endswith(".py") and folder is not None:
        source = os.path.relpath(os.path.abspath(source), os.path.abspath(folder))
    return f"{source}:{name}"


def load_definition(spec, folder=None):
    """The :class:`UFLModel` subclass named by ``spec`` (``path/to/file.py:Class``, relative to ``folder`` if given,
    or ``package.module:Class``); :class:`ModelError` naming what is missing."""
    source, sep, name = str(spec).rpartition(":")
    if not sep or not source or not name:
        raise ModelError(f"model definition {spec!r}: expected path/to/file.py:Class or module:Class")
    if source.endswith(".py"):
        path = source if folder is None or os.path.isabs(source) else os.path.join(folder, source)
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            raise ModelError(f"model definition {spec}: no such file {path}")
        with open(path, "rb") as fh:
            source_bytes = fh.read()
        digest = hashlib.sha256(source_bytes).hexdigest()
        # one module per path and content: a definition edited while the process runs is loaded afresh
        key = f"fem_crossdiff_user_{hashlib.sha256(path.encode()).hexdigest()[:16]}_{digest[:16]}"
        module = sys.modules.get(key)
        if module is None:
            loader = importlib.util.spec_from_file_location(key, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[key] = module
            try:
                exec(compile(source_bytes, path, "exec"), module.__dict__)   # the very bytes digested
            except Exception:
                del sys.modules[key]
                raise                                   # an error in the user's code keeps its traceback
        where = path
    else:
        try:
            module = importlib.import_module(source)
        except ModuleNotFoundError as e:
            raise ModelError(f"model definition {spec}: module {source} not found ({e})") from None
        where = source
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, UFLModel)):
        raise ModelError(f"model definition {spec}: {where} has no UFLModel subclass named {name}")
    if source.endswith(".py"):
        cls.definition = f"{where}:{name}"
        cls._source_digest = digest
    return cls
