r"""The split scheme for any model given in UFL, on grid arrays: its expressions compiled to numpy, its lines in C.

:mod:`.split` serves the built-in family and the colour model by hand-written coefficients and adjoints. This module
serves every model with the hooks of :class:`~fem_crossdiff.model.ufl_model.UFLModel` (``diffusion``, ``reaction``,
``explicit_reaction``, ``initial``), :math:`n \le 4` components, by reading the model's own UFL: the same split step
as :class:`~fem_crossdiff.fem.evolution.Evolution` (``scheme="split"``) defines,

.. math:: (B w^*, \varphi)_h + \tau(D_h\,\partial_x w^*, \partial_x\varphi)_h
              &= (w^n + \tau(R(w^n) - R'(w^n)w^n + E(w^n)), \varphi)_h,\\
          (B w^{n+1}, \varphi)_h + \tau(D_h\,\partial_y w^{n+1}, \partial_y\varphi)_h &= (B w^*, \varphi)_h ,

with :math:`B = I - \tau R'(w^n)` now a full :math:`n\times n` block per node and :math:`D_h` the model's
:math:`D(w^n, \nabla w^n; p)` at the cell centres (where the Q1 state is the mean of the four corners and its
gradient the mean of the edge differences). The vertex rule evaluates :math:`R`, :math:`R' = \partial R/\partial w`
and :math:`E` at the nodes, so every coefficient is a pointwise function of grid arrays.

**Compiling the model.** The hooks are called once per model structure with symbolic UFL coefficients on an abstract
quadrilateral domain (pure UFL, no Firedrake): the state :math:`w`, its cell gradient :math:`G` (``grad(w)`` is
replaced by :math:`G` after UFL's ``apply_derivatives``), the data :math:`f` and the packed parameters :math:`P`.
Every derivative the scheme and its adjoint need is UFL's own (``ufl.derivative`` in unit directions,
``apply_derivatives``): :math:`R'`, and for the adjoint the derivatives of the scalar fields
:math:`\bar D : D` (with respect to :math:`w, G, P`) and :math:`c\cdot(R - R'w + E) - \bar B : R'` (with respect to
:math:`w, P`). The resulting expression DAGs are flattened to one straight-line numpy function per program (common
subexpressions shared, constants folded, each temporary freed after its last use), generated as Python source and
compiled once. An expression outside the supported set (spatial coordinates, derivatives of the data, a reaction
that depends on gradients, …) raises :class:`Unsupported`, and the caller falls back to Firedrake, saying why.

**Lines.** Each half step is one block-tridiagonal system per grid line with :math:`n\times n` blocks, solved by block
Gaussian elimination in C (``lines.c``, one build per :math:`n`; a numpy reference :func:`solve_lines_numpy`).

**Adjoint.** With :math:`A_x = B + \tau K_x(D)`, :math:`A_y = B + \tau K_y(D)`, :math:`r` the right-hand side:
:math:`A_y^T a = \bar w^{n+1}`, :math:`A_x^T c = B^T a`; then :math:`\bar B = a\otimes z - a\otimes w^{n+1} -
c\otimes z` per node, :math:`\bar E_e = -\tau(\Delta c\otimes\Delta z)` on x-edges and :math:`-\tau(\Delta a\otimes
\Delta w^{n+1})` on y-edges (:math:`\bar D` per cell the half sum of its edges'), and the compiled derivative
programs carry :math:`\bar D`, :math:`\bar B` and :math:`c` to :math:`\bar w^n` and :math:`\bar p`. Checked against
pyadjoint's tape of the UFL scheme and by a Taylor test (``tests/test_generic_split.py``).
"""
import ctypes
import functools
import itertools
import math

import numpy as np

from ..errors import ModelError
from .compile import compile_kernel, pointer
from .split import Grid

__all__ = ["on_grid", "GenericSplitScheme", "Unsupported", "split_scheme", "compiled_model", "solve_lines_numpy", "line_kernel",
           "MAX_COMPONENTS"]

#: The largest number of components the generic path serves.
MAX_COMPONENTS = 4


class Unsupported(Exception):
    """The model's expressions cannot be compiled for the fast path (the message says why)."""


