"""Data terms of deblurring, inpainting and upscaling: the operator's adjoint in the lumped products and its bound,
the split scheme's fast path against the UFL/Firedrake path to round-off (grey and colour), Taylor tests at rate 2 of
gradients through a deblur, an inpaint and an upscale run, and the contraction of the explicit part."""
import numpy as np
import pytest

from fem_crossdiff.fast.dataterms import DataTerm, biharmonic_fill, bicubic, fill_missing, prolong, run_split
from fem_crossdiff.fast.split import Grid, SplitScheme
from fem_crossdiff.imaging.degrade import downsample, parse_psf, random_mask
from fem_crossdiff.learning.parametrisation import learned_template, pack, unpack, with_psi


@pytest.fixture(scope="module")
def learned():
    """A 2-stage learnable model with h11(v) and psi(v), parameters off the template, a fidelity lam > 0."""
    model = with_psi(learned_template(stages=2, centres=5, time=2.0, steps=4, modulation=3), 3)
    x = pack(model) + 0.05 * np.random.default_rng(0).random(pack(model).size)
    stages = [dict(st, wpsi=(0.02 * np.random.default_rng(k).standard_normal(3)).tolist(), lam=2.0 + k, mu=0.2)
              for k, st in enumerate(unpack(model, x))]
    return model.with_stages(stages)


