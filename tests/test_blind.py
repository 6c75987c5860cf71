"""The blind default (issue 25, items 3, 4, 14, 16): a noise estimate that texture and saturation cannot fool, colour
served at every σ the grey models serve and named in the user's terms, a real interpolation between σ 15 and 25, a
plain summary line, and ``--looks`` for speckle."""
import numpy as np
import pytest

import fem_crossdiff as fc
from fem_crossdiff.cli import main
from fem_crossdiff.imaging.data import centre_crop, load, noisy_pair
from fem_crossdiff.imaging.noise import estimate_sigma255, gaussian_noise


def _wavelet_mad255(img):
    """The estimate shipped before (scikit-image's ``estimate_sigma``: the MAD of the finest db2 coefficients)."""
    import warnings
    from skimage.restoration import estimate_sigma
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return 255 * estimate_sigma(img, channel_axis=-1 if img.ndim == 3 else None, average_sigmas=True)


def _crop(name, size=128):
    img = load(name)
    r, c = (img.shape[0] - size) // 3, (img.shape[1] - size) // 3
    return np.ascontiguousarray(img[r:r + size, c:c + size])


@pytest.mark.parametrize("name,sigma", [("coins", 2), ("coins", 5), ("page", 2), ("page", 5)])
def test_texture_is_not_read_as_noise(name, sigma):
    """On textured pictures (the relief of coins, a page of print) the estimate stays within 12 % + 0.3 of the true
    σ, where the wavelet MAD read the texture as noise (up to 2.5 times σ)."""
    clean = _crop(name)
    noisy = gaussian_noise(clean, sigma / 255, seed=1)
    tolerance = 0.12 * sigma + 0.3
    assert abs(estimate_sigma255(noisy) - sigma) <= tolerance
    assert abs(_wavelet_mad255(noisy) - sigma) > tolerance                  # what failed before


@pytest.mark.parametrize("sigma", [5, 25, 50])
def test_saturated_rows_do_not_collapse_the_estimate(sigma):
    """45 % of the rows white (exactly 1, after the noise, as a clipped sky) leave the estimate within 10 % of σ;
    the wavelet MAD fell to a fraction of it (σ 25: 4.5 in the issue)."""
    clean = centre_crop(load("camera"), 128)
    noisy = gaussian_noise(clean, sigma / 255, seed=2)
    noisy[:58] = 1.0
    assert abs(estimate_sigma255(noisy) - sigma) <= 0.1 * sigma
    assert _wavelet_mad255(noisy) < 0.7 * sigma
    rows = np.random.default_rng(0).random(128) < 0.45                      # scattered white rows too
    noisy = gaussian_noise(clean, sigma / 255, seed=2)
    noisy[rows] = 1.0
    assert abs(estimate_sigma255(noisy) - sigma) <= 0.2 * sigma


def test_colour_tiny_flat_and_clipped_images():
    """Colour: the per-channel σ; a flat image: 0 (no warning); images too small for the patches still get an
    estimate; an 8-bit file's clipped noise is not taken for texture."""
    import warnings
    clean = centre_crop(load("chelsea", colour=True), 96)
    for sigma in (5, 25):
        assert abs(estimate_sigma255(gaussian_noise(clean, sigma / 255, seed=3)) - sigma) <= 0.1 * sigma + 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert estimate_sigma255(np.full((32, 32), 0.3)) == 0.0
        assert estimate_sigma255(np.zeros((40, 40, 3))) == 0.0
        for shape in ((2, 2), (5, 9), (12, 12), (30, 30)):
            est = estimate_sigma255(gaussian_noise(np.full(shape, 0.5), 20 / 255, seed=4))
            assert np.isfinite(est) and (shape == (2, 2) or 10 < est < 30), (shape, est)
    png = np.round(np.clip(gaussian_noise(centre_crop(load("camera"), 128), 15 / 255, seed=5), 0, 1) * 255) / 255
    assert abs(estimate_sigma255(png) - 15) <= 1.5


