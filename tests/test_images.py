"""Images ↔ Q1 functions: exact round trips, bilinear interpolation on refined meshes, file formats."""
import numpy as np
import pytest

from fem_crossdiff.images import (ImageError, check_image, function_to_image, image_mesh, image_to_function,
                                  pixel_space, read_image, write_image)


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
    assert np.allclose(read_image(tmp_path / "g.png"), 0.587, atol=1e-12)
    a16 = np.full((4, 5), 65535, np.uint16)
    a16[0, 0] = 0
    iio.imwrite(tmp_path / "a.tif", a16)
    img = read_image(tmp_path / "a.tif")
    assert img[0, 0] == 0 and img[1, 1] == 1.0


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


def test_failed_write_leaves_existing_file_intact(tmp_path):
    target = tmp_path / "keep.npy"
    np.save(target, np.ones((3, 3)))
    with pytest.raises(ImageError):
        write_image(target, np.full((3, 3), np.nan))
    assert np.array_equal(np.load(target), np.ones((3, 3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.npy"]
