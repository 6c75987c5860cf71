"""The split scheme: its UFL definition (fem.Evolution, scheme "split") against its fast path on grid arrays
(fem_crossdiff.fast.split) — line solves, steps, whole evolutions, gradients against pyadjoint's tape —, its
invariants (conservation, unconditional contraction of the lumped L² norm), the model's scheme in files, and the
Firedrake-free denoise."""
import json
import subprocess
import sys

import numpy as np
import pytest

import fem_crossdiff as fc
from fem_crossdiff.fast.split import Grid, SplitScheme, interpolant, line_kernels, solve_lines
from fem_crossdiff.fem import Evolution, image_mesh, image_to_function
from fem_crossdiff.learning.loss import DatasetLoss
from fem_crossdiff.learning.pairs import training_pairs
from fem_crossdiff.learning.parametrisation import learned_template, pack, unpack, with_psi
from fem_crossdiff.learning.split_loss import SplitDatasetLoss
from fem_crossdiff.model import ColourModel, make_model


@pytest.fixture(scope="module")
def learned():
    """A 2-stage learnable model with h11(v) and psi(v), parameters moved off the template, split scheme."""
    model = with_psi(learned_template(stages=2, centres=5, time=2.0, steps=4, modulation=3), 3)
    x = pack(model) + 0.05 * np.random.default_rng(0).random(pack(model).size)
    stages = [dict(st, wpsi=(0.02 * np.random.default_rng(k).standard_normal(3)).tolist(), lam=0.1 + 0.05 * k,
                   mu=0.2) for k, st in enumerate(unpack(model, x))]
    return model.with_stages(stages).replace(scheme="split")


def _dense(b, E, tau, axis, H, W):
    """The line systems' matrix, assembled entry by entry (the reference of the line solves)."""
    n = H * W
    A = np.zeros((2 * n, 2 * n))
    for i in range(n):
        A[2 * i, 2 * i], A[2 * i + 1, 2 * i + 1] = b.reshape(-1, 2)[i]
    for r in range(H if axis == 1 else H - 1):
        for c in range(W - 1 if axis == 1 else W):
            a, z = r * W + c, (r * W + c + 1) if axis == 1 else (r + 1) * W + c
            e = tau * E[r, c].reshape(2, 2)
            for p, q, s in ((a, a, 1), (z, z, 1), (a, z, -1), (z, a, -1)):
                A[2 * p:2 * p + 2, 2 * q:2 * q + 2] += s * e
    return A


@pytest.mark.parametrize("transpose", [False, True])
def test_line_solves_in_c_and_numpy_equal_a_dense_solve(transpose, rng):
    """Both line solvers (rows, columns; the transposed system too) solve the assembled matrix to round-off, with
    nonsymmetric 2×2 coefficients whose symmetric part is positive definite."""
    H, W, tau = 5, 7, 3.7
    grid = Grid((H, W))
    b = grid.mass[..., None] * rng.uniform(1, 2, (H, W, 2))
    D = np.empty((H - 1, W - 1, 4))
    D[..., 0], D[..., 3] = rng.uniform(0.5, 2, (2, H - 1, W - 1))
    D[..., 1], D[..., 2] = 0.3 + rng.uniform(-2, 2, (H - 1, W - 1)), -0.3 + rng.uniform(-2, 2, (H - 1, W - 1))
    rhs = rng.standard_normal((H, W, 2))
    assert None not in line_kernels()
    for axis in (1, 0):
        E = grid.edges(D)[0 if axis == 1 else 1]
        A = _dense(b, E, tau, axis, H, W)
        want = np.linalg.solve(A.T if transpose else A, rhs.reshape(-1)).reshape(H, W, 2)
        for kernels in (line_kernels(), None):
            got = solve_lines(b, D, tau, rhs, axis, transpose, kernels)
            assert np.max(np.abs(got - want)) < 1e-12 * np.max(np.abs(want))