# ----------------------------------------------------------------------------------------------- symbols
def _element_class():
    """A minimal UFL finite element (pure UFL has none of its own): value shape and degree on quadrilaterals."""
    import ufl
    from ufl.finiteelement import AbstractFiniteElement
    from ufl.pullback import identity_pullback
    from ufl.sobolevspace import H1, L2

    class Element(AbstractFiniteElement):
        def __init__(self, shape, degree):
            self._shape, self._degree = tuple(shape), int(degree)

        def __repr__(self):
            return f"GridElement({self._shape}, {self._degree})"

        __str__ = __repr__

        def __hash__(self):
            return hash(repr(self))

        def __eq__(self, other):
            return repr(self) == repr(other)

        sobolev_space = property(lambda self: H1 if self._degree else L2)
        pullback = property(lambda self: identity_pullback)
        embedded_superdegree = property(lambda self: self._degree)
        embedded_subdegree = property(lambda self: self._degree)
        cell = property(lambda self: ufl.quadrilateral)
        reference_value_shape = property(lambda self: self._shape)
        sub_elements = property(lambda self: [])
    return Element


class _Symbols:
    """The symbolic coefficients the hooks are called with, and the scheme's expressions built from them."""

    def __init__(self, model):
        import ufl
        Element = _element_class()
        self.ufl = ufl
        n = model.components
        self.n = n
        self.channels = int(getattr(model, "channels", 1))
        self.size = sum(k for _, k, _ in model.stage_layout)
        mesh = ufl.Mesh(Element((2,), 1))

        def coefficient(shape, degree):
            return ufl.Coefficient(ufl.FunctionSpace(mesh, Element(shape, degree)))
        self.w = coefficient((n,), 1)
        self.G = coefficient((n, 2), 0)
        self.f = coefficient((self.channels,), 1) if self.channels > 1 else coefficient((), 1)
        self.P = coefficient((self.size,), 0)
        self.Dbar = coefficient((n, n), 0)
        self.Bbar = coefficient((n, n), 1)
        self.c = coefficient((n,), 1)
        self.params, i = {}, 0
        for name, k, is_list in model.stage_layout:
            self.params[name] = [self.P[i + m] for m in range(k)] if is_list else self.P[i]
            i += k

    def prepare(self, expr, where, allow_grad):
        """Lower and differentiate ``expr``; replace :math:`\\nabla w` by :math:`G` (or refuse it); check that only the
        supported terminals remain."""
        from ufl.algorithms.apply_algebra_lowering import apply_algebra_lowering
        from ufl.algorithms.apply_derivatives import apply_derivatives
        from ufl.algorithms.analysis import extract_type
        from ufl.classes import Grad, Terminal, Coefficient, ConstantValue, Derivative
        expr = apply_derivatives(apply_algebra_lowering(self.ufl.as_ufl(expr)))
        grads = extract_type(expr, Grad)
        for g in grads:
            if g.ufl_operands[0] != self.w:
                raise Unsupported(f"{where} takes the gradient of {g.ufl_operands[0]!s} (only the state's gradient "
                                  "is supported)")
        if grads:
            if not allow_grad:
                raise Unsupported(f"{where} depends on the gradient of the state (evaluated at the nodes by the "
                                  "vertex rule, where it is discontinuous)")
            expr = self.ufl.replace(expr, {self.ufl.grad(self.w): self.G})
        for t in extract_type(expr, Terminal):
            if isinstance(t, (Coefficient, ConstantValue)) or type(t).__name__ in ("MultiIndex", "Label"):
                continue
            raise Unsupported(f"{where} uses {type(t).__name__} ({t!s}), which the grid path does not evaluate")
        if extract_type(expr, Derivative):
            raise Unsupported(f"{where} keeps an unevaluated derivative")
        return expr

    def unit(self, k, j):
        return self.ufl.as_vector([1.0 if m == j else 0.0 for m in range(k)])

    def d(self, expr, coefficient, j):
        """:math:`\\partial` ``expr`` / :math:`\\partial` ``coefficient`` :math:`_j` (flat component ``j``), by UFL."""
        from ufl.algorithms.apply_derivatives import apply_derivatives
        shape = coefficient.ufl_shape
        size = int(np.prod(shape)) if shape else 1
        direction = self.unit(size, j)
        if len(shape) == 2:
            direction = self.ufl.as_matrix(np.array([direction[m] for m in range(size)], dtype=object)
                                           .reshape(shape).tolist())
        elif not shape:
            direction = self.ufl.as_ufl(1.0)
        return apply_derivatives(self.ufl.derivative(expr, coefficient, direction))


