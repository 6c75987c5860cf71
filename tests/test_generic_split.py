"""The generic split scheme (fem_crossdiff.fast.generic): any model's UFL compiled for the grid. Its n×n line solves
against a dense solve, its evolution against Firedrake's assembly of the UFL split forms, the built-in family through
it against the hand-written path, its discrete adjoint against pyadjoint's tape and by a Taylor test, and the
fallback to Firedrake (said once, with the reason) for a model it cannot compile."""
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import ufl
from ufl.domain import extract_unique_domain

from fem_crossdiff.fast import SlowPathWarning
from fem_crossdiff.fast.generic import GenericSplitScheme, Unsupported, compiled_model, line_kernel, \
    solve_lines_numpy, split_scheme
from fem_crossdiff.fast.split import Grid, SplitScheme
from fem_crossdiff.fem import Evolution, image_mesh, image_to_function
from fem_crossdiff.learning.loss import DatasetLoss
from fem_crossdiff.learning.parametrisation import learned_template, pack, unpack, with_psi
from fem_crossdiff.learning.split_loss import SplitDatasetLoss, uses_split_path
from fem_crossdiff.model import UFLModel, load_definition, make_model

HERE = Path(__file__).resolve().parent
DEFS = HERE / "user_models.py"
DEMOS = HERE.parent / "demos" / "models"


def _user(name, **changes):
    return load_definition(f"{DEFS}:{name}")().replace(scheme="split", **changes)


def _models():
    """Models of 2, 3 and 4 components; SecondEdge: 3 components, 12 stages, RBFs and an explicit reaction."""
    return {"nonlinear-cross": lambda: _user("NonlinearCross"),
            "two-scales": lambda: _user("TwoScales"),
            "four-fields": lambda: _user("FourFields"),
            "demo-two-scales": lambda: load_definition(f"{DEMOS / 'two_scales.py'}:TwoScales")(steps=6).replace(
                scheme="split"),
            "second-edge": lambda: load_definition(f"{DEMOS / 'second_edge.py'}:SecondEdge")().replace(
                scheme="split")}


def _dense(B, E, tau, axis, H, W):
    """The line systems' matrix entry by entry: node blocks B, edge coupling tau E."""
    n = B.shape[-1]
    A = np.zeros((H * W * n, H * W * n))
    for i in range(H * W):
        A[n * i:n * i + n, n * i:n * i + n] = B.reshape(-1, n, n)[i]
    for r in range(H if axis == 1 else H - 1):
        for c in range(W - 1 if axis == 1 else W):
            a, z = r * W + c, (r * W + c + 1) if axis == 1 else (r + 1) * W + c
            e = tau * E[r, c]
            for p, q, s in ((a, a, 1), (z, z, 1), (a, z, -1), (z, a, -1)):
                A[n * p:n * p + n, n * q:n * q + n] += s * e
    return A


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("transpose", [False, True])
def test_block_line_solves_equal_a_dense_solve(n, transpose, rng):
    """C and numpy line solvers with full n×n node blocks (the linearised reaction couples the components) and
    nonsymmetric coefficients solve the assembled matrix (or its transpose) to round-off, rows and columns."""
    H, W, tau = 5, 6, 2.3
    grid = Grid((H, W))
    B = grid.mass[..., None, None] * (np.eye(n) * rng.uniform(1, 2, (H, W, n, 1)) + 0.2 * rng.standard_normal(
        (H, W, n, n)))
    D = np.eye(n) * rng.uniform(0.5, 2, (H - 1, W - 1, n, 1)) + 0.4 * rng.standard_normal((H - 1, W - 1, n, n))
    rhs = rng.standard_normal((H, W, n))
    assert line_kernel(n) is not None
    scheme = GenericSplitScheme.__new__(GenericSplitScheme)
    scheme.tau, scheme._work = tau, None
    for axis in (1, 0):
        ex, ey = grid.edges(D)
        A = _dense(B, ex if axis == 1 else ey, tau, axis, H, W)
        want = np.linalg.solve(A.T if transpose else A, rhs.reshape(-1)).reshape(H, W, n)
        scheme.kernel = line_kernel(n)
        got_c = scheme._solve(np.ascontiguousarray(B), np.ascontiguousarray(D), rhs, axis, transpose)
        got_np = solve_lines_numpy(B, D, tau, rhs, axis, transpose)
        for got in (got_c, got_np):
            assert np.max(np.abs(got - want)) < 1e-12 * np.max(np.abs(want))