def _terms(shape, rng):
    H, W = shape
    return {"deblur": (DataTerm("deblur", shape, psf=parse_psf("gaussian:1.0")), (H, W)),
            "motion": (DataTerm("deblur", shape, psf=parse_psf("motion:5,30")), (H, W)),
            "inpaint": (DataTerm("inpaint", shape, mask=random_mask(shape, 0.5, 1)), (H, W)),
            "upscale": (DataTerm("upscale", shape, factor=2), (H // 2, W // 2))}


def test_adjoint_in_the_lumped_products_bound_and_contraction():
    """<Au, y>_out = <u, A*y>_in to round-off; L >= the largest eigenvalue of A*A (power iteration), L = 1 for
    symmetric PSFs, the mask and the sensor; the pseudo-datum's transpose is its linear part's transpose."""
    rng = np.random.default_rng(0)
    shape = (16, 18)
    for name, (term, dshape) in _terms(shape, rng).items():
        u, y = rng.random(shape), rng.random(dshape)
        lhs = np.sum(term.mass_out * term.forward(u) * y)
        rhs = np.sum(term.mass_in * u * term.adjoint(y))
        assert abs(lhs - rhs) < 1e-12 * abs(lhs), name
        x = rng.random(shape)
        for _ in range(300):
            x = term.adjoint(term.forward(x))
            top = np.sqrt(np.sum(term.mass_in * x * x))
            x /= top
        assert top <= term.L * (1 + 1e-9), name
        assert (abs(term.L - 1) < 1e-12) == (name != "motion"), (name, term.L)
        f, gbar = rng.random(dshape), rng.random(shape)
        lin = term.pseudo(u, f) - term.pseudo(np.zeros(shape), f)
        assert abs(np.sum(gbar * lin) - np.sum(term.pseudo_transpose(gbar) * u)) < 1e-12 * np.sum(np.abs(gbar)), name
    psf = parse_psf("gaussian:1.6")
    u = rng.random(shape)
    term = DataTerm("deblur", shape, psf=psf)
    assert np.allclose(term.adjoint(u), term.forward(u), atol=1e-14)     # K* = K for a symmetric PSF


def test_initial_states_fill_and_keep_the_data():
    """The inpainting starts keep the known pixels (normalised convolution within the data's range, the biharmonic
    fill minimising |Laplacian u|²); the
    upscaling start is seen by the sensor as the data exactly; bicubic reproduces linear ramps inside."""
    rng = np.random.default_rng(1)
    f = rng.random((20, 24))
    mask = random_mask(f.shape, 0.8, 3)
    u0 = fill_missing(f, mask)
    assert np.array_equal(u0[~mask], f[~mask]) and np.all(np.isfinite(u0))
    assert f[~mask].min() - 1e-12 <= u0.min() and u0.max() <= f[~mask].max() + 1e-12
    rgb = rng.random((20, 24, 3))
    b = biharmonic_fill(rgb, mask)                                      # known kept; optimal: d/du_m |L u|² = 0
    assert np.array_equal(b[~mask], rgb[~mask])
    from fem_crossdiff.fast.dataterms import grid_laplacian
    L = grid_laplacian(20, 24)
    for c in range(3):
        assert np.abs((L.T @ (L @ b[..., c].ravel()))[mask.ravel()]).max() < 1e-10
    u1 = prolong(f, 3)
    assert u1.shape == (60, 72) and np.allclose(downsample(u1, 3), f, atol=1e-13)
    ramp = np.add.outer(np.arange(10.0), 2 * np.arange(12.0))
    fine = bicubic(ramp, 2)
    expect = np.add.outer((np.arange(20) + 0.5) / 2 - 0.5, 2 * ((np.arange(24) + 0.5) / 2 - 0.5))
    assert np.allclose(fine[3:-3, 3:-3], expect[3:-3, 3:-3], atol=1e-12)


@pytest.mark.parametrize("task", ["deblur", "inpaint", "upscale"])
def test_split_fast_path_equals_the_ufl_split_scheme(learned, task):
    """run_split (grid arrays) = DataTermRun on a Firedrake Evolution (scheme "split", UFL solvers) to round-off."""
    from fem_crossdiff.fem import Evolution, image_mesh, function_to_image
    from fem_crossdiff.fem.dataterms import DataTermRun
    rng = np.random.default_rng(2)
    shape = (12, 14)
    term, dshape = _terms(shape, rng)[task]
    f = rng.random(dshape)
    model = learned.replace(scheme="split")
    _, fast = run_split(SplitScheme(model, Grid(shape)), term, f)
    ev = Evolution(model, image_mesh(shape), fast=False)
    w = DataTermRun(ev, term).run(f)
    ufl = function_to_image(w.sub(0))
    assert np.abs(fast - ufl).max() < 1e-10 * np.abs(fast).max()


def test_split_fast_path_equals_the_ufl_path_for_a_colour_model():
    """Colour: the pseudo-datum in RGB, the model in its opponent space; both paths agree to round-off."""
    from fem_crossdiff.fem import Evolution, image_mesh, function_to_image
    from fem_crossdiff.fem.dataterms import DataTermRun
    from fem_crossdiff.learned import shipped_models
    from fem_crossdiff.model import load_model
    model = load_model(next(iter(shipped_models(kind="colour").values())))
    model = model.replace(steps=len(model.stages), time=model.time)
    rng = np.random.default_rng(3)
    shape = (10, 12)
    term = DataTerm("deblur", shape, psf=parse_psf("box:3"))
    f = rng.random(shape + (3,))
    _, fast = run_split(SplitScheme(model, Grid(shape)), term, f)
    ev = Evolution(model, image_mesh(shape), fast=False)
    import firedrake as fd
    w = DataTermRun(ev, term).run(f)
    ufl = function_to_image(fd.Function(ev.F).interpolate(ev.discrete.output(w)))
    assert np.abs(fast - ufl).max() < 1e-10


@pytest.mark.parametrize("task, scheme", [("deblur", "semi-implicit"), ("inpaint", "semi-implicit"),
                                          ("upscale", "semi-implicit"), ("motion", "split")])
def test_gradient_through_a_task_run_passes_a_taylor_test(learned, task, scheme):
    """J = ||u(T) - clean||² through a run with the data term (pseudo-data blocks between the step blocks; for the
    split scheme pyadjoint's own solve blocks): pyadjoint's Taylor test at rate 2 in every stage parameter."""
    import firedrake as fd
    from firedrake.adjoint import (Control, ReducedFunctional, continue_annotation, get_working_tape,
                                   pause_annotation, taylor_test)
    from fem_crossdiff.fem import Evolution, image_mesh, image_to_function
    from fem_crossdiff.fem.dataterms import DataTermRun, PseudoDataBlock
    from fem_crossdiff.fem.solvers import DIRECT_SOLVER
    rng = np.random.default_rng(4)
    shape = (12, 12)
    term, dshape = _terms(shape, rng)[task]
    model = learned.replace(steps=3, scheme=scheme)
    clean = rng.random(shape)
    f = term.forward(clean) + 0.02 * rng.standard_normal(dshape)
    ev = Evolution(model, image_mesh(shape), solver_parameters=DIRECT_SOLVER)     # rates not limited by a tolerance
    tape = get_working_tape()
    tape.clear_tape()
    controls = ev.discrete.controls()
    continue_annotation()
    try:
        w = DataTermRun(ev, term).run(f)
        target = image_to_function(clean, ev.V)
        J = fd.assemble((w[0] - target) ** 2 * fd.dx)
    finally:
        pause_annotation()
    assert sum(isinstance(b, PseudoDataBlock) for b in tape.get_blocks()) == 3
    rf = ReducedFunctional(J, [Control(c) for c in controls])
    m1 = [fd.Function(c) for c in controls]
    hs = [fd.Function(c) for c in controls]
    for h in hs:
        h.dat.data[:] = rng.uniform(-1, 1, h.dat.data.shape[1])[None, :] * 0.2
    try:
        assert taylor_test(rf, m1, hs) > 1.95
    finally:
        tape.clear_tape()