# ----------------------------------------------------------------------------------------------- numpy programs
class Program:
    """Scalar UFL expressions (no free indices) compiled to one straight-line numpy function.

    ``Program(exprs, inputs)``: ``inputs`` the terminal coefficients in argument order; :meth:`__call__` takes, per
    input, a function ``component -> array or float`` (e.g. ``lambda c: w[..., c[0]]``) and returns the values of
    ``exprs`` (arrays, or floats where an expression is constant on the grid)."""

    def __init__(self, exprs, inputs):
        self.inputs = list(inputs)
        self._lines, self._memo, self._count = [], {}, itertools.count()
        self._terminals = {}                       # (input index, component) -> name
        outs = [self._emit(e, (), {}) for e in exprs]
        self.source, self._fn = self._generate(outs)
        self.size = len(self._lines)
        #: The indices of the inputs the program reads.
        self.reads = {k for k, _ in self._terminals}

    # -- emitting: each value is ("c", float) or ("v", name) ----------------------------------------
    def _new(self, code):
        name = f"t{next(self._count)}"
        self._lines.append((name, code))
        return ("v", name)

    def _emit(self, e, comp, env):
        key = (e, comp, tuple(env[i] for i in e.ufl_free_indices))
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._compute(e, comp, env)
        return hit

    def _compute(self, e, comp, env):
        from ufl import classes as c
        ops = e.ufl_operands
        if isinstance(e, c.Zero):
            return ("c", 0.0)
        if isinstance(e, c.ScalarValue):
            return ("c", float(e.value()))
        if isinstance(e, c.Identity):
            return ("c", 1.0 if comp[0] == comp[1] else 0.0)
        if isinstance(e, c.Coefficient):
            for k, t in enumerate(self.inputs):
                if t == e:
                    key = (k, comp)
                    if key not in self._terminals:
                        self._terminals[key] = self._new(f"T[{k}]({comp!r})")[1]
                    return ("v", self._terminals[key])
            raise Unsupported(f"unexpected coefficient {e!s}")
        if isinstance(e, c.Indexed):
            A, mi = ops
            idx = tuple(int(i) if isinstance(i, c.FixedIndex) else env[i.count()] for i in mi)
            return self._emit(A, idx, env)
        if isinstance(e, c.ComponentTensor):
            A, mi = ops
            env2 = dict(env)
            env2.update({i.count(): v for i, v in zip(mi, comp)})
            return self._emit(A, (), env2)
        if isinstance(e, c.IndexSum):
            A, mi = ops
            i = mi[0].count()
            out = ("c", 0.0)
            for k in range(e.dimension()):
                out = self._binary("+", out, self._emit(A, comp, {**env, i: k}))
            return out
        if isinstance(e, c.ListTensor):
            return self._emit(ops[comp[0]], comp[1:], env)
        if isinstance(e, c.Sum):
            return self._binary("+", self._emit(ops[0], comp, env), self._emit(ops[1], comp, env))
        if isinstance(e, c.Product):
            return self._binary("*", self._emit(ops[0], (), env), self._emit(ops[1], (), env))
        if isinstance(e, c.Division):
            return self._binary("/", self._emit(ops[0], (), env), self._emit(ops[1], (), env))
        if isinstance(e, c.Power):
            return self._call("np.power", self._emit(ops[0], (), env), self._emit(ops[1], (), env))
        if isinstance(e, (c.Conj, c.Real, c.Variable)):
            return self._emit(ops[0], comp, env)
        if isinstance(e, c.Imag):
            return ("c", 0.0)
        if isinstance(e, c.Abs):
            return self._call("np.abs", self._emit(ops[0], comp, env))
        if isinstance(e, c.Conditional):
            cond = self._emit(ops[0], (), env)
            return self._call("np.where", cond, self._emit(ops[1], comp, env), self._emit(ops[2], comp, env))
        if isinstance(e, c.BinaryCondition):
            symbol = {"EQ": "np.equal", "NE": "np.not_equal", "LT": "np.less", "GT": "np.greater",
                      "LE": "np.less_equal", "GE": "np.greater_equal", "AndCondition": "np.logical_and",
                      "OrCondition": "np.logical_or"}[type(e).__name__]
            return self._call(symbol, self._emit(ops[0], (), env), self._emit(ops[1], (), env))
        if isinstance(e, c.NotCondition):
            return self._call("np.logical_not", self._emit(ops[0], (), env))
        if isinstance(e, c.MinValue):
            return self._call("np.minimum", self._emit(ops[0], (), env), self._emit(ops[1], (), env))
        if isinstance(e, c.MaxValue):
            return self._call("np.maximum", self._emit(ops[0], (), env), self._emit(ops[1], (), env))
        if isinstance(e, c.Atan2):
            return self._call("np.arctan2", self._emit(ops[0], (), env), self._emit(ops[1], (), env))
        name = _MATH.get(type(e).__name__)
        if name is not None:
            return self._call(name, self._emit(ops[0], (), env))
        raise Unsupported(f"the UFL operation {type(e).__name__} is not supported on the grid path")

    def _binary(self, op, a, b):
        if a[0] == "c" and b[0] == "c":
            return ("c", {"+": a[1] + b[1], "*": a[1] * b[1], "/": a[1] / b[1] if b[1] else math.nan}[op])
        if op == "+":
            if a == ("c", 0.0):
                return b
            if b == ("c", 0.0):
                return a
        if op == "*":
            if ("c", 0.0) in (a, b):
                return ("c", 0.0)
            if a == ("c", 1.0):
                return b
            if b == ("c", 1.0):
                return a
        if op == "/" and b == ("c", 1.0):
            return a
        return self._new(f"{_text(a)} {op} {_text(b)}")

    def _call(self, fn, *args):
        if all(a[0] == "c" for a in args) and fn != "np.where":
            return ("c", float(eval(fn, {"np": np, "special": _special()})(*(a[1] for a in args))))
        return self._new(f"{fn}({', '.join(_text(a) for a in args)})")

    def _generate(self, outs):
        """Python source of the program, each temporary deleted after its last use."""
        last = {}
        for k, (_, code) in enumerate(self._lines):
            for tok in _tokens(code):
                last[tok] = k
        live_out = {o[1] for o in outs if o[0] == "v"}
        body = []
        for k, (name, code) in enumerate(self._lines):
            body.append(f"    {name} = {code}")
            dead = [t for t in _tokens(code) if last.get(t) == k and t not in live_out]
            if dead:
                body.append(f"    del {', '.join(sorted(set(dead)))}")
            if name not in last and name not in live_out:
                body.append(f"    del {name}")
        body.append(f"    return [{', '.join(_text(o) for o in outs)}]")
        source = "def program(T):\n" + "\n".join(body) + "\n"
        scope = {"np": np, "special": _special(), "inf": math.inf, "nan": math.nan}    # constants print as these
        with np.errstate(all="ignore"):
            exec(compile(source, "<fem_crossdiff generic program>", "exec"), scope)
        return source, scope["program"]

    def __call__(self, *lookups):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return self._fn(lookups)


