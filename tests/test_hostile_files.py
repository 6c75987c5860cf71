"""Image files that tools other than ours write: colour spaces (CMYK, MinIsWhite, palettes), depths (16-bit colour
PNG, floats on a 0-255 scale), alpha, planar and rotated layouts, damaged files — each read as what it means or
refused in one line — and results written at their depth (16-bit colour PNG, JPEG)."""
import struct
import warnings
import zlib

import numpy as np
import pytest

from fem_crossdiff.cli import main
from fem_crossdiff.imaging.files import ImageError, read_image, write_image


def _png(path, arr, interlace=False):
    """A PNG written plainly (filter None, one IDAT; with ``interlace``: the seven Adam7 passes), independent of the
    package's writer: uint8/uint16, (H, W) grey or (H, W, C) with C = 2, 3, 4."""
    arr = np.asarray(arr)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    big = arr.astype(">u2" if arr.dtype == np.uint16 else np.uint8).reshape(arr.shape[0], arr.shape[1], channels)
    passes = ([(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1)]
              if interlace else [(0, 0, 1, 1)])
    raw = b""
    for y0, x0, dy, dx in passes:
        sub = big[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\0" + row.tobytes() for row in sub)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = struct.pack(">IIBBBBB", arr.shape[1], arr.shape[0], 8 * arr.dtype.itemsize,
                       {1: 0, 2: 4, 3: 2, 4: 6}[channels], 0, 0, int(interlace))
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw))
                 + chunk(b"IEND", b""))


@pytest.fixture
def rgb16():
    rng = np.random.default_rng(5)
    return (rng.random((13, 11, 3)) * 65535).astype(np.uint16)


# --- colour spaces ---------------------------------------------------------------------------------------------------

def test_a_cmyk_jpeg_is_read_as_rgb_not_as_rgba(tmp_path):
    """Pillow writes CMYK JPEGs the Adobe way (inverted, with an APP14 marker); read back, R = (1 - C)(1 - K) etc.,
    not the inks as RGB with K as alpha (which composited on white gave a white image)."""
    from PIL import Image
    cmyk = np.zeros((16, 24, 4), np.uint8)
    cmyk[:, :8] = (0, 255, 255, 0)                                          # red
    cmyk[:, 8:16] = (0, 0, 0, 128)                                          # mid grey
    cmyk[:, 16:] = (255, 0, 128, 64)                                        # a dark cyan-green
    Image.frombuffer("CMYK", (24, 16), cmyk.tobytes(), "raw", "CMYK", 0, 1).save(tmp_path / "c.jpg", quality=100)
    img = read_image(tmp_path / "c.jpg", colour=True)
    ink = cmyk / 255.0
    want = (1 - ink[..., :3]) * (1 - ink[..., 3:])
    assert img.shape == (16, 24, 3)
    assert np.abs(img - want)[2:-2, 2:6].max() < 0.03                       # inside the blocks (JPEG's error)
    assert np.abs(img - want)[2:-2, 10:14].max() < 0.03 and np.abs(img - want)[2:-2, 18:22].max() < 0.03


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_cmyk_tiff_is_converted_at_its_depth(tmp_path, dtype):
    import tifffile
    top = np.iinfo(dtype).max
    ink = np.random.default_rng(2).random((9, 7, 4))
    tifffile.imwrite(tmp_path / "c.tif", np.round(top * ink).astype(dtype), photometric="separated")
    img, depth = read_image(tmp_path / "c.tif", with_depth=True, colour=True)
    ink = np.round(top * ink) / top
    assert depth == np.dtype(dtype).name
    assert np.abs(img - (1 - ink[..., :3]) * (1 - ink[..., 3:])).max() <= 0.5 / top + 1e-12