def _pair(size=20, seed=1, colour=False):
    return training_pairs(["brick"] if not colour else ["chelsea"], 25, patch=size, per_image=1, seed=seed,
                          colour=colour)[0]


def _models(learned):
    luma = learned.replace(scheme="split")
    colour = ColourModel(luma, [dict(st, dc=1.5 + k, kc=0.07, lamc=0.05, kappac=0.5 * (1 - k), pc=1.0 + 0.6 * k)
                                for k, st in enumerate(luma.stages)])  # kappac > 0 and = 0: both branches
    return {"heat": make_model("heat", steps=3).replace(scheme="split"),
            "perona-malik": make_model("perona-malik", steps=3).replace(scheme="split"),
            "nonlinear-complex": make_model("nonlinear-complex", steps=3).replace(scheme="split"),
            "learned": learned, "colour": colour}


@pytest.mark.parametrize("name", ["heat", "perona-malik", "nonlinear-complex", "learned", "colour"])
@pytest.mark.parametrize("refine", [0, 1])
def test_fast_path_equals_the_ufl_scheme(name, refine, learned):
    """The grid arrays' evolution equals Firedrake's assembly and solve of the UFL split forms (step by step and the
    whole run), on the pixel mesh and on the mesh refined once."""
    model = _models(learned)[name]
    clean, noisy = _pair(colour=name == "colour")
    mesh = image_mesh(noisy.shape[:2], refine)
    slow = Evolution(model, mesh, fast=False)
    fast = Evolution(model, mesh)
    assert slow.scheme == fast.scheme == "split"                 # the model's own scheme
    ws = slow.run(image_to_function(noisy, slow.F)).dat.data_ro.copy()
    wf = fast.run(image_to_function(noisy, fast.F)).dat.data_ro.copy()
    assert fast._split_scheme() is not None and slow._split_scheme() is None
    assert np.max(np.abs(ws - wf)) < 1e-12
    fast.set_initial(image_to_function(noisy, fast.F))           # step by step (what a callback or a study sees)
    for n in range(fast.steps):
        fast.step(n)
    assert np.max(np.abs(fast.w.dat.data_ro - ws)) < 1e-12


@pytest.mark.parametrize("name,misfit,refine", [("learned", "L2", 0), ("learned", "pixels", 1),
                                                 ("colour", "L2", 0)])
def test_fast_gradient_equals_pyadjoints_tape_of_the_ufl_scheme(name, misfit, refine, learned):
    """The split steps' hand-written discrete adjoint gives pyadjoint's gradient (its tape of the interpolations and
    linear solves of the UFL scheme) to round-off, every parameter block included."""
    model = _models(learned)[name]
    pairs = [_pair(16, seed=s, colour=name == "colour") for s in (1, 2)]
    x = pack(model)
    J_tape, g_tape = DatasetLoss(model, pairs, refine=refine, misfit=misfit).loss_and_gradient(x)
    J_fast, g_fast = SplitDatasetLoss(model, pairs, refine=refine, misfit=misfit).loss_and_gradient(x)
    assert abs(J_fast - J_tape) < 1e-12 * J_tape
    assert np.max(np.abs(g_fast - g_tape)) < 1e-9 * np.max(np.abs(g_tape))
    assert np.count_nonzero(np.abs(g_tape) > 1e-12 * np.max(np.abs(g_tape))) > 0.8 * x.size


def test_split_loss_passes_a_taylor_test(learned):
    pairs = [_pair(16, seed=s) for s in (1, 2)]
    loss = SplitDatasetLoss(learned, pairs, objective="psnr")
    x = pack(learned)
    J0, g = loss.loss_and_gradient(x)
    d = np.random.default_rng(5).uniform(0.5, 1.0, x.size) * np.maximum(np.abs(x), 0.1)
    hs = 1e-3 * 0.5 ** np.arange(4)
    r = np.array([abs(loss.loss(x + h * d) - J0 - h * g @ d) for h in hs])
    assert np.all(np.log2(r[:-1] / r[1:]) > 1.9), r