_MATH = {"Sqrt": "np.sqrt", "Exp": "np.exp", "Ln": "np.log", "Cos": "np.cos", "Sin": "np.sin", "Tan": "np.tan",
         "Cosh": "np.cosh", "Sinh": "np.sinh", "Tanh": "np.tanh", "Acos": "np.arccos", "Asin": "np.arcsin",
         "Atan": "np.arctan", "Erf": "special.erf"}


@functools.lru_cache(maxsize=1)
def _special():
    try:
        import scipy.special
        return scipy.special
    except ImportError:                                       # pragma: no cover
        return None


def _text(value):
    return repr(value[1]) if value[0] == "c" else value[1]


def _tokens(code):
    import re
    return re.findall(r"\bt\d+\b", code)


# ----------------------------------------------------------------------------------------------- the compiled model
class CompiledModel:
    """The programs of one model structure: initial state, node coefficients, cell coefficients and their adjoints.

    ``initial(f)`` → (n) node arrays; ``nodes(w, f, P)`` → ``(J, q)``: :math:`R'` (n×n) and
    :math:`q = R - R'w + E` (n); ``cells(wc, G, P)`` → :math:`D` (n×n); ``nodes_adjoint(w, f, P, c, Bbar)`` →
    ``(d/dw (n), d/dP (size))`` of :math:`c\\cdot q - \\bar B : R'`; ``cells_adjoint(wc, G, P, Dbar)`` →
    ``(d/dw (n), d/dG (n×2), d/dP (size))`` of :math:`\\bar D : D`."""

    def __init__(self, model):
        n = model.components
        if not 1 <= n <= MAX_COMPONENTS:
            raise Unsupported(f"{n} components (the grid path serves 1 to {MAX_COMPONENTS})")
        if getattr(model, "output", None) is not None:
            raise Unsupported("the model maps its state to the image by its own output()")
        s = _Symbols(model)
        ufl = s.ufl
        self.n, self.size, self.channels = n, s.size, s.channels
        D = s.prepare(ufl.as_matrix(model.diffusion(s.w, s.params)), "diffusion()", True)
        R = s.prepare(ufl.as_vector(model.reaction(s.w, s.f, s.params)), "reaction()", False)
        Ex = model.explicit_reaction(s.w, s.f, s.params)
        E = None if Ex is None else s.prepare(ufl.as_vector(Ex), "explicit_reaction()", False)
        init = s.prepare(ufl.as_vector(model.initial(s.f)), "initial()", False)
        J = [[s.prepare(s.d(R[i], s.w, j), "reaction()", False) for j in range(n)] for i in range(n)]
        Jw = [sum((J[i][j] * s.w[j] for j in range(n)), ufl.as_ufl(0.0)) for i in range(n)]
        q = [R[i] - Jw[i] + (E[i] if E is not None else 0.0) for i in range(n)]
        q = [s.prepare(x, "reaction()", False) for x in q]
        self.initial_program = Program([init[i] for i in range(n)], [s.f])
        self.node_program = Program([J[i][j] for i in range(n) for j in range(n)] + q, [s.w, s.f, s.P])
        self.cell_program = Program([D[i, j] for i in range(n) for j in range(n)], [s.w, s.G, s.P])
        # adjoints: UFL's derivatives of the two scalar fields
        at_nodes = sum((s.c[i] * q[i] for i in range(n)), ufl.as_ufl(0.0))
        at_nodes = at_nodes - sum((s.Bbar[i, j] * J[i][j] for i in range(n) for j in range(n)), ufl.as_ufl(0.0))
        node_d = [s.d(at_nodes, s.w, j) for j in range(n)] + [s.d(at_nodes, s.P, m) for m in range(s.size)]
        self.node_adjoint_program = Program([s.prepare(x, "reaction()", False) for x in node_d],
                                            [s.w, s.f, s.P, s.c, s.Bbar])
        at_cells = sum((s.Dbar[i, j] * D[i, j] for i in range(n) for j in range(n)), ufl.as_ufl(0.0))
        cell_d = ([s.d(at_cells, s.w, j) for j in range(n)] + [s.d(at_cells, s.G, j) for j in range(2 * n)]
                  + [s.d(at_cells, s.P, m) for m in range(s.size)])
        self.cell_adjoint_program = Program([s.prepare(x, "diffusion()", False) for x in cell_d],
                                            [s.w, s.G, s.P, s.Dbar])

    # -- evaluation on grid arrays ---------------------------------------------------------------
    @staticmethod
    def _fields(a):
        if callable(a):                                           # component -> array, formed on demand
            return a
        if isinstance(a, list):                                   # the parameters: numbers
            return lambda comp: a[comp[0]]
        return lambda comp: a[(Ellipsis,) + comp] if comp else a

    def initial(self, f):
        return self.initial_program(self._fields(f))

    def nodes(self, w, f, P):
        out = self.node_program(self._fields(w), self._fields(f), self._fields(P))
        n = self.n
        return out[:n * n], out[n * n:]

    def cells(self, wc, G, P):
        return self.cell_program(self._fields(wc), self._fields(G), self._fields(P))

    def nodes_adjoint(self, w, f, P, c, Bbar):
        out = self.node_adjoint_program(*(self._fields(a) for a in (w, f, P, c, Bbar)))
        return out[:self.n], out[self.n:]

    def cells_adjoint(self, wc, G, P, Dbar):
        out = self.cell_adjoint_program(*(self._fields(a) for a in (wc, G, P, Dbar)))
        n = self.n
        return out[:n], out[n:3 * n], out[3 * n:]


