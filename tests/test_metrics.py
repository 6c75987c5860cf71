"""Image metrics: PSNR against its definition, and the split of the squared error by edge strength."""
import numpy as np
import pytest

from fem_crossdiff.imaging.metrics import edge_strength, error_by_edge_strength, mse, psnr


def test_psnr_is_ten_log_of_inverse_mse(rng):
    clean = rng.random((20, 30))
    test = clean + 0.1 * rng.standard_normal(clean.shape)
    assert psnr(clean, test) == pytest.approx(-10 * np.log10(np.mean((clean - test) ** 2)), rel=1e-14)
    assert psnr(clean, clean) == float("inf")


def test_edge_strength_of_a_ramp_is_its_slope():
    y, x = np.mgrid[0:16, 0:16] / 64.0
    s = edge_strength(0.2 + 0.6 * x + 0.8 * y)        # |grad| = hypot(0.6, 0.8) / 64 per pixel, inside
    assert np.allclose(s[1:-1, 1:-1], 1.0 / 64, rtol=1e-12)


def test_error_shares_sum_to_the_mse_and_land_in_the_right_bin(rng):
    clean = rng.random((24, 24))
    test = clean + 0.05 * rng.standard_normal(clean.shape)
    frac, share = error_by_edge_strength(clean, test)
    assert frac.shape == share.shape == (4,)
    assert frac.sum() == pytest.approx(1.0, rel=1e-14) and share.sum() == pytest.approx(mse(clean, test), rel=1e-12)
    step = np.zeros((16, 16))
    step[:, 8:] = 0.5                                  # a vertical edge: strong gradient on columns 7 and 8 only
    blurred = step.copy()
    blurred[:, 7:9] = 0.25
    frac, share = error_by_edge_strength(step, blurred)
    assert frac[-1] == pytest.approx(2 / 16) and frac[0] == pytest.approx(14 / 16)
    assert share[:-1].sum() == 0 and share[-1] == pytest.approx(mse(step, blurred))


@pytest.mark.parametrize("edges", [(), (0.1, 0.05), (0.0, 0.1)])
def test_bad_bins_and_shapes_are_refused(edges):
    with pytest.raises(ValueError, match="expected increasing positive bin edges"):
        error_by_edge_strength(np.zeros((4, 4)), np.zeros((4, 4)), edges)
    with pytest.raises(ValueError, match="differ in shape"):
        error_by_edge_strength(np.zeros((4, 4)), np.zeros((4, 5)))