def test_the_gamma_quantile_is_scipys():
    from scipy.special import gammaincinv
    from fem_crossdiff.imaging.noise import gamma_quantile
    for q, shape, scale in ((1 - 1e-6, 21.0, 2.0), (0.5, 3.5, 1.0), (0.99, 40.0, 0.3)):
        assert gamma_quantile(q, shape, scale) == pytest.approx(gammaincinv(shape, q) * scale, rel=1e-9)


def test_colour_is_served_at_every_grey_level_and_named_in_the_users_sigma(tmp_path, capsys):
    """``--sigma 5`` on a colour image restores it (it was refused as 'sigma 2.89 … grey models'); the refusals
    name the colour σ the user gave and the colour range, the grey range in the same terms."""
    clean = centre_crop(load("chelsea", colour=True), 40)
    _, noisy = noisy_pair(clean, 5, 1)
    np.save(tmp_path / "c.npy", noisy)
    assert main(["denoise", str(tmp_path / "c.npy"), str(tmp_path / "o.npy"), "--sigma", "5", "--quiet"]) == 0
    assert "learned colour model for σ 5 (given)" in capsys.readouterr().out
    assert fc.psnr(clean, np.load(tmp_path / "o.npy")) > fc.psnr(clean, noisy) + 0.5
    lo, hi = fc.learned.served_range(kind="colour")
    assert (lo, hi) == fc.learned.served_range(kind="grey")
    for sigma in (lo / 2, hi * 2):
        assert main(["denoise", str(tmp_path / "c.npy"), str(tmp_path / "x.npy"), "--sigma", f"{sigma:g}"]) == 2
        err = capsys.readouterr().err
        assert f"sigma {sigma:g} lies outside the range the shipped colour models serve ({lo:.3g}..{hi:.3g})" in err
        assert "grey" not in err and f"{sigma / np.sqrt(3):.3g}" not in err
        with pytest.raises(fc.InputError, match=f"sigma {sigma:g} lies outside the range the shipped grey models "
                                                f"serve \\({lo:.3g}..{hi:.3g}\\)"):
            fc.blind_model(sigma)
    for sigma in (lo, 2, 5, 6.4, 6.5, 10, 14.9, 15, 20, 40, hi):
        assert fc.blind_model(sigma, kind="colour").certificate() > 0
    assert getattr(fc.blind_model(5, kind="colour"), "channels", 1) == 1      # nearly clean: grey on each channel
    assert fc.blind_model(10, kind="colour").channels == 3                   # the colour model below σ 15 too


def test_below_the_lowest_level_the_fidelity_grows_towards_the_identity():
    """Below the lowest shipped σ the lowest model serves with a fidelity raised as 1/σ² (it was refused below 3.33,
    and the lowest model itself lost 5 dB against the input at σ 2): the result stays at or above its input and
    tends to it as σ falls."""
    from fem_crossdiff.learned import shipped_models
    lowest = min(shipped_models())
    clean = centre_crop(load("coins"), 64)
    change = []
    for sigma in (4, 2, 1):
        _, noisy = noisy_pair(clean, sigma, 3)
        u = fc.denoise(noisy, fc.blind_model(sigma))
        assert fc.psnr(clean, u) >= fc.psnr(clean, noisy)
        change.append(np.abs(u - noisy).mean())
    assert change[0] > change[1] > change[2]
    assert fc.denoise(noisy, fc.load_model(shipped_models()[lowest])).tolist() != u.tolist()


