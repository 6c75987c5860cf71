"""fem-crossdiff deblur / inpaint / upscale and fc.deblur / fc.inpaint / fc.upscale: grey and colour, shapes and bit
depth kept, the restoration better than its input, never overwriting, batches, and hostile input refused in one line
with nothing written."""
import os

import numpy as np
import pytest

import fem_crossdiff as fc
from fem_crossdiff.cli import main
from fem_crossdiff.errors import InputError
from fem_crossdiff.imaging.data import centre_crop, load
from fem_crossdiff.imaging.degrade import blur, downsample, parse_psf, random_mask
from fem_crossdiff.imaging.files import read_image, write_image


@pytest.fixture(scope="module")
def clean():
    return centre_crop(load("camera"), 48)


def test_python_functions_improve_on_their_inputs(clean):
    rng = np.random.default_rng(0)
    f = blur(clean, parse_psf("gaussian:1.6")) + 0.01 * rng.standard_normal(clean.shape)
    assert fc.psnr(clean, fc.deblur(f, "gaussian:1.6", sigma=2.55)) > fc.psnr(clean, f) + 1
    m = random_mask(clean.shape, 0.5, 1)
    holes = np.where(m, 0.0, clean)
    u = fc.inpaint(holes, m)
    assert fc.psnr(clean, u) > fc.psnr(clean, holes) + 10
    small = downsample(clean, 2)
    big = fc.upscale(small, 2)
    assert big.shape == clean.shape and fc.psnr(clean, big) > fc.psnr(clean, np.kron(small, np.ones((2, 2))))
    assert np.abs(downsample(big, 2) - small).max() < 0.05               # the sensor sees (nearly) the data
    rgb = centre_crop(load("astronaut", colour=True), 24)
    assert fc.upscale(rgb, 3).shape == (72, 72, 3)


def test_classic_model_on_the_finite_element_path(clean):
    """perona-malik (semi-implicit: Firedrake) with the deblur data term, the task's λ."""
    f = blur(clean[:24, :24], parse_psf("box:3"))
    u = fc.deblur(f, "box:3", model="perona-malik")
    assert u.shape == f.shape and fc.psnr(clean[:24, :24], u) > fc.psnr(clean[:24, :24], f)


@pytest.mark.parametrize("bad, message", [
    (dict(mask=np.zeros((10, 10), bool)), "does not fit"),
    (dict(mask=np.zeros((48, 48), bool)), "no pixel"),
    (dict(mask=np.ones((48, 48), bool)), "every pixel")])
def test_bad_masks_are_refused(clean, bad, message):
    with pytest.raises(InputError, match=message):
        fc.inpaint(clean, **bad)


def test_bad_factor_psf_and_small_images_are_refused(clean):
    with pytest.raises(InputError, match="integer >= 2"):
        fc.upscale(clean, 1)
    with pytest.raises(InputError, match="too small for a PSF"):
        fc.deblur(clean[:8, :8], "gaussian:1.6")
    with pytest.raises(InputError, match="cannot be normalised"):
        fc.deblur(clean, np.zeros((3, 3)))
    with pytest.raises(InputError, match="sigma chooses the learned model"):
        fc.deblur(clean, "box:3", sigma=5, model="perona-malik")


def _files(tmp_path, clean):
    blurred = tmp_path / "blur.png"
    write_image(blurred, blur(clean, parse_psf("gaussian:1.6")))
    m = random_mask(clean.shape, 0.5, 2)
    write_image(tmp_path / "holes.png", np.where(m, 0.0, clean))
    write_image(tmp_path / "mask.png", m.astype(float))
    write_image(tmp_path / "small16.png", downsample(clean, 2), depth="uint16")
    write_image(tmp_path / "rgb.png", centre_crop(load("astronaut", colour=True), 24))
    return tmp_path


def test_commands_write_grey_colour_and_keep_depth(tmp_path, clean, capsys):
    d = _files(tmp_path, clean)
    assert main(["deblur", str(d / "blur.png"), str(d / "d.png"), "--psf", "gaussian:1.6", "--quiet"]) == 0
    assert main(["inpaint", str(d / "holes.png"), str(d / "i.png"), "--mask", str(d / "mask.png"), "--quiet"]) == 0
    assert main(["upscale", str(d / "small16.png"), str(d / "u.png"), "--factor", "2", "--quiet"]) == 0
    assert main(["upscale", str(d / "rgb.png"), str(d / "c.png"), "--factor", "2", "--quiet"]) == 0
    u, depth = read_image(d / "u.png", with_depth=True)
    assert u.shape == (48, 48) and depth == "uint16"
    assert read_image(d / "c.png", colour=True).shape == (48, 48, 3)
    assert fc.psnr(clean, read_image(d / "d.png")) > fc.psnr(clean, read_image(d / "blur.png"))
    out = d / "batch"
    assert main(["deblur", str(d / "blur.png"), str(d / "holes.png"), "--out-dir", str(out), "--psf", "box:3",
                 "--quiet"]) == 0
    assert sorted(os.listdir(out)) == ["blur.png", "holes.png"]


@pytest.mark.parametrize("args, message", [
    (["inpaint", "holes.png", "x.png", "--mask", "wrong.png"], "does not fit"),
    (["inpaint", "holes.png", "x.png", "--mask", "empty.png"], "no pixel"),
    (["inpaint", "holes.png", "x.png", "--mask", "full.png"], "every pixel"),
    (["deblur", "blur.png", "x.png", "--psf", "zero.npy"], "cannot be normalised"),
    (["deblur", "blur.png", "x.png", "--psf", "gaussian:9"], "too small for a PSF"),
    (["deblur", "blur.png", "x.png", "--psf", "disc:3"], "neither a PSF"),
    (["upscale", "rgb.png", "x.png", "--factor", "1"], "integer >= 2"),
    (["deblur", "blur.png", "blur.png", "--psf", "box:3", "--force"], "input"),
    (["deblur", "blur.png", "d.png", "--psf", "box:3"], "exists; pass --force"),
    (["deblur", "blur.png", "x.png", "--psf", "box:3", "--sigma", "5", "--model", "heat"], "no effect")])
def test_hostile_input_one_line_nothing_written(tmp_path, clean, capsys, args, message):
    d = _files(tmp_path, clean)
    write_image(d / "wrong.png", np.zeros((10, 12)))
    write_image(d / "empty.png", np.zeros((48, 48)))
    write_image(d / "full.png", np.ones((48, 48)))
    write_image(d / "zero.npy", np.zeros((3, 3)))
    write_image(d / "d.png", np.zeros((48, 48)))
    before = sorted(os.listdir(d))
    cwd = os.getcwd()
    os.chdir(d)
    try:
        assert main(args) == 2
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sorted(os.listdir(d)) == before