_COMPILED = {}


def compiled_model(model):
    """The :class:`CompiledModel` of ``model``'s structure (compiled on first use, then cached); raises
    :class:`Unsupported` (cached too) when its expressions cannot be compiled."""
    key = _structure(model)
    if key not in _COMPILED:
        try:
            _COMPILED[key] = CompiledModel(model)
        except Unsupported as e:
            _COMPILED[key] = e
        except Exception as e:            # a hook that needs more than UFL (e.g. Firedrake's own function objects)
            _COMPILED[key] = Unsupported(f"its hooks do not evaluate on pure UFL symbols ({type(e).__name__}: "
                                         f"{str(e).splitlines()[0][:160] if str(e) else ''})")
    hit = _COMPILED[key]
    if isinstance(hit, Unsupported):
        raise hit
    return hit


def _structure(model):
    structure = getattr(model, "structure", None)
    if structure is None:
        return (type(model), id(model))
    try:
        hash(structure)
        return (type(model), structure)
    except TypeError:
        return (type(model), repr(structure))


# ----------------------------------------------------------------------------------------------- line solves
_DOUBLES = ctypes.POINTER(ctypes.c_double)


def line_kernel(n):
    """The C line solver of ``lines.c`` for ``n`` components (None where no compiler: said once)."""
    args = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long, _DOUBLES,
            _DOUBLES, ctypes.c_double, _DOUBLES, _DOUBLES, _DOUBLES, ctypes.c_int]
    return compile_kernel("lines.c", "lines_solve", args, N=int(n))