@pytest.mark.parametrize("name,refine", [("nonlinear-cross", 0), ("two-scales", 1), ("four-fields", 0),
                                         ("four-fields", 1), ("demo-two-scales", 0), ("second-edge", 0)])
def test_generic_path_equals_the_ufl_split_scheme(name, refine, rng):
    """Evolution on the grid arrays (the model's UFL compiled) equals Firedrake's assembly and solve of the UFL split
    forms, whole runs and step by step."""
    model = _models()[name]()
    img = rng.random((11, 13))
    mesh = image_mesh(img.shape, refine)
    slow, fast = Evolution(model, mesh, fast=False), Evolution(model, mesh)
    ws = slow.run(image_to_function(img, slow.F)).dat.data_ro.copy()
    wf = fast.run(image_to_function(img, fast.F)).dat.data_ro.copy()
    assert isinstance(fast._split_scheme(), GenericSplitScheme) and slow._split_scheme() is None
    assert np.max(np.abs(ws - wf)) < 1e-12 * max(1.0, np.max(np.abs(ws)))
    fast.set_initial(image_to_function(img, fast.F))
    for n in range(fast.steps):
        fast.step(n)
    assert np.max(np.abs(fast.w.dat.data_ro - ws)) < 1e-12 * max(1.0, np.max(np.abs(ws)))


def _learned():
    model = with_psi(learned_template(stages=2, centres=5, time=2.0, steps=4, modulation=3), 3)
    x = pack(model) + 0.05 * np.random.default_rng(0).random(pack(model).size)
    stages = [dict(st, wpsi=(0.02 * np.random.default_rng(k).standard_normal(3)).tolist(), lam=0.1 + 0.05 * k,
                   mu=0.2) for k, st in enumerate(unpack(model, x))]
    return model.with_stages(stages).replace(scheme="split")


@pytest.mark.parametrize("name", ["learned", "perona-malik", "nonlinear-complex"])
def test_built_in_family_through_the_generic_path_equals_the_hand_written_one(name, rng):
    """The family's own UFL compiled (influences of v and of |grad u|, RBFs, psi) gives the hand-written fast path's
    states and gradient to round-off."""
    model = _learned() if name == "learned" else make_model(name, steps=3).replace(scheme="split")
    img, clean = rng.random((12, 15)), rng.random((12, 15))
    grid = Grid(img.shape)
    generic, hand = GenericSplitScheme(model, grid), SplitScheme(model, grid)
    assert isinstance(split_scheme(model, grid), SplitScheme)          # the hand-written path stays the default
    w = generic.run(img)[0]
    assert np.max(np.abs(w - np.concatenate(hand.run(img), -1))) < 1e-12
    (J1, g1), (J2, g2) = generic.gradient(img, clean), hand.gradient(img, clean)
    assert abs(J1 - J2) < 1e-13 * J2
    assert np.max(np.abs(g1 - g2)) < 1e-11 * np.max(np.abs(g2))


@pytest.mark.parametrize("name", ["two-scales", "four-fields",
                                  pytest.param("demo-two-scales", marks=pytest.mark.slow),
                                  pytest.param("second-edge", marks=pytest.mark.slow)])