def test_a_miniswhite_tiff_is_not_a_negative(tmp_path):
    import tifffile
    grey = np.random.default_rng(3).integers(0, 256, (8, 9)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "w.tif", grey, photometric="miniswhite")
    tifffile.imwrite(tmp_path / "w16.tif", grey.astype(np.uint16) * 257, photometric="miniswhite")
    assert np.allclose(read_image(tmp_path / "w.tif"), 1 - grey / 255.0, atol=1e-12)
    assert np.allclose(read_image(tmp_path / "w16.tif"), 1 - grey / 255.0, atol=1e-12)
    from PIL import Image
    tifffile.imwrite(tmp_path / "fax.tif", grey > 100)                         # 1 bit, MinIsWhite (tifffile's choice)
    with Image.open(tmp_path / "fax.tif") as im:                              # as a viewer shows it
        assert np.array_equal(read_image(tmp_path / "fax.tif"), np.asarray(im).astype(float))


def test_compressed_tiffs_are_read_and_what_needs_imagecodecs_is_said(tmp_path):
    """LZW, JPEG and PackBits TIFFs (the usual output of Pillow, GIMP, Photoshop, ImageJ) need imagecodecs in
    tifffile: read through Pillow's libtiff where it keeps every bit; a 16-bit colour one is refused naming the
    package (Pillow would keep 8 bits)."""
    import importlib.util
    import tifffile
    from PIL import Image
    rng = np.random.default_rng(7)
    rgb = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    g16 = (rng.random((16, 16)) * 65535).astype(np.uint16)
    Image.fromarray(rgb).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    Image.fromarray(rgb).save(tmp_path / "pack.tif", compression="packbits")
    Image.fromarray(g16).save(tmp_path / "g16.tif", compression="tiff_lzw")
    Image.fromarray(np.kron(rgb[:2, :2], np.ones((8, 8, 1), np.uint8))).save(tmp_path / "jpeg.tif", compression="jpeg",
                                                                              quality=100)
    assert np.array_equal(read_image(tmp_path / "lzw.tif", colour=True), rgb / 255.0)
    assert np.array_equal(read_image(tmp_path / "pack.tif", colour=True), rgb / 255.0)
    img, depth = read_image(tmp_path / "g16.tif", with_depth=True)
    assert depth == "uint16" and np.array_equal(img, g16 / 65535.0)
    assert np.abs(read_image(tmp_path / "jpeg.tif", colour=True)[2:6, 2:6] - rgb[0, 0] / 255.0).max() < 0.03
    if importlib.util.find_spec("imagecodecs") is None:
        tifffile.imwrite(tmp_path / "c16.tif", (rng.random((8, 8, 3)) * 65535).astype(np.uint16), photometric="rgb")
        with tifffile.TiffFile(tmp_path / "c16.tif") as tif:
            at = tif.pages[0].tags["Compression"].valueoffset
        data = bytearray((tmp_path / "c16.tif").read_bytes())
        data[at:at + 2] = (5).to_bytes(2, "little")                           # now claims LZW
        (tmp_path / "c16.tif").write_bytes(bytes(data))
        with pytest.raises(ImageError, match=r"c16.tif: a 16-bit TIFF of 3 samples per pixel compressed with LZW, "
                                             r"which needs the imagecodecs package"):
            read_image(tmp_path / "c16.tif")


def test_a_palette_tiff_is_looked_up_not_read_as_grey_indices(tmp_path):
    import tifffile
    rng = np.random.default_rng(4)
    cmap = (rng.integers(0, 256, (3, 256)) * 257).astype(np.uint16)
    index = rng.integers(0, 256, (6, 7)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "p.tif", index, photometric="palette", colormap=cmap)
    img, depth = read_image(tmp_path / "p.tif", with_depth=True, colour=True)
    assert depth == "uint8"
    assert np.allclose(img, cmap.T[index] / 65535.0, atol=1e-12)