def _edges(D, H, W):
    ex = np.zeros((H, W - 1) + D.shape[2:])
    ex[:-1] += 0.5 * D
    ex[1:] += 0.5 * D
    ey = np.zeros((H - 1, W) + D.shape[2:])
    ey[:, :-1] += 0.5 * D
    ey[:, 1:] += 0.5 * D
    return ex, ey


def solve_lines_numpy(B, D, tau, rhs, axis, transpose=False):
    r"""The reference of ``lines.c``: :math:`(B + \tau K(E))x = r` (or its transpose) along rows (``axis=1``) or
    columns (``axis=0``), ``B`` (H, W, n, n), ``D`` (H−1, W−1, n, n), ``rhs`` (H, W, n): block Thomas in numpy,
    vectorised over the lines."""
    if axis == 0:
        return solve_lines_numpy(B.transpose(1, 0, 2, 3), D.transpose(1, 0, 2, 3), tau, rhs.transpose(1, 0, 2), 1,
                                 transpose).transpose(1, 0, 2).copy()
    H, W, n = rhs.shape
    E = _edges(D, H, W)[0]
    if transpose:
        B, E = B.swapaxes(-1, -2), E.swapaxes(-1, -2)
    C, d = np.zeros((H, W, n, n)), np.zeros((H, W, n))
    for j in range(W):
        el = tau * E[:, j - 1] if j > 0 else np.zeros((H, n, n))
        er = tau * E[:, j] if j < W - 1 else np.zeros((H, n, n))
        S = B[:, j] + el + er
        r = rhs[:, j].copy()
        if j > 0:
            S = S + el @ C[:, j - 1]
            r = r + np.einsum("hpq,hq->hp", el, d[:, j - 1])
        C[:, j] = np.linalg.solve(S, -er)
        d[:, j] = np.linalg.solve(S, r[..., None])[..., 0]
    x = np.empty((H, W, n))
    x[:, -1] = d[:, -1]
    for j in range(W - 2, -1, -1):
        x[:, j] = d[:, j] - np.einsum("hpq,hq->hp", C[:, j], x[:, j + 1])
    return x


