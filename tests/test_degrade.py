"""The forward operators of deblurring, inpainting and upscaling (fem_crossdiff.imaging.degrade): PSFs normalised,
odd and symmetric where they should be, the blur equal to scipy's mirror convolution, exact adjoints, masks of the
asked fraction, and one-line refusals of bad specifications."""
import numpy as np
import pytest

from fem_crossdiff.errors import InputError
from fem_crossdiff.imaging.degrade import (blur, blur_adjoint, check_psf_fits, downsample, downsample_adjoint,
                                           parse_psf, random_mask, scratch_mask)
from fem_crossdiff.imaging.files import write_image


@pytest.mark.parametrize("spec, side", [("gaussian:1.6", 11), ("box:5", 5), ("box:1", 1), ("motion:15,30", 15),
                                        ("motion:7,0", 9)])
def test_psfs_are_odd_non_negative_and_normalised(spec, side):
    k = parse_psf(spec)
    assert k.shape == (side, side) and k.min() >= 0 and abs(k.sum() - 1) < 1e-12
    assert np.allclose(k, k[::-1, ::-1], atol=1e-15)                    # point-symmetric about the centre


def test_motion_psf_lies_along_its_line():
    k = parse_psf("motion:9,0")
    assert np.allclose(k.sum(axis=1)[k.shape[0] // 2], 1)               # horizontal: all weight on the centre row
    k = parse_psf("motion:9,90")
    assert np.allclose(k.sum(axis=0)[k.shape[1] // 2], 1)


def test_blur_is_scipys_mirror_convolution_and_its_adjoint_is_exact():
    from scipy import ndimage
    rng = np.random.default_rng(0)
    lopsided = parse_psf(rng.random((4, 6)))                             # even sides: padded to 7×7
    assert lopsided.shape == (7, 7)
    for k in (parse_psf("gaussian:1.6"), parse_psf("motion:9,30"), lopsided):
        x, y = rng.random((23, 19)), rng.random((23, 19))
        assert np.abs(blur(x, k) - ndimage.convolve(x, k, mode="mirror")).max() < 1e-14
        assert abs(np.vdot(blur(x, k), y) - np.vdot(x, blur_adjoint(y, k))) < 1e-12 * np.vdot(x, y)
    x3 = rng.random((12, 13, 3))
    k = parse_psf("box:3")
    assert np.allclose(blur(x3, k)[..., 1], blur(x3[..., 1], k))


def test_downsample_adjoint_and_shape_checks():
    rng = np.random.default_rng(1)
    x, y = rng.random((12, 18, 3)), rng.random((4, 6, 3))
    assert abs(np.vdot(downsample(x, 3), y) - np.vdot(x, downsample_adjoint(y, 3))) < 1e-12
    assert np.allclose(downsample(np.ones((6, 6)), 2), 1)
    with pytest.raises(InputError, match="multiples of the factor 4"):
        downsample(np.ones((6, 8)), 4)
    with pytest.raises(InputError, match="integer >= 2"):
        downsample(np.ones((6, 8)), 1)


def test_masks_have_the_asked_fraction_and_are_reproducible():
    m = random_mask((40, 50), 0.8, seed=3)
    assert m.dtype == bool and m.sum() == 1600 and np.array_equal(m, random_mask((40, 50), 0.8, seed=3))
    s = scratch_mask((128, 128), seed=1)
    assert 0.08 <= s.mean() <= 0.2 and np.array_equal(s, scratch_mask((128, 128), seed=1))
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(InputError, match=r"in \(0, 1\)"):
            random_mask((10, 10), bad)


@pytest.mark.parametrize("spec, message", [("gaussian:-1", "finite number > 0"), ("box:4", "odd integer"),
                                           ("motion:3", "expected 2 number"), ("gaussian:x", "not a number"),
                                           ("foo:1", "neither a PSF"), ("nofile.png", "neither a PSF"),
                                           ("gaussian:100", "at most 255")])
def test_bad_psf_specifications_are_refused_in_one_line(spec, message):
    with pytest.raises(InputError, match=message) as e:
        parse_psf(spec)
    assert "\n" not in str(e.value) and spec.split(":")[0] in str(e.value)


def test_psf_files_normalised_and_unusable_ones_refused(tmp_path):
    good = np.zeros((4, 4))
    good[1:3, 1:3] = 1
    write_image(tmp_path / "psf.npy", good)
    k = parse_psf(str(tmp_path / "psf.npy"))
    assert k.shape == (5, 5) and abs(k.sum() - 1) < 1e-12 and k[2, 2] > 0
    write_image(tmp_path / "zero.npy", np.zeros((3, 3)))
    with pytest.raises(InputError, match="cannot be normalised"):
        parse_psf(str(tmp_path / "zero.npy"))
    neg = np.ones((3, 3))
    neg[0, 0] = -0.5
    write_image(tmp_path / "neg.npy", neg)
    with pytest.raises(InputError, match="negative entries"):
        parse_psf(str(tmp_path / "neg.npy"))
    with pytest.raises(InputError, match="too small for a PSF of 11×11"):
        check_psf_fits((10, 40), parse_psf("gaussian:1.6"))