def test_between_levels_of_different_structure_the_nearer_serves_and_a_refit_interpolates():
    """σ 15 and σ 25 have different RBF centres. As measured (``demos/PHOTOGRAPHS.md``) the nearer level serves
    between them, and says so; the refit of σ 25 into σ 15's functions (``refit=True``) is a real interpolation: its
    output differs from both neighbours' and moves from one to the other as σ goes from 15 to 25. Between levels of
    one structure the parameters are interpolated by default."""
    from fem_crossdiff.learned import compatible, refit_error, shipped_models
    a, b = (fc.load_model(shipped_models()[s]) for s in (15, 25))
    assert a.structure != b.structure
    assert refit_error(b, a) < 0.2 and compatible(b, a).structure == a.structure
    assert fc.blind_model(18).description == "learned, shipped σ 15 (nearest)"
    assert fc.blind_model(20).description == "learned, shipped σ 25 (nearest)"
    _, noisy = noisy_pair(centre_crop(load("camera"), 48), 20, 0)
    u = {s: fc.denoise(noisy, fc.blind_model(s, refit=True)) for s in (15, 17, 20, 23, 25)}
    distance = [np.abs(u[s] - u[15]).mean() for s in (15, 17, 20, 23)]
    assert distance[0] == 0 and all(x < y for x, y in zip(distance, distance[1:]))
    assert np.abs(u[20] - u[25]).mean() > 0 and np.abs(u[23] - u[25]).mean() < np.abs(u[17] - u[25]).mean()
    assert fc.blind_model(20, refit=True).certificate() > 0
    mid = fc.blind_model(np.sqrt(10 * 15))
    assert "0.50·σ10 + 0.50·σ15" in mid.description


def test_the_summary_line_is_plain_and_the_details_stay_on_the_model(tmp_path, capsys):
    from fem_crossdiff.cli.denoise import ModelChooser
    clean = centre_crop(load("chelsea", colour=True), 40)
    _, noisy = noisy_pair(clean, 25, 1)
    np.save(tmp_path / "c.npy", noisy)
    assert main(["denoise", str(tmp_path / "c.npy"), str(tmp_path / "o.npy"), "--quiet"]) == 0
    line = capsys.readouterr().out
    assert "learned colour model for σ" in line and "(estimated)" in line
    assert "luma" not in line and "chroma" not in line and "·" not in line

    class Args:
        model, noise, sigma, looks = None, "gaussian", 14.4, None
    model, described = ModelChooser(Args, {})(noisy)
    assert described == "learned colour model for σ 14.4 (given)" and "luma" in model.description


def test_looks_chooses_the_speckle_model_and_is_refused_elsewhere(tmp_path, capsys):
    from fem_crossdiff.imaging.noise import speckle_noise
    from fem_crossdiff.learned import served_range, shipped_models
    clean = centre_crop(load("camera"), 40)
    np.save(tmp_path / "s.npy", speckle_noise(clean, 10, seed=0))
    args = ["denoise", str(tmp_path / "s.npy"), str(tmp_path / "u.npy"), "--quiet"]
    level = max(shipped_models(kind="speckle"))
    assert main(args + ["--noise", "speckle", "--looks", str(level * 1.2)]) == 0
    assert f"learned speckle model for {level * 1.2:g} looks" in capsys.readouterr().out
    lo, hi = served_range(kind="speckle")
    for looks in (lo / 2, hi * 2):
        assert main(args + ["--noise", "speckle", "--looks", f"{looks:g}", "--force"]) == 2
        assert f"lies outside the range the shipped speckle models serve ({lo:.3g}..{hi:.3g} looks)" in \
            capsys.readouterr().err
    assert main(args + ["--looks", "10", "--force"]) == 2
    assert "--looks 10 chooses the learned speckle model: give it with --noise speckle" in capsys.readouterr().err
    assert main(args + ["--noise", "speckle", "--looks", "10", "--model", "heat", "--force"]) == 2
    assert "with --model it has no effect" in capsys.readouterr().err


def test_the_blind_choice_clamps_estimates_near_the_range_and_refuses_far_outside():
    from fem_crossdiff.learned import estimated_model, served_range
    lo, hi = served_range()
    assert estimated_model(0.0)[1] == lo and estimated_model(hi * 1.2)[1] == hi
    with pytest.raises(fc.InputError, match="estimated noise level sigma 6.49e\\+03 lies far above"):
        estimated_model(6490.0)