def test_a_single_page_planar_rgb_tiff_is_one_colour_image(tmp_path):
    import tifffile
    planes = np.random.default_rng(5).integers(0, 256, (3, 16, 12)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", planes, photometric="rgb", planarconfig="separate")
    img = read_image(tmp_path / "planar.tif", colour=True)
    assert np.allclose(img, np.moveaxis(planes, 0, -1) / 255.0, atol=1e-12)


# --- depth ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("interlace", [False, True])
def test_16bit_colour_and_alpha_pngs_keep_16_bits(tmp_path, channels, interlace):
    """RGB, RGBA and grey + alpha PNGs at 16 bits (Pillow keeps their high bytes only): every bit read, also
    interlaced; Pillow's own 8-bit reading of the same file is their high bytes."""
    from PIL import Image
    rng = np.random.default_rng(channels)
    arr = (rng.random((13, 11, channels)) * 65535).astype(np.uint16)
    arr[..., -1] = np.where(arr[..., -1] > 30000, 65535, arr[..., -1]) if channels != 3 else arr[..., -1]
    _png(tmp_path / "a.png", arr, interlace)
    high = (arr >> 8).astype(np.uint8)
    with Image.open(tmp_path / "a.png") as im:                              # grey + alpha: as RGBA
        assert np.array_equal(np.asarray(im), high[..., [0, 0, 0, 1]] if channels == 2 else high)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img, depth = read_image(tmp_path / "a.png", with_depth=True, colour=True)
    unit = arr / 65535.0
    if channels in (2, 4):
        unit = (1 - unit[..., -1:]) + unit[..., -1:] * unit[..., :-1]
    want = unit[..., 0] if channels == 2 else unit                            # grey stays grey
    assert depth == "uint16"
    assert np.allclose(img, want, atol=1e-12)


def test_the_png_reader_undoes_every_filter_as_pillow_writes_them(tmp_path):
    """Pillow's adaptive row filters (Sub, Up, Average, Paeth; the reconstruction per byte is the same at 8 and 16
    bits) are undone exactly by the package's PNG reader."""
    from PIL import Image
    from fem_crossdiff.imaging.png16 import read_png
    y, x = np.mgrid[0:40, 0:37]
    smooth = np.stack([(x * 7 + y * 3) % 256, (x * y) % 251, (40 * np.sin(x / 3.0) + 120 + y)], -1)
    ramps = np.cumsum(np.random.default_rng(0).random((40, 37, 3)) * 255, axis=1) // 20
    used = set()
    for name, arr in (("s.png", smooth), ("r.png", np.minimum(ramps, 255))):
        arr = arr.astype(np.uint8)
        Image.fromarray(arr).save(tmp_path / name, optimize=True)
        used |= set(zlib.decompress(b"".join(_idat(tmp_path / name)))[::1 + 37 * 3])
        assert np.array_equal(read_png(tmp_path / name), arr)
    assert used >= {1, 2, 3, 4}


def _idat(path):
    """The IDAT payloads of a PNG."""
    data, pos, out = (path).read_bytes(), 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            out.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    return out


def test_colour_16bit_and_float_results_are_written_as_16bit_pngs(tmp_path, rgb16):
    """A colour result at 16 bits (or float) written as PNG: 16 bits kept (it was a TypeError from Pillow), read
    back exactly; Pillow reads the same file as its high bytes."""
    from PIL import Image
    unit = rgb16 / 65535.0
    assert write_image(tmp_path / "o.png", unit, depth="uint16") is None
    img, depth = read_image(tmp_path / "o.png", with_depth=True, colour=True)
    assert depth == "uint16" and np.array_equal(img, unit)
    with Image.open(tmp_path / "o.png") as im:
        assert np.array_equal(np.asarray(im), (rgb16 >> 8).astype(np.uint8))
    note = write_image(tmp_path / "f.png", unit, depth="float")
    assert "float pixels stored as uint16" in note
    assert np.array_equal(read_image(tmp_path / "f.png", colour=True), unit)
    grey = rgb16[..., 0] / 65535.0
    write_image(tmp_path / "g.png", grey, depth="uint16")
    assert np.array_equal(read_image(tmp_path / "g.png"), grey)


def test_a_batch_with_a_16bit_colour_png_writes_it_at_16_bits(tmp_path, rgb16, capsys):
    """denoise of a 16-bit colour PNG among other files: every file restored, the 16-bit one at 16 bits."""
    from PIL import Image
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    big = np.kron(rgb16[:8, :8] // 2 + 16000, np.ones((3, 3, 1), np.uint16))        # 24×24
    _png(tmp_path / "in" / "a16.png", big)
    Image.fromarray((big >> 8).astype(np.uint8)).save(tmp_path / "in" / "b8.png")
    assert main(["denoise", str(tmp_path / "in"), "--out-dir", str(tmp_path / "out"), "--sigma", "25",
                 "--quiet"]) == 0
    assert "2 of 2 image(s) restored" in capsys.readouterr().out
    img, depth = read_image(tmp_path / "out" / "a16.png", with_depth=True, colour=True)
    assert depth == "uint16" and img.shape == (24, 24, 3)
    assert len(np.unique(np.round(img * 65535).astype(int) % 257)) > 1          # not 8-bit values
    assert read_image(tmp_path / "out" / "b8.png", with_depth=True)[1] == "uint8"


def test_8bit_grey_alpha_is_composited_on_white_and_said(tmp_path):
    from PIL import Image
    la = np.zeros((6, 8, 2), np.uint8)
    la[..., 0] = 40
    la[:, :4, 1] = 255
    la[:, 4:, 1] = 0                                                           # transparent right half
    Image.frombuffer("LA", (8, 6), la.tobytes(), "raw", "LA", 0, 1).save(tmp_path / "la.png")
    with pytest.warns(UserWarning, match="la.png: its alpha channel is composited on white"):
        img, depth = read_image(tmp_path / "la.png", with_depth=True)
    assert depth == "uint8"
    assert np.allclose(img[:, :4], 40 / 255.0) and np.allclose(img[:, 4:], 1.0)


@pytest.mark.parametrize("scale", [255, 65535])
def test_a_float_tiff_on_a_0_255_or_0_65535_scale_is_refused_naming_the_range(tmp_path, scale, capsys):
    import tifffile
    grey = np.random.default_rng(6).random((20, 20))
    tifffile.imwrite(tmp_path / "f.tif", (scale * grey).astype(np.float32))
    with pytest.raises(ImageError, match=rf"f.tif: float pixels on a 0-{scale} scale \(values .*; float images are "
                                         rf"read as 0 = black, 1 = white: divide it by {scale} to \[0, 1\]"):
        read_image(tmp_path / "f.tif")
    capsys.readouterr()
    assert main(["denoise", str(tmp_path / "f.tif"), str(tmp_path / "o.tif"), "--quiet"]) == 2    # not "sigma 6e3"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"float pixels on a 0-{scale} scale" in err
    assert not (tmp_path / "o.tif").exists()
    from fem_crossdiff.imaging.noise import gaussian_noise, speckle_noise
    clean = np.full((64, 64), 1.0)                      # [0, 1] data stays readable, values kept: heavy Gaussian
    for name, img in (("g.tif", gaussian_noise(clean, 75 / 255.0, seed=1)),           # noise, single-look speckle,
                      ("s.tif", speckle_noise(clean, 1.0)), ("four.tif", 4 * grey)):  # test_cli's 4× overshoot
        tifffile.imwrite(tmp_path / name, img.astype(np.float32))
        assert np.array_equal(read_image(tmp_path / name), img.astype(np.float32).astype(np.float64))


def test_a_big_endian_uint16_npy_is_16_bits_not_ambiguous(tmp_path):
    arr = np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000
    np.save(tmp_path / "b.npy", arr.astype(">u2"))
    img, depth = read_image(tmp_path / "b.npy", with_depth=True)
    assert depth == "uint16" and np.allclose(img, arr / 65535.0)


# --- layout --------------------------------------------------------------------------------------------------------

def test_camera_jpegs_are_read_as_they_are_shown(tmp_path):
    """A camera's portrait JPEG (pixels landscape, Orientation 6: rotate 90° clockwise to view) is read as it is
    shown, so the result (written without EXIF) is shown the same way; an MPO (a JPEG followed by its preview) is
    its first image, not an animation."""
    from PIL import Image
    arr = np.zeros((16, 32), np.uint8)
    arr[:, :8] = 255                                                           # left band, white
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "portrait.jpg", exif=exif, quality=100)
    img = read_image(tmp_path / "portrait.jpg")
    assert img.shape == (32, 16)
    assert img[:8].mean() > 0.9 and img[-8:].mean() < 0.1                      # the left band is now on top
    first = Image.fromarray(np.full((16, 16), 200, np.uint8))                  # an MPO: a JPEG and its preview
    second = Image.fromarray(np.full((8, 8), 10, np.uint8))
    first.save(tmp_path / "c.jpg", format="MPO", save_all=True, append_images=[second], quality=100)
    assert np.allclose(read_image(tmp_path / "c.jpg"), 200 / 255.0, atol=2 / 255)


# --- damaged files -------------------------------------------------------------------------------------------------

def test_a_corrupt_png_is_said_to_be_unreadable_without_install_advice(tmp_path, rgb16):
    from PIL import Image
    Image.fromarray((rgb16 >> 8).astype(np.uint8)).save(tmp_path / "ok8.png")
    _png(tmp_path / "ok16.png", rgb16)
    good8, good16 = (tmp_path / "ok8.png").read_bytes(), (tmp_path / "ok16.png").read_bytes()
    cases = {"header.png": good8[:8] + b"\0\0\0\x0dIHDX" + good8[16:],         # the header chunk's name damaged
             "garbage.png": good8[:8] + bytes(range(256)) * 4,
             "cut8.png": good8[:len(good8) // 2], "cut16.png": good16[:len(good16) // 2],
             "flipped16.png": good16[:60] + bytes(b ^ 0xFF for b in good16[60:90]) + good16[90:],
             "text.png": b"not an image at all"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError) as e:
            read_image(tmp_path / name)
        message = str(e.value)
        assert message.startswith(f"{tmp_path / name}: cannot be read as an image ("), message
        assert "pip" not in message and "install" not in message and "imageio" not in message, message
        assert "\n" not in message and message.count(str(tmp_path)) == 1, message
    assert message.endswith("(not a PNG, JPEG, TIFF, BMP or NPY file)")


# --- writing -------------------------------------------------------------------------------------------------------

def test_results_are_written_as_jpeg(tmp_path, rgb16):
    """.jpg/.jpeg are written (8 bits, quality 95, no chroma subsampling); deeper data says what is lost."""
    smooth = np.kron(rgb16[:4, :4] / 65535.0, np.ones((8, 8, 1)))
    assert write_image(tmp_path / "o.jpg", smooth) is None
    assert np.abs(read_image(tmp_path / "o.jpg", colour=True) - smooth).max() < 0.03
    note = write_image(tmp_path / "o16.jpeg", smooth, depth="uint16")
    assert "uint16 pixels stored as uint8 (.jpeg holds uint8; use .png, .tif or .npy to keep them)" in note
    (tmp_path / "out").mkdir()
    assert main(["denoise", str(tmp_path / "o16.jpeg"), "--out-dir", str(tmp_path / "out"), "--format", "jpg",
                 "--quiet", "--sigma", "15"]) == 0
    img, depth = read_image(tmp_path / "out" / "o16.jpg", with_depth=True, colour=True)
    assert depth == "uint8" and img.shape == (32, 32, 3)


def test_clipping_is_said_when_it_loses_data_not_for_a_colour_results_overshoot(tmp_path, capsys):
    """Blue beside white, 8-bit, σ 15: the colour model's result leaves the RGB cube by ~10 levels near the edge
    (luma and chroma diffused apart); clipping it to the cube loses nothing and is not said. Values on another
    scale, or a float input's values outside [0, 1], are said when clipped."""
    from PIL import Image
    rng = np.random.default_rng(0)
    img = np.ones((32, 32, 3))
    img[:, 16:] = (0, 0, 1)
    noisy = np.round(np.clip(img + rng.normal(0, 15 / 255, img.shape), 0, 1) * 255).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "blue.png")
    assert main(["denoise", str(tmp_path / "blue.png"), str(tmp_path / "out.png"), "--sigma", "15", "--quiet"]) == 0
    assert "clipped" not in capsys.readouterr().err
    assert write_image(tmp_path / "u8.png", 255 * img[..., 0]) == (f"{tmp_path / 'u8.png'}: 512 pixel(s) outside "
                                                                   "[0, 1] clipped (values 0..255)")
    assert "2 pixel(s) outside [0, 1] clipped (values -0.01..1.01)" in write_image(
        tmp_path / "f.png", np.array([[-0.01, 0.5], [0.5, 1.01]]), depth="float")