def test_generic_gradient_equals_pyadjoints_tape_of_the_ufl_scheme(name):
    """The generic discrete adjoint (UFL's derivatives of the model's expressions, compiled) gives pyadjoint's gradient
    of the UFL split scheme to round-off, every parameter of every stage."""
    model = _models()[name]()
    rng = np.random.default_rng(7)
    pairs = [(rng.random((10, 12)), rng.random((10, 12)))]
    x = pack(model)
    x = x + 0.01 * rng.random(x.size) * (x != 0)                       # off the defaults, zeros kept
    assert uses_split_path(model)
    J_tape, g_tape = DatasetLoss(model, pairs).loss_and_gradient(x)
    loss = SplitDatasetLoss(model, pairs)
    assert isinstance(loss.scheme, GenericSplitScheme)
    J_fast, g_fast = loss.loss_and_gradient(x)
    assert abs(J_fast - J_tape) < 1e-12 * J_tape
    assert np.max(np.abs(g_fast - g_tape)) < 1e-9 * np.max(np.abs(g_tape))
    assert np.count_nonzero(np.abs(g_tape) > 1e-12 * np.max(np.abs(g_tape))) > 0.5 * x.size


@pytest.mark.parametrize("name", ["two-scales", "four-fields"])
def test_generic_gradient_passes_a_taylor_test(name):
    model = _models()[name]()
    rng = np.random.default_rng(3)
    pairs = [(rng.random((14, 13)), rng.random((14, 13))) for _ in range(2)]
    loss = SplitDatasetLoss(model, pairs, misfit="pixels")
    x = pack(model)
    J0, g = loss.loss_and_gradient(x)
    d = rng.uniform(0.5, 1.0, x.size) * np.maximum(np.abs(x), 0.1)
    hs = 1e-3 * 0.5 ** np.arange(4)
    r = np.array([abs(loss.loss(x + h * d) - J0 - h * g @ d) for h in hs])
    assert np.all(np.log2(r[:-1] / r[1:]) > 1.9), r


class GradientReaction(UFLModel):
    """A reaction that reads grad u: the vertex rule evaluates it where it is discontinuous; not compiled."""
    components = 2
    parameters = {"k": (0.1, 0.01, 1.0)}
    steps = 2

    def diffusion(self, w, p):
        return ufl.as_matrix([[1.0, 0.0], [0.0, 1.0]])

    def reaction(self, w, f, p):
        return ufl.as_vector([f - w[0], ufl.inner(ufl.grad(w[0]), ufl.grad(w[0])) / p["k"] - w[1]])


class Located(UFLModel):
    """A diffusion that depends on the position: not compiled."""
    components = 1
    parameters = {"a": (1.0, 0.1, 2.0)}
    steps = 2

    def diffusion(self, w, p):
        x = ufl.SpatialCoordinate(extract_unique_domain(w))
        return ufl.as_matrix([[p["a"] + 0.1 * x[0]]])


class MeshReader(UFLModel):
    """A diffusion that asks Firedrake's function for its mesh: the hooks need more than UFL; not compiled."""
    components = 1
    parameters = {"a": (1.0, 0.1, 2.0)}
    steps = 2

    def diffusion(self, w, p):
        h = ufl.CellDiameter(w.function_space().mesh())
        return ufl.as_matrix([[p["a"] * (1 + 0.01 * h)]])


@pytest.mark.parametrize("cls,why", [(GradientReaction, "reaction() depends on the gradient of the state"),
                                     (Located, "diffusion() uses SpatialCoordinate"),
                                     (MeshReader, "its hooks do not evaluate on pure UFL symbols (AttributeError")])
def test_a_model_that_does_not_compile_falls_back_to_firedrake_once_saying_why(cls, why, rng):
    model = cls().replace(scheme="split")
    with pytest.raises(Unsupported, match=re.escape(why)):
        compiled_model(model)
    assert not GenericSplitScheme.supports(model) and not uses_split_path(model)
    img = rng.random((6, 7))
    ev = Evolution(model, image_mesh(img.shape))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev.run(image_to_function(img, ev.F))
        ev.run(image_to_function(img, ev.F))
    said = [w for w in caught if issubclass(w.category, SlowPathWarning)]
    assert len(said) == 1 and why in str(said[0].message) and "Firedrake runs it instead" in str(said[0].message)
    slow = Evolution(model, image_mesh(img.shape), fast=False)
    assert np.max(np.abs(slow.run(image_to_function(img, slow.F)).dat.data_ro - ev.w.dat.data_ro)) < 1e-14


