"""Images ↔ Q1 functions: exact round trips, bilinear interpolation on refined meshes, file formats."""
import numpy as np
import pytest

from fem_crossdiff.fem import function_to_image, image_mesh, image_to_function, pixel_space
from fem_crossdiff.imaging.files import ImageError, check_image, read_image, to_grey, write_image


def test_pixel_mesh_round_trip_is_exact(rng):
    img = rng.random((13, 22))
    V = pixel_space(image_mesh(img.shape))
    assert np.array_equal(function_to_image(image_to_function(img, V)), img)


def test_vertices_are_pixel_centres():
    mesh = image_mesh((5, 9))
    X = mesh.coordinates.dat.data_ro
    assert X[:, 0].min() == 0 and X[:, 0].max() == 8 and X[:, 1].max() == 4
    assert mesh.num_vertices() == 45


@pytest.mark.parametrize("refine", [1, 2])
def test_refined_mesh_holds_the_bilinear_interpolant(rng, refine):
    import firedrake as fd
    img = rng.random((6, 7))
    V = pixel_space(image_mesh(img.shape, refine=refine))
    f = image_to_function(img, V)
    # pixel centres are vertices of the refined mesh: the pixels come back exactly
    assert np.array_equal(function_to_image(f), img)
    # between pixel centres the field is bilinear: the midpoint of a pixel gap is the mean of its 4 corners
    val = fd.PointEvaluator(V.mesh(), [[2.5, 3.5]]).evaluate(f)[0]  # x=col 2.5, y=3.5: rows 1.5 from the top
    expect = img[1:3, 2:4].mean()
    assert abs(val - expect) < 1e-12
    # the integral agrees with the pixel-mesh field (the bilinear interpolant is the same function)
    f0 = image_to_function(img, pixel_space(image_mesh(img.shape)))
    assert abs(fd.assemble(f * fd.dx) - fd.assemble(f0 * fd.dx)) < 1e-12


def test_npy_round_trip_is_exact(tmp_path, rng):
    img = rng.random((9, 4))
    write_image(tmp_path / "a.npy", img)
    assert np.array_equal(read_image(tmp_path / "a.npy"), img)


def test_png_round_trip_of_8bit_values(tmp_path, rng):
    img = rng.integers(0, 256, (7, 11)) / 255.0
    write_image(tmp_path / "a.png", img)
    assert np.array_equal(read_image(tmp_path / "a.png"), img)


def test_colour_and_16bit_are_converted(tmp_path):
    import imageio.v3 as iio
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 1] = 255
    iio.imwrite(tmp_path / "g.png", rgb)
    assert np.allclose(read_image(tmp_path / "g.png"), 0.7154, atol=1e-12)       # BT.709 luma of pure green
    a16 = np.full((4, 5), 65535, np.uint16)
    a16[0, 0] = 0
    iio.imwrite(tmp_path / "a.tif", a16)
    img = read_image(tmp_path / "a.tif")
    assert img[0, 0] == 0 and img[1, 1] == 1.0


def test_one_colour_conversion_for_user_files_and_bundled_pictures(tmp_path):
    """A user's PNG of a bundled colour picture reads as the grey picture the models were trained and tested on
    (scikit-image's ``rgb2gray``, BT.709), with or without an alpha channel."""
    import imageio.v3 as iio
    import skimage.data
    from fem_crossdiff.imaging.data import load
    rgb = skimage.data.astronaut()
    iio.imwrite(tmp_path / "astronaut.png", rgb)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    iio.imwrite(tmp_path / "astronaut_rgba.png", rgba)
    bundled = load("astronaut")
    assert np.array_equal(read_image(tmp_path / "astronaut.png"), bundled)
    assert np.allclose(read_image(tmp_path / "astronaut_rgba.png"), bundled, atol=1e-12)
    assert np.array_equal(to_grey(rgb), bundled)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 4)), "too small"), (np.zeros((1, 1)), "too small"), (np.zeros((3,)), "2-D"),
    (np.array([[0.0, np.nan], [0, 0]]), "NaN"), (np.array([["a", "b"], ["c", "d"]]), "real numbers")])
def test_bad_arrays_are_refused(bad, match):
    with pytest.raises(ImageError, match=match):
        check_image(bad)


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageError, match="text.png: cannot be read as an image"):
        read_image(tmp_path / "text.png")
    with pytest.raises(ImageError, match="cannot write '.gif'"):
        write_image(tmp_path / "x.gif", np.zeros((3, 3)))


def test_a_write_that_fails_half_way_leaves_the_existing_file_intact(tmp_path, monkeypatch):
    """The writer itself fails after writing part of the file (a full disk): the file being replaced keeps its
    bytes, no temporary file is left, and the error names the file."""
    import errno
    from fem_crossdiff.errors import InputError
    target = tmp_path / "keep.npy"
    np.save(target, np.ones((3, 3)))
    before = target.read_bytes()

    def half_then_full(fh, arr, **kwargs):
        fh.write(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", half_then_full)
    with pytest.raises(InputError, match=r"keep.npy: writing failed \(No space left on device\); nothing was changed"):
        write_image(target, np.zeros((3, 3)), replace=True)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.npy"]


def test_outputs_are_created_without_replacing_what_appears_meanwhile(tmp_path):
    """Without replace, the finished file is linked into place: a file that appeared at the output path while the
    result was being written (another run) is kept, byte for byte, and the run says so."""
    from fem_crossdiff.errors import InputError
    from fem_crossdiff.safeio import atomic_write
    target = tmp_path / "out.npy"

    def write(tmp):
        target.write_bytes(b"the other run's result")            # appears while we write
        np.save(tmp, np.zeros(2))

    with pytest.raises(InputError, match=r"out.npy: exists \(it appeared while this command ran\); it was not "):
        atomic_write(target, write, ".npy")
    assert target.read_bytes() == b"the other run's result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]
    atomic_write(tmp_path / "new.npy", lambda tmp: np.save(tmp, np.ones(2)), ".npy")
    assert np.array_equal(np.load(tmp_path / "new.npy"), np.ones(2))
    with pytest.raises(InputError, match="new.npy: exists"):
        write_image(tmp_path / "new.npy", np.zeros((2, 2)))               # write_image never replaces by default
    assert np.array_equal(np.load(tmp_path / "new.npy"), np.ones(2))