def test_conservation_and_unconditional_contraction(learned, rng):
    """Without reaction each component's lumped mean is conserved, and the lumped L² norm never grows, whatever the
    step: the split scheme is unconditionally stable (for a uniformly elliptic D), here with τ up to 1e6."""
    base = learned.replace(psi=None, stages=[{**{k: v for k, v in st.items() if k != "wpsi"}, "lam": 0.0, "mu": 0.0}
                                             for st in learned.stages])
    grid = Grid((17, 23))
    f = rng.random(grid.shape)
    for time in (1.0, 1e3, 1e6):
        scheme = SplitScheme(base.replace(time=time, provenance={}), grid)
        w, _ = scheme.initial(f)
        norms = [np.sum(grid.mass[..., None] * w[0] ** 2)]
        for n in range(scheme.steps):
            new = scheme.step(n, w, (f,))
            for c in range(2):
                before, scale = np.sum(grid.mass * w[0][..., c]), np.sum(grid.mass[..., None] * np.abs(w[0]))
                assert abs(np.sum(grid.mass * new[0][..., c]) - before) < 1e-12 * scale * max(1.0, time ** 0.5)
            w = new
            norms.append(np.sum(grid.mass[..., None] * w[0] ** 2))
        assert np.all(np.diff(norms) <= 1e-12 * norms[0] * max(1.0, time ** 0.5)), norms    # round-off grows with τ


def test_interpolant_is_the_bilinear_one_of_the_refined_mesh(rng):
    """The image on a refined grid is its bilinear interpolant: what image_to_function gives on the refined mesh."""
    from fem_crossdiff.fem.functions import function_to_grid, pixel_space
    img = rng.random((6, 9))
    mesh = image_mesh(img.shape, 2)
    f = image_to_function(img, pixel_space(mesh))
    assert np.max(np.abs(interpolant(img, 4) - function_to_grid(f))) < 1e-14
    assert np.array_equal(interpolant(img, 4)[::4, ::4], img)


def test_a_model_records_its_scheme_and_an_unknown_one_is_refused(tmp_path, learned):
    path = tmp_path / "m.json"
    fc.save_model(learned, path)
    assert json.loads(path.read_text())["scheme"] == "split"
    assert fc.load_model(path).scheme == "split"
    d = json.loads(path.read_text())
    del d["scheme"], d["digest"]                                 # a file from before schemes were recorded
    from fem_crossdiff.model import model_from_dict
    assert model_from_dict(d).scheme == "semi-implicit"
    with pytest.raises(fc.ModelError, match="unknown time scheme 'adi'; expected one of semi-implicit, implicit, "
                                            "crank-nicolson, split"):
        learned.replace(scheme="adi")


def test_denoise_on_the_split_scheme_needs_no_firedrake(tmp_path, learned):
    """fc.denoise of a split-scheme model (grey, and a grey model on a colour image) runs on grid arrays: Firedrake is
    never imported; the result is the Evolution's."""
    path = tmp_path / "m.json"
    fc.save_model(learned, path)
    code = ("import sys, numpy as np, fem_crossdiff as fc\n"
            f"m = fc.load_model({str(path)!r})\n"
            "img = np.random.default_rng(0).random((12, 15))\n"
            "u = fc.denoise(img, m)\n"
            "c = fc.denoise(np.random.default_rng(1).random((9, 8, 3)), m)\n"
            "assert c.shape == (9, 8, 3)\n"
            "np.save(sys.argv[1], u)\n"
            "print('firedrake' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "u.npy")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    img = np.random.default_rng(0).random((12, 15))
    ev = Evolution(learned, image_mesh(img.shape), fast=False)
    from fem_crossdiff.fem import function_to_image
    want = function_to_image(ev.run(image_to_function(img, ev.F)))[..., 0]
    assert np.max(np.abs(np.load(tmp_path / "u.npy") - want)) < 1e-12