# ----------------------------------------------------------------------------------------------- the scheme
class GenericSplitScheme:
    r"""The split scheme for any model the compiler serves (:func:`compiled_model`) on one :class:`Grid`.

    The interface of :class:`~fem_crossdiff.fast.split.SplitScheme`: :meth:`run`, :meth:`step`, :meth:`output`,
    :meth:`misfit`, :meth:`gradient`; the state is a list of one (H, W, n) array."""

    def __init__(self, model, grid, time=None, steps=None, compiled=True):
        self.model, self.grid = model, grid
        self.program = compiled_model(model)
        self.n = self.program.n
        self.time, self.steps = model.check_run(model.time if time is None else time,
                                                model.steps if steps is None else steps)
        self.tau = self.time / self.steps
        self.stages = list(model.stages)
        self.kernel = line_kernel(self.n) if compiled else None
        self._work = None

    @staticmethod
    def supports(model):
        """Whether the model's expressions compile for this path (else :func:`why_not` says why)."""
        try:
            compiled_model(model)
        except Unsupported:
            return False
        return True

    @staticmethod
    def why_not(model):
        """Why ``model`` does not compile for the grid path (None if it does)."""
        try:
            compiled_model(model)
        except Unsupported as e:
            return str(e)
        return None

    def stage(self, n):
        return self.stages[n * len(self.stages) // self.steps]

    def _P(self, n):
        return self.model.pack_stage(self.stage(n)).astype(float).tolist()

    # -- data ---------------------------------------------------------------------------------------
    def initial(self, f):
        """``([w^0], (f,))``: the initial state (H, W, n) by the model's ``initial``, and the data."""
        f = np.asarray(f, dtype=float)
        values = self.program.initial(f)
        w = np.empty(f.shape[:2] + (self.n,))
        for i, v in enumerate(values):
            w[..., i] = v
        return [w], (f,)

    @staticmethod
    def state_parts(state):
        """A state array (H, W, n) (or (H, W) for one component) as the list :meth:`step` takes."""
        state = np.asarray(state, dtype=float)
        return [np.ascontiguousarray(state if state.ndim == 3 else state[..., None])]

    def output(self, w):
        """The image: :math:`u = w_1`."""
        return w[0][..., 0].copy()

    # -- coefficients -----------------------------------------------------------------------------
    def _gradient_adjoint(self, Gbar, out):
        """Add the adjoint of the cell gradients (:meth:`_inputs`: x along columns, y up) for ``Gbar``
        (H−1, W−1, n, 2) to ``out`` (H, W, n)."""
        s = 0.5 / self.grid.h
        bx, by = Gbar[..., 0] * s, -Gbar[..., 1] * s
        out[:-1, 1:] += bx
        out[:-1, :-1] -= bx
        out[1:, 1:] += bx
        out[1:, :-1] -= bx
        out[1:, :-1] += by
        out[:-1, :-1] -= by
        out[1:, 1:] += by
        out[:-1, 1:] -= by

    def _inputs(self, w):
        """Cell-centre values and gradients of ``w`` as the lookups the cell programs read (formed on demand)."""
        g = self.grid
        grad = {}

        def centre(comp):
            return g.centre(w[..., comp[0]])

        def gradient(comp):
            i, d = comp
            if i not in grad:
                gx, gy = g.gradient(w[..., i])
                grad[i] = (gx, -gy)                                   # y up, rows down
            return grad[i][d]
        return centre, gradient

    def _systems(self, n, w, f, with_rhs=True):
        """``(B, D, rhs)`` of step ``n`` from ``w`` (H, W, n): node blocks, cell coefficients, right-hand side (None
        unless ``with_rhs``)."""
        tau, m, k = self.tau, self.grid.mass, self.n
        P = self._P(n)
        J, q = self.program.nodes(w, f, P)
        B = np.zeros(w.shape[:2] + (k, k))
        rhs = np.empty(w.shape) if with_rhs else None
        mt = tau * m
        for i in range(k):
            B[..., i, i] = m
            if with_rhs:
                rhs[..., i] = m * w[..., i] + mt * q[i]
            for j in range(k):
                if not _is_zero(J[i * k + j]):
                    B[..., i, j] -= mt * J[i * k + j]
        H, W = w.shape[:2]
        D = np.empty((H - 1, W - 1, k, k))
        for ij, value in enumerate(self.program.cells(*self._inputs(w), P)):
            D[..., ij // k, ij % k] = value
        return B, D, rhs

    def _solve(self, B, D, rhs, axis, transpose=False):
        if self.kernel is None:
            return solve_lines_numpy(B, D, self.tau, rhs, axis, transpose)
        H, W, k = rhs.shape
        rhs = np.ascontiguousarray(rhs)
        x = np.empty(rhs.shape)
        need = max(H, W) * (k * k + k)
        if self._work is None or self._work.size < need:
            self._work = np.empty(need)
        if axis == 1:
            dims = (H, W, W, 1, W - 1, 1)
        else:
            dims = (W, H, 1, W, 1, W - 1)
        self.kernel(*dims, pointer(B), pointer(D), float(self.tau), pointer(rhs), pointer(x), pointer(self._work),
                    int(bool(transpose)))
        return x

    @staticmethod
    def _apply(B, x, transpose=False):
        return np.einsum("hwqp,hwq->hwp" if transpose else "hwpq,hwq->hwp", B, x)

    def step(self, n, w, data, keep=False):
        """:math:`w^{n+1}` (as ``[array]``) from :math:`w^n` (``[array]``); with ``keep`` also :math:`w^*`."""
        B, D, rhs = self._systems(n, w[0], data[0])
        z = self._solve(B, D, rhs, 1)
        new = self._solve(B, D, self._apply(B, z), 0)
        return ([new], z) if keep else [new]

    # -- runs -------------------------------------------------------------------------------------------
    def run(self, f, callback=None):
        """The final state ``[w^N]`` from the data ``f`` (H, W)."""
        w, data = self.initial(f)
        for n in range(self.steps):
            w = self.step(n, w, data)
            if callback is not None:
                callback(n + 1, self.steps)
        if not np.all(np.isfinite(w[0])):
            raise ModelError(f"model '{self.model.name}': the state became non-finite")
        return w

    def denoise(self, f, callback=None):
        """``output(run(f))`` and the first edge indicator (zeros for one component)."""
        w = self.run(f, callback)
        return self.output(w), (w[0][..., 1].copy() if self.n > 1 else np.zeros(w[0].shape[:2]))

    # -- misfit and gradient -----------------------------------------------------------------------------------
    def misfit(self, y, clean, kind="L2"):
        """As :meth:`~fem_crossdiff.fast.split.SplitScheme.misfit` (grey images)."""
        e = np.asarray(y, dtype=float) - clean
        scale = 1.0 / self.grid.area
        me = e * self.grid.mass if kind == "pixels" else self.grid.mass_product(e)
        return float(np.sum(e * me) * scale), 2 * scale * me

    def gradient(self, f, clean, misfit="L2"):
        """``(J, dJ/dp)`` in pack order by the discrete adjoint of every step (states kept, coefficients
        recomputed backwards)."""
        w, data = self.initial(f)
        tape = []
        for n in range(self.steps):
            new, z = self.step(n, w, data, keep=True)
            tape.append((w[0], z, new[0]))
            w = new
        J, ybar = self.misfit(self.output(w), clean, misfit)
        wbar = np.zeros(w[0].shape)
        wbar[..., 0] = ybar
        K = len(self.stages)
        grads = [np.zeros(len(self.model.pack_stage(st))) for st in self.stages]
        for n in range(self.steps - 1, -1, -1):
            k = n * K // self.steps
            wbar, pbar = self._step_adjoint(n, *tape[n], wbar, data[0])
            grads[k] += pbar
        return J, np.concatenate(grads)

    def _step_adjoint(self, n, w, z, w1, wbar1, f):
        """:math:`(\\bar w^n, \\bar p)` of one step from :math:`\\bar w^{n+1}`."""
        g, tau, m, k = self.grid, self.tau, self.grid.mass, self.n
        B, D, _ = self._systems(n, w, f, with_rhs=False)
        a = self._solve(B, D, wbar1, 0, transpose=True)
        c = self._solve(B, D, self._apply(B, a, transpose=True), 1, transpose=True)
        P = self._P(n)
        # nodes: r = m (w + tau q(w)) and B = m (I - tau J(w)): sigma = (m tau c).q - (m tau Bbar):J, with
        # Bbar = a (z - w1)^T - c z^T; each component formed only if the program reads it
        mt = m * tau
        zw = z - w1

        def Bbar(comp):
            i, j = comp
            return mt * (a[..., i] * zw[..., j] - c[..., i] * z[..., j])
        dw, dp = self.program.nodes_adjoint(w, f, P, lambda comp: mt * c[..., comp[0]], Bbar)
        wbar = m[..., None] * c
        for i in range(k):
            if not _is_zero(dw[i]):
                wbar[..., i] += dw[i]
        pbar = np.array([_total(x, g.shape) for x in dp])
        # cells: Dbar the half sum of its edges' -tau (Δc Δz^T) (x-edges) and -tau (Δa Δw1^T) (y-edges)
        dc, dz, da, dw1 = np.diff(c, axis=1), np.diff(z, axis=1), np.diff(a, axis=0), np.diff(w1, axis=0)

        def Dbar(comp):
            i, j = comp
            ex, ey = dc[..., i] * dz[..., j], da[..., i] * dw1[..., j]
            return (-0.5 * tau) * (ex[:-1] + ex[1:] + ey[:, :-1] + ey[:, 1:])
        centre, gradient = self._inputs(w)
        dwc, dG, dpc = self.program.cells_adjoint(centre, gradient, P, Dbar)
        cells = (g.H - 1, g.W - 1)
        for i in range(k):
            if not _is_zero(dwc[i]):
                g.centre_adjoint(_field(dwc[i], cells), wbar[..., i])
        if not all(_is_zero(x) for x in dG):
            Gbar = np.stack([_field(x, cells) for x in dG], -1).reshape(cells + (k, 2))
            self._gradient_adjoint(Gbar, wbar)
        for j in range(self.program.size):
            pbar[j] += _total(dpc[j], cells)
        return wbar, pbar


def _is_zero(x):
    return isinstance(x, float) and x == 0.0


def _field(x, shape):
    return np.broadcast_to(x, shape) if not isinstance(x, np.ndarray) or x.shape != shape else x


def _total(x, shape):
    return float(np.sum(x)) if isinstance(x, np.ndarray) and x.shape == shape else float(x) * int(np.prod(shape))


def on_grid(model):
    """Whether :func:`split_scheme` serves ``model`` (the hand-written path, or its UFL compiles for the grid)."""
    from .split import SplitScheme
    return SplitScheme.supports(model) or GenericSplitScheme.supports(model)


def split_scheme(model, grid, time=None, steps=None):
    """The fastest split scheme on grid arrays for ``model``: the hand-written
    :class:`~fem_crossdiff.fast.split.SplitScheme` for the built-in family and colour models, else
    :class:`GenericSplitScheme`; raises :class:`Unsupported` (saying why) when neither serves it."""
    from .split import SplitScheme
    if SplitScheme.supports(model):
        return SplitScheme(model, grid, time, steps)
    return GenericSplitScheme(model, grid, time, steps)
