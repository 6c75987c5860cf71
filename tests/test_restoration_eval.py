"""The restoration anchors (fem_crossdiff.imaging.anchors) and ``evaluate --task``: the operators equal their
definitions in degrade.py, the iterations equal scikit-image's, TV lowers its energy and restores, the oracles pick
the best of their grids, and the table runs (small crops)."""
import numpy as np
import pytest

from fem_crossdiff.cli import main
from fem_crossdiff.errors import InputError
from fem_crossdiff.imaging import anchors as A
from fem_crossdiff.imaging.degrade import blur, blur_adjoint, downsample, downsample_adjoint, parse_psf
from fem_crossdiff.imaging.metrics import psnr


def _squares(n=32):
    """A piecewise-constant test image: two squares on a background."""
    u = np.full((n, n), 0.2)
    u[n // 4:n // 2, n // 4:3 * n // 4] = 0.8
    u[n // 2 + 2:n - 4, 4:n // 2] = 0.5
    return u


@pytest.mark.parametrize("spec", ["gaussian:1.6", "motion:7,30", "asymmetric"])
@pytest.mark.parametrize("shape", [(21, 18), (21, 18, 3)])
def test_the_fft_blur_and_its_adjoint_equal_degrade_to_round_off(spec, shape):
    rng = np.random.default_rng(1)
    psf = rng.random((5, 5)) if spec == "asymmetric" else parse_psf(spec)
    psf = psf / psf.sum()
    x, y = rng.random(shape), rng.random(shape)
    K = A.Convolution(psf, shape)
    assert np.abs(K.forward(x) - blur(x, psf)).max() < 1e-13
    assert np.abs(K.adjoint(y) - blur_adjoint(y, psf)).max() < 1e-13


def test_gradient_and_divergence_are_adjoint():
    rng = np.random.default_rng(2)
    u, p = rng.random((9, 7)), rng.random((2, 9, 7))
    assert np.sum(A.gradient(u) * p) == pytest.approx(-np.sum(u * A.divergence(p)), rel=1e-12)


def test_richardson_lucy_snapshots_equal_scikit_image():
    from skimage.restoration import richardson_lucy
    psf = parse_psf("gaussian:1.2")
    clean = _squares(24)
    blurred = blur(clean, psf)
    r = psf.shape[0] // 2
    u, count, scores = A.richardson_lucy_oracle(clean, blurred, psf, counts=(3, 7))
    for n in (3, 7):
        ref = richardson_lucy(np.pad(blurred, r, mode="reflect"), psf, n)[r:-r, r:-r]
        assert scores[n] == pytest.approx(psnr(clean, np.clip(ref, 0, 1)), abs=1e-9)


def test_tv_deconvolution_lowers_its_energy_and_beats_the_blurred_input():
    clean = _squares(32)
    psf = parse_psf("gaussian:1.6")
    f = blur(clean, psf) + 0.01 * np.random.default_rng(3).standard_normal(clean.shape)
    K = A.Convolution(psf, f.shape)
    w = 2e-3
    u = A.tv_restore(f, w, K.forward, K.adjoint, f, iterations=300)
    e_f, e_u = A.tv_energy(f, f, K.forward, w), A.tv_energy(u, f, K.forward, w)
    assert e_u < 0.9 * e_f
    longer = A.tv_restore(f, w, K.forward, K.adjoint, f, iterations=600)
    assert A.tv_energy(longer, f, K.forward, w) <= e_u * (1 + 1e-3)          # near the minimum already
    assert psnr(clean, u) > psnr(clean, f) + 3.0


def test_the_upscaling_prox_solves_its_optimality_condition():
    """prox_τG(v) = argmin ½‖x − v‖² + τ/2 ‖Dx − f‖²: x − v + τ Dᵀ(Dx − f) = 0."""
    rng = np.random.default_rng(4)
    k, f, v, tau = 2, rng.random((4, 5)), rng.random((8, 10)), 0.7
    captured = {}

    def spy(clean, f_, forward, adjoint, u0, weights, prox=None, **kw):
        captured["prox"] = prox
        return u0, weights[0], {}
    original = A.tv_oracle_restore
    A.tv_oracle_restore = spy
    try:
        A.tv_upscale_oracle(np.zeros((8, 10)), f, k)
    finally:
        A.tv_oracle_restore = original
    x = captured["prox"](v, tau)
    assert np.abs(x - v + tau * downsample_adjoint(downsample(x, k) - f, k)).max() < 1e-13


def test_the_oracles_keep_the_best_of_their_grids():
    clean = _squares(24)
    psf = parse_psf("gaussian:1.2")
    f = blur(clean, psf) + 0.01 * np.random.default_rng(5).standard_normal(clean.shape)
    u, w, scores = A.tv_deconvolution_oracle(clean, f, psf, weights=(1e-3, 1e-2, 1e-1), iterations=100, warm=50)
    assert set(scores) == {1e-3, 1e-2, 1e-1} and w == max(scores, key=scores.get)
    assert psnr(clean, u) == pytest.approx(scores[w])
    assert len(set(np.round(list(scores.values()), 6))) == 3                  # the weights did differ
    u, n, counts = A.richardson_lucy_oracle(clean, f, psf, counts=(1, 5, 200))
    assert n == max(counts, key=counts.get) and psnr(clean, u) == pytest.approx(counts[n])
    mask = np.random.default_rng(6).random(clean.shape) < 0.5
    u, w, scores = A.tv_inpaint_oracle(clean, np.where(mask, 0, clean), mask, weights=(1e-4, 1e-2), iterations=60,
                                       warm=30)
    assert w == max(scores, key=scores.get) and psnr(clean, u) == pytest.approx(scores[w])


@pytest.mark.parametrize("colour", [False, True])
def test_every_anchor_keeps_the_layout_and_restores(colour):
    rng = np.random.default_rng(7)
    clean = _squares(24)
    clean = np.stack([clean, 1 - clean, 0.5 * clean], axis=-1) if colour else clean
    psf = parse_psf("gaussian:1.0")
    f = blur(clean, psf) + 0.005 * rng.standard_normal(clean.shape)
    assert A.wiener_unsupervised(f, psf).shape == clean.shape
    assert A.richardson_lucy_oracle(clean, f, psf, counts=(2, 4))[0].shape == clean.shape
    mask = rng.random(clean.shape[:2]) < 0.3
    damaged = np.where(mask[..., None] if colour else mask, 0.0, clean)
    filled = A.biharmonic_inpaint(damaged, mask)
    assert filled.shape == clean.shape and psnr(clean, filled) > psnr(clean, damaged) + 10
    small = downsample(clean, 2)
    for up in (A.bicubic_upscale(small, 2), A.lanczos_upscale(small, 2), A.tv_upscale_oracle(clean, small, 2)[0]):
        assert up.shape == clean.shape and psnr(clean, up) > 15
    assert 0 <= A.blur_effect(clean) < A.blur_effect(blur(clean, parse_psf("gaussian:2"))) <= 1


def test_anchors_refuse_bad_input_by_name():
    with pytest.raises(InputError, match="factor 1"):
        A.bicubic_upscale(np.zeros((8, 8)), 1)
    with pytest.raises(InputError, match="mask of shape"):
        A.biharmonic_inpaint(np.zeros((8, 8)), np.zeros((7, 8), bool))
    with pytest.raises(InputError, match="too small"):
        A.Convolution(parse_psf("gaussian:3"), (8, 8))


def test_evaluate_task_prints_its_table_on_two_tiny_crops(capsys):
    assert main(["evaluate", "--task", "upscale", "--size", "16", "--images", "camera", "coins", "--case", "×2",
                 "--no-ours"]) == 0
    out = capsys.readouterr().out
    assert "×2: PSNR (dB) / SSIM / blur_effect" in out
    lines = out.splitlines()
    for label in ("bicubic", "Lanczos", "TV upscaling (oracle)"):
        line = next(ln for ln in lines if ln.startswith(label))
        assert line.count("/") == 3 * 2                                       # camera, coins, mean: 3 cells
    assert len(next(ln for ln in lines if ln.startswith("(clean: blur_effect)")).split()) == 2 + 3
    assert len({len(ln) for ln in lines if ln.startswith(("method", "bicubic", "Lanczos", "TV"))}) == 1
    from fem_crossdiff.evaluation.restoration import degrade, evaluate_task
    from fem_crossdiff.imaging.data import centre_crop, load
    rows = evaluate_task("upscale", size=16, images=["camera"], cases=["×2"], ours=False, log=lambda *a: None)
    clean, small, k = degrade("upscale", "×2", centre_crop(load("camera"), 16), 0)
    bicubic = next(r for r in rows if r[1] == "bicubic")
    assert bicubic[3] == pytest.approx(psnr(clean, A.bicubic_upscale(small, k)))


@pytest.mark.parametrize("argv, message", [(["--task", "sharpen"], "--task 'sharpen': expected one of deblur, "
                                                                   "inpaint, upscale"),
                                           (["--task", "deblur", "--case", "box:3"], "case 'box:3' of --task deblur"),
                                           (["--task", "inpaint", "--images", "lena"], "image 'lena'")])
def test_evaluate_task_refuses_bad_input_in_one_line(capsys, argv, message):
    assert main(["evaluate", *argv, "--size", "16", "--no-ours"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err and captured.out == ""


def test_the_heldout_version_scores_a_given_setup_on_training_crops():
    from fem_crossdiff.evaluation.restoration import heldout
    from fem_crossdiff.learning.pairs import training_pairs
    scores = heldout("upscale", learned={"bicubic again": A.bicubic_upscale}, anchors_too=False, cases=["×2"],
                     images=["brick", "grass"], patch=16, per_image=1)
    crops = training_pairs(["brick", "grass"], 0.0, patch=16, per_image=1, seed=12345)
    expect = [psnr(c, A.bicubic_upscale(downsample(c, 2), 2)) for c, _ in crops]
    assert scores["×2"]["bicubic again"] == pytest.approx({"brick": expect[0], "grass": expect[1]})


def test_validate_task_refuses_an_unknown_task_in_one_line(capsys):
    assert main(["validate", "--task", "sharpen"]) == 2
    captured = capsys.readouterr()
    assert "--task 'sharpen': expected one of deblur, inpaint, upscale" in captured.err and captured.out == ""