def test_one_component_model_with_conditionals_runs_on_the_grid(rng):
    """n = 1 (the state is the image alone), with the UFL of branches (conditional, abs, max_value, sqrt): states
    and gradient as the UFL scheme's."""
    class Branches(UFLModel):
        components = 1
        parameters = {"a": (0.7, 0.1, 2.0), "lam": (0.2, 0.0, 1.0), "t": (0.5, 0.0, 1.0)}
        steps = 3

        def diffusion(self, w, p):
            u = w[0]
            return ufl.as_matrix([[p["a"] / (1 + u ** 2) + ufl.conditional(ufl.gt(u, p["t"]), 0.1 * p["t"], 0.0)
                                   + 0.05 * abs(u - p["t"]) + 0.1 * ufl.max_value(u, 0.2 * p["a"])]])

        def reaction(self, w, f, p):
            return ufl.as_vector([p["lam"] * (f - w[0]) + 0.1 * ufl.sqrt(1 + w[0] ** 2)])
    model = Branches().replace(scheme="split")
    img = rng.random((7, 9))
    slow, fast = (Evolution(model, image_mesh(img.shape), fast=flag) for flag in (False, True))
    ws = slow.run(image_to_function(img, slow.F)).dat.data_ro.copy()
    wf = fast.run(image_to_function(img, fast.F)).dat.data_ro.copy()
    assert isinstance(fast._split_scheme(), GenericSplitScheme)
    assert np.max(np.abs(ws - wf)) < 1e-13
    pairs = [(rng.random(img.shape), img)]
    J_tape, g_tape = DatasetLoss(model, pairs).loss_and_gradient(pack(model))
    J_fast, g_fast = SplitDatasetLoss(model, pairs).loss_and_gradient(pack(model))
    assert abs(J_fast - J_tape) < 1e-12 * J_tape
    assert np.max(np.abs(g_fast - g_tape)) < 1e-10 * np.max(np.abs(g_tape))


def test_generic_loss_is_the_same_on_one_and_two_ranks(tmp_path, mpirun):
    """SplitDatasetLoss of a user model deals its images over the ranks: the same value and gradient on 1 and 2."""
    script = tmp_path / "loss.py"
    script.write_text(
        "import sys, json, numpy as np\n"
        "from mpi4py import MPI\n"
        "from fem_crossdiff.model import load_definition\n"
        "from fem_crossdiff.learning.parametrisation import pack\n"
        "from fem_crossdiff.learning.split_loss import SplitDatasetLoss\n"
        f"m = load_definition({str(DEFS)!r} + ':TwoScales')().replace(scheme='split')\n"
        "rng = np.random.default_rng(2)\n"
        "pairs = [(rng.random((9, 10)), rng.random((9, 10))) for _ in range(3)]\n"
        "J, g = SplitDatasetLoss(m, pairs).loss_and_gradient(pack(m))\n"
        "if MPI.COMM_WORLD.rank == 0:\n"
        "    json.dump([J, list(g)], open(sys.argv[1], 'w'))\n")
    for n in (1, 2):
        mpirun(n, script, tmp_path / f"r{n}.json")
    (J1, g1), (J2, g2) = (json.loads((tmp_path / f"r{n}.json").read_text()) for n in (1, 2))
    assert abs(J1 - J2) < 1e-14 * J1
    assert np.max(np.abs(np.subtract(g1, g2))) < 1e-13 * np.max(np.abs(g1))


def test_denoise_runs_a_user_model_on_the_grid_as_its_ufl_scheme(rng):
    """``fc.denoise`` of a user model with the split scheme takes the grid path (no Firedrake solve) and gives the
    pixels of the UFL split scheme."""
    from fem_crossdiff.fem import denoise, function_to_image
    from fem_crossdiff.fem.arrays import split_fast_path
    model = _user("TwoScales")
    img = rng.random((12, 10))
    assert split_fast_path(model)
    slow = Evolution(model, image_mesh(img.shape), fast=False)
    expected = function_to_image(slow.run(image_to_function(img, slow.F)).sub(0))
    assert np.max(np.abs(denoise(img, model) - expected)) < 1e-12
