r"""Image files and arrays: reading (PNG/JPEG/TIFF/BMP/NPY), the one colour → grey conversion, checked arrays,
and atomic writing.

Pixels are float64 (8- and 16-bit integers scaled to [0, 1] by their range, floats kept), and a result is
written back at the input's depth (:data:`DEPTHS`). Colour becomes grey by
:func:`to_grey` — ITU-R BT.709 luma, as scikit-image's ``rgb2gray`` (alpha composited on white first, as its
``rgba2rgb``): the same conversion for the user's files and the bundled pictures the models were trained on.

What a file holds is read as what it means, or refused in one line:

- the format is told by the file's first bytes, not its name; TIFF by tifffile, 16-bit PNG by :mod:`.png16` (Pillow
  keeps 8 of the 16 bits of a colour or grey + alpha PNG), everything else by Pillow, turned upright by its
  EXIF orientation (the result carries no EXIF: it is shown as the input was);
- CMYK (a JPEG, Adobe's inverted ones included, or a TIFF of photometric SEPARATED) becomes RGB by
  :math:`R = (1 - C)(1 - K)`, :math:`G = (1 - M)(1 - K)`, :math:`B = (1 - Y)(1 - K)` (Pillow's conversion; no colour
  profile is applied); a MinIsWhite TIFF is inverted; a palette TIFF is looked up; a planar (band-sequential) TIFF
  is one colour image; 1-, 2-, 4- or 12-bit samples are scaled by their own range;
- alpha (grey + alpha or RGBA; a TIFF's premultiplied alpha first divided out) is composited on white, and said;
- float pixels mean 0 = black, 1 = white, and are kept as they are, noise and overshoot included. A float file on
  another scale (ImageJ writes 0–255 or 0–65535) would be silently wrong, so a float file whose 1st–99th percentile
  leaves :data:`FLOAT_RANGE` is refused, naming its range. The bounds leave room for what [0, 1] data can hold:
  Gaussian noise even of σ = 255 puts the 99th percentile of a white image at 3.3, single-look speckle (the
  heaviest multiplicative noise) at :math:`\ln 100 = 4.6`, whereas a 0–255 image reaches 5 unless it is nearly
  black (2 % of its range). Arrays given to the Python API are not files and are kept as they are.

Writing: ``.npy`` float64 exactly, ``.tif`` every depth, ``.png`` 8 or 16 bits (grey and colour; 16-bit by
:mod:`.png16`), ``.jpg`` 8 bits at quality :data:`JPEG_QUALITY` without chroma subsampling.
"""
import glob
import os
import warnings

import numpy as np

from ..errors import ImageError
from ..safeio import atomic_write
from .png16 import encode_png, png_header, read_png

__all__ = ["ImageError", "read_image", "write_image", "check_image", "to_grey", "image_paths", "folder_images", "IMAGE_SUFFIXES",
           "WRITE_SUFFIXES", "DEPTHS", "SUFFIX_DEPTHS", "FLOAT_RANGE", "OVERSHOOT", "JPEG_QUALITY"]

#: Suffixes :func:`read_image` reads and :func:`write_image` writes.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy")
#: The depths of pixel values: "uint8" and "uint16" (read as [0, 1] by their range, written back to it) and "float"
#: (values kept as they are).
DEPTHS = ("uint8", "uint16", "float")
#: The depths each writable suffix holds (``.npy``: float64, exact).
SUFFIX_DEPTHS = {".png": ("uint8", "uint16"), ".jpg": ("uint8",), ".jpeg": ("uint8",), ".tif": DEPTHS,
                 ".tiff": DEPTHS, ".npy": ("float",)}
WRITE_SUFFIXES = tuple(SUFFIX_DEPTHS)
#: Where the 1st and 99th percentiles of a float file must lie: beyond, it is on another scale than [0, 1].
FLOAT_RANGE = (-4.0, 5.0)
#: How far outside [0, 1] an image of integer depth may go before its clipping is said (see :func:`write_image`).
OVERSHOOT = 1.0
#: JPEG quality of written ``.jpg`` files (4:4:4, no chroma subsampling).
JPEG_QUALITY = 95
#: A file's first bytes → its format.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"),
          (b"II+\0", "TIFF"), (b"MM\0+", "TIFF"), (b"BM", "BMP"), (b"GIF8", "GIF"), (b"\x93NUMPY", "NPY"))
#: TIFF photometric interpretations (tifffile's PHOTOMETRIC) read here.
_MINISWHITE, _MINISBLACK, _RGB, _PALETTE, _SEPARATED = 0, 1, 2, 3, 5


def _depth(img, name):
    """The depth of the pixel array ``img``: uint8 (also bool), uint16 or float; other integer types are refused
    (their range says nothing about the image's: 0..255 in an int64 is common)."""
    if img.dtype == bool or img.dtype == np.uint8:
        return "uint8"
    if img.dtype == np.uint16:
        return "uint16"
    if np.issubdtype(img.dtype, np.integer):
        raise ImageError(f"{name}: {img.dtype} pixels (values {img.min()}..{img.max()}) are ambiguous; integer "
                         "images must be uint8 (0-255) or uint16 (0-65535): convert them (e.g. arr.astype(np.uint8)) "
                         "or give floats in [0, 1]")
    if not np.issubdtype(img.dtype, np.floating):
        raise ImageError(f"{name}: expected real numbers, got dtype {img.dtype}")
    return "float"


def _unit(img, name):
    """``img`` as float64: uint8 / uint16 / bool scaled to [0, 1] by their range, floats as they are."""
    depth = _depth(img, name)
    if depth == "float" or img.dtype == bool:
        return img.astype(np.float64)
    return img.astype(np.float64) / np.iinfo(img.dtype).max


def folder_images(folder):
    """The image files of ``folder`` (:data:`IMAGE_SUFFIXES`; not its sub-folders, hidden files skipped), sorted; a
    folder with none is refused."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as e:
        raise ImageError(f"{folder}: cannot list this folder ({e.strerror})") from None
    files = [os.path.join(folder, n) for n in names if not n.startswith(".")
             and os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES and os.path.isfile(os.path.join(folder, n))]
    if not files:
        raise ImageError(f"{folder}: a folder with no images (expected {', '.join(IMAGE_SUFFIXES)} files)")
    return files


def image_paths(spec, option=None):
    """The image files that ``spec`` names, as every command takes them: an existing file (itself; read later, which
    refuses what is not an image), an existing folder (its image files, sorted; one with none is refused), a glob
    (``*``, ``?`` or ``[``: its matches sorted, a folder it matches counts as its images; one matching nothing is
    refused); None if ``spec`` is none of these (e.g. a missing file, or a bundled picture's name). ``option``: the
    command-line option that named it, for messages."""
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        return folder_images(spec)
    if os.path.exists(spec):
        return [spec]
    if any(ch in spec for ch in "*?["):
        matched = sorted(glob.glob(spec))
        if not matched:
            raise ImageError(f"{option + ' ' if option else ''}'{spec}': matches no file")
        return [f for m in matched for f in (folder_images(m) if os.path.isdir(m) else [m])]
    return None


def check_image(img, name="image", colour=False):
    """Return ``img`` as a float64 array (H, W), or with ``colour`` also (H, W, 3), or raise :class:`ImageError`
    saying what is wrong.

    uint8 and uint16 arrays are scaled to [0, 1] by their range (as files are read); other integer types are
    refused; float values are kept as they are.
    """
    img = np.asarray(img)
    if colour and img.ndim == 3 and img.shape[-1] == 4:
        raise ImageError(f"{name}: an RGBA array; give RGB (H, W, 3) (drop or composite the alpha channel)")
    if not (img.ndim == 2 or (colour and img.ndim == 3 and img.shape[-1] == 3)):
        want = "a 2-D grey image or an (H, W, 3) colour image" if colour else "a 2-D grey image"
        raise ImageError(f"{name}: expected {want}, got an array of shape {img.shape}")
    if min(img.shape[:2]) < 2:
        raise ImageError(f"{name}: image of shape {img.shape} is too small; need at least 2×2 pixels")
    if not np.issubdtype(img.dtype, np.number) and img.dtype != bool or np.iscomplexobj(img):
        raise ImageError(f"{name}: expected real numbers, got dtype {img.dtype}")
    img = _unit(img, name)
    if not np.all(np.isfinite(img)):
        raise ImageError(f"{name}: contains {np.count_nonzero(~np.isfinite(img))} NaN or infinite values")
    return img


def to_grey(rgb):
    """Colour (H, W, 3) or (H, W, 4) → grey (H, W) float64: BT.709 luma of the channels scaled to [0, 1]
    (scikit-image's ``rgb2gray``; an alpha channel is first composited on white, as its ``rgba2rgb``)."""
    from skimage.color import rgb2gray, rgba2rgb
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4):
        raise ImageError(f"expected a colour image of shape (H, W, 3) or (H, W, 4), got {rgb.shape}")
    if rgb.shape[-1] == 4:
        rgb = rgba2rgb(rgb)
    return np.asarray(rgb2gray(rgb), dtype=np.float64)


def _composite(arr, name):
    """Grey + alpha (H, W, 2) or RGBA (H, W, 4) → grey (H, W) or RGB (H, W, 3) float64, composited on white:
    :math:`(1 - \\alpha) + \\alpha c` (scikit-image's ``rgba2rgb``, for either)."""
    unit = _unit(arr, name)
    colour, alpha = unit[..., :-1], unit[..., -1:]
    if not (alpha.min() >= 0 and alpha.max() <= 1):
        raise ImageError(f"{name}: alpha values {alpha.min():.4g}..{alpha.max():.4g} outside [0, 1]")
    out = (1 - alpha) * 1.0 + alpha * colour
    return out[..., 0] if out.shape[-1] == 1 else out


def _float_scale(img, name):
    """Refuse float pixels whose bulk (1st–99th percentile) leaves :data:`FLOAT_RANGE`: another scale than [0, 1]."""
    lo, hi = np.percentile(img, [1, 99])
    if lo < FLOAT_RANGE[0] or hi > FLOAT_RANGE[1]:
        top = next((top for top in (255, 65535) if -0.01 * top <= lo and 0.2 * top <= hi <= 1.01 * top), None)
        scale, fix = (f"a 0-{top} scale", f"divide it by {top}") if top else ("another scale than 0-1", "scale it")
        raise ImageError(f"{name}: float pixels on {scale} (values {img.min():.6g}..{img.max():.6g}, 98 % within "
                         f"{lo:.4g}..{hi:.4g}); float images are read as 0 = black, 1 = white: {fix} to [0, 1] or "
                         "save it as 8- or 16-bit integers")


def _to_unit(arr, name, colour):
    """``(float64 image, depth)`` from a file's array: integers → [0, 1]; alpha composited on white (said); colour
    kept as (H, W, 3) with ``colour``, else made grey (:func:`to_grey`); floats checked by :func:`_float_scale`."""
    arr = np.asarray(arr)
    if np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ImageError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if arr.dtype.byteorder not in "=|":                               # big-endian data: the same values, native
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    depth = _depth(arr, name)
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):
        warnings.warn(f"{name}: its alpha channel is composited on white (the result has none)", stacklevel=3)
        arr = _composite(arr, name)
    if arr.ndim == 3 and arr.shape[-1] == 3 and not colour:
        arr = to_grey(arr)
    img = check_image(arr, name, colour=colour)
    if depth == "float":
        _float_scale(img, name)
    return img, depth


def _format(head):
    """The format of a file by its first bytes: PNG, JPEG, TIFF, BMP, GIF, NPY, or None."""
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def _pillow(path):
    """The pixel array of a file Pillow reads (one image; upright by its EXIF orientation); CMYK → RGB, a palette
    → RGB(A), a transparent colour → an alpha channel."""
    from PIL import Image, ImageOps
    with Image.open(path) as im:
        frames = getattr(im, "n_frames", 1)
        if frames > 1 and im.format != "MPO":                           # MPO: a JPEG, its preview after it
            raise ImageError(f"{path}: holds {frames} images (an animation or stack); give one image per file")
        im.load()
        im = ImageOps.exif_transpose(im)
    mode, alpha = im.mode, "transparency" in im.info
    if mode == "CMYK":
        im = im.convert("RGB")                                          # Adobe's inverted CMYK: undone on decoding
    elif mode in ("L", "RGB") and alpha:
        im = im.convert("LA" if mode == "L" else "RGBA")
    elif mode not in ("1", "L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I", "F"):
        im = im.convert("RGBA" if alpha or "A" in mode or "a" in mode else "RGB")   # P, PA, YCbCr, LAB, RGBa, ...
    return np.asarray(im)


def _tiff(path):
    """The pixel array of a one-image TIFF as grey (H, W), grey + alpha, RGB or RGBA (H, W, C); refuses several
    images and what it cannot interpret."""
    import tifffile
    with tifffile.TiffFile(path) as tif:
        if len(tif.pages) > 1:
            raise ImageError(f"{path}: holds {len(tif.pages)} pages (a multi-page TIFF), not one image; give one "
                             "image per file")
        page = tif.pages[0]
        axes, shape, photometric = page.axes, page.shape, int(page.photometric)
        bits, extras, inkset = page.bitspersample, tuple(page.extrasamples), page.tags.valueof(332, 1)
        colormap, planes = page.colormap, page.samplesperpixel
        codec = getattr(page.compression, "name", page.compression)
        try:
            arr = page.asarray()
        except Exception as e:                                 # LZW, JPEG, PackBits: tifffile needs imagecodecs
            if "imagecodecs" not in str(e):
                raise
            arr = None
    if arr is None:
        if bits <= 8 or planes == 1:                                    # Pillow's libtiff reads these whole
            return _pillow(path)
        raise ImageError(f"{path}: a {bits}-bit TIFF of {planes} samples per pixel compressed with {codec}, which "
                         "needs the imagecodecs package (pip install imagecodecs); or save it uncompressed or with "
                         "deflate (zlib)")
    if axes == "SYX":                                                   # planar (band-sequential) samples
        arr, axes = np.moveaxis(arr, 0, -1), "YXS"
    if axes not in ("YX", "YXS"):
        raise ImageError(f"{path}: holds a stack of shape {tuple(shape)} (axes {axes}), not one image; give one "
                         "image per file")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    samples = 1 if arr.ndim == 2 else arr.shape[-1]
    integer = np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool
    if photometric == _PALETTE:
        if colormap is None or samples != 1 or not integer:
            raise ImageError(f"{path}: a palette TIFF without a usable colour map")
        rgb = np.asarray(colormap).T[np.minimum(arr, len(colormap[0]) - 1)].astype(np.uint16)
        for shift in (257, 256):                                        # 8-bit colour maps, stored as 16 bits
            if not np.any(rgb % shift):
                return (rgb // shift).astype(np.uint8)
        return rgb
    if bits == 1 and integer:
        arr = arr.astype(bool)
    elif integer and arr.dtype in (np.uint8, np.uint16) and bits < 8 * arr.dtype.itemsize:
        top = np.iinfo(arr.dtype).max
        arr = np.round(arr.astype(np.float64) * (top / (2 ** bits - 1))).clip(0, top).astype(arr.dtype)
    if extras and extras[0] == 1 and samples in (2, 4, 5) and arr.dtype != bool:    # premultiplied alpha
        arr = _unpremultiply(arr)
    if photometric in (_MINISWHITE, _MINISBLACK):
        if samples > 2:
            raise ImageError(f"{path}: a grey TIFF of {samples} samples per pixel; expected grey or grey + alpha")
        if photometric == _MINISWHITE:
            arr = arr.copy()
            grey = arr if samples == 1 else arr[..., 0]
            grey[...] = ~grey if arr.dtype == bool else (np.iinfo(arr.dtype).max - grey if integer else 1 - grey)
        return arr
    if photometric == _RGB and samples >= 3:
        return arr[..., :4]
    if photometric == _SEPARATED and inkset == 1 and samples in (4, 5) and arr.dtype != bool:
        return _cmyk_to_rgb(arr)
    names = {_RGB: "RGB", _SEPARATED: "SEPARATED (inks)", 6: "YCbCr", 8: "CIELab", 9: "ICCLab", 10: "ITULab",
             32803: "CFA (raw sensor data)", 32844: "LogL", 32845: "LogLuv"}
    raise ImageError(f"{path}: a TIFF of photometric {names.get(photometric, photometric)} with {samples} sample(s) "
                     "per pixel, which is not read; save it as grey, RGB or CMYK")


def _unpremultiply(arr):
    """Colour samples divided by their (premultiplied, last-sample) alpha, at the array's type."""
    unit = arr.astype(np.float64) / (np.iinfo(arr.dtype).max if arr.dtype.kind == "u" else 1.0)
    alpha = unit[..., -1:]
    unit[..., :-1] = np.where(alpha > 0, unit[..., :-1] / np.where(alpha > 0, alpha, 1), 0).clip(0, 1)
    if arr.dtype.kind != "u":
        return unit.astype(arr.dtype)
    return np.round(unit * np.iinfo(arr.dtype).max).astype(arr.dtype)


def _cmyk_to_rgb(arr):
    """CMYK (and alpha) → RGB (and alpha), at the array's type: :math:`R = (1 - C)(1 - K)` etc."""
    if arr.dtype.kind == "u":
        top = int(np.iinfo(arr.dtype).max)
        ink = arr.astype(np.int64)
        rgb = ((top - ink[..., :3]) * (top - ink[..., 3:4]) + top // 2) // top
    else:
        rgb = (1 - arr[..., :3]) * (1 - arr[..., 3:4])
    return np.concatenate([rgb, arr[..., 4:]], axis=-1).astype(arr.dtype)


def _read_file(path):
    """The pixel array of an image file (integers at their type, floats, bool); refuses a file holding several
    images (an animation, a multi-page TIFF, a stack) and says in one line what else is wrong."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not head:
        raise ImageError(f"{path}: cannot be read as an image (the file is empty)")
    kind = _format(head)
    if kind is None and path.lower().endswith(".npy"):
        kind = "NPY"
    try:
        if kind == "NPY":
            return np.load(path, allow_pickle=False)
        if kind == "TIFF":
            return _tiff(path)
        header = png_header(head)
        if header is not None and header[2] == 16:
            return read_png(path)
        return _pillow(path)
    except (ImageError, MemoryError):
        raise
    except Exception as e:  # PIL/tifffile/numpy raise many different types
        why = " ".join(str(e).replace(repr(path), "").replace(path, "").split()).strip(" :'")[:160]
        if type(e).__name__ == "DecompressionBombError":                  # Pillow's limit: not a damaged file
            raise ImageError(f"{path}: cannot be read as an image ({why})") from None
        if kind is None:
            raise ImageError(f"{path}: cannot be read as an image (not a PNG, JPEG, TIFF, BMP or NPY file)") from None
        what = "an unreadable NPY file" if kind == "NPY" else f"a damaged or truncated {kind} file"
        raise ImageError(f"{path}: cannot be read as an image ({what}: {why or type(e).__name__})") from None


def read_image(path, with_depth=False, colour=False):
    """Read PNG/JPEG/TIFF/BMP/NPY as a float64 image (with ``with_depth``: and its depth, one of :data:`DEPTHS`, so
    that the result can be written back at the input's depth).

    Colour is converted to grey (:func:`to_grey`) unless ``colour`` (then kept as (H, W, 3)); 8- and 16-bit integers
    are scaled to [0, 1], float data is kept as is (unless it is on another scale: see the module's docstring);
    alpha is composited on white; CMYK, MinIsWhite and palette images are converted; other integer types and files
    holding several images are refused.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ImageError(f"{path}: is a directory, expected an image file")
    try:
        arr = _read_file(path)
    except OSError as e:
        raise ImageError(f"{path}: cannot be read ({e.strerror or e})") from None
    img, depth = _to_unit(arr, path, colour)
    return (img, depth) if with_depth else img


def _quantised(img, depth):
    """``img`` in [0, 1] as uint8/uint16, and the mask of the pixels clipped (beyond half a level outside [0, 1])."""
    top = np.iinfo(depth).max
    clipped = (img < -0.5 / top) | (img > 1 + 0.5 / top)
    return np.round(np.clip(img, 0.0, 1.0) * top).astype(depth), clipped


def write_image(path, img, replace=False, depth="uint8"):
    """Write a grey (H, W) or colour (H, W, 3) image at ``depth`` (one of :data:`DEPTHS`; the input's, for a result
    read by :func:`read_image` ``with_depth``). Returns None, or one line saying what was lost.

    ``.npy`` keeps float64 exactly; ``.tif`` keeps every depth (float as float32); ``.png`` holds uint8 and uint16,
    so float data goes to a 16-bit PNG (said); ``.jpg`` holds uint8. Integer formats clip to [0, 1], which is said
    when it loses data:

    - ``depth`` float (the input's values may lie outside [0, 1]): any pixel beyond half a level outside;
    - ``depth`` uint8 or uint16: the input, and so the clean image, lay in [0, 1]; a result outside it overshoots
      (the colour models diffuse luma and chroma apart and leave the RGB cube by up to ~60 levels of 255 near
      saturated edges; the opponent transform itself round-trips to 1e-16). Clipping is the projection onto [0, 1],
      which brings every pixel closer to any image the input's depth can hold: nothing is lost, nothing is said,
      unless some value lies more than :data:`OVERSHOOT` outside (data on another scale, such as 0-255).

    The file is written to a temporary name and moved into place (:func:`~fem_crossdiff.safeio.atomic_write`): never
    left half-written, never replacing a file unless ``replace``.
    """
    path = os.fspath(path)
    img = check_image(img, "image to write", colour=True)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in WRITE_SUFFIXES:
        raise ImageError(f"{path}: cannot write '{suffix}' files; use {', '.join(WRITE_SUFFIXES)}")
    if depth not in DEPTHS:
        raise ImageError(f"{path}: unknown depth {depth!r}; expected one of {', '.join(DEPTHS)}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ImageError(f"{path}: directory {directory} does not exist")
    lost = []
    stored = depth if depth in SUFFIX_DEPTHS[suffix] else SUFFIX_DEPTHS[suffix][-1]
    if stored != depth and suffix != ".npy":
        keep = ".png, .tif or .npy" if depth == "uint16" else ".tif or .npy"
        lost.append(f"{depth} pixels stored as {stored} ({suffix} holds {', '.join(SUFFIX_DEPTHS[suffix])}; "
                    f"use {keep} to keep them)")
    if suffix == ".npy":
        data = img
    elif stored == "float":
        data = img.astype(np.float32)
    else:
        data, clipped = _quantised(img, stored)
        beyond = OVERSHOOT if depth != "float" else 0.0
        if np.any(clipped) and not (img.min() >= -beyond and img.max() <= 1 + beyond):
            lost.append(f"{np.count_nonzero(clipped)} pixel(s) outside [0, 1] clipped (values "
                        f"{img.min():.4g}..{img.max():.4g})")

    def write(tmp):
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, data)
        elif suffix in (".tif", ".tiff"):
            import tifffile
            tifffile.imwrite(tmp, data, photometric="rgb" if data.ndim == 3 else "minisblack")
        elif data.dtype == np.uint16:                                   # 16-bit PNG: Pillow holds no 16-bit colour
            with open(tmp, "wb") as fh:
                fh.write(encode_png(data))
        else:
            from PIL import Image
            options = {"quality": JPEG_QUALITY, "subsampling": 0} if suffix in (".jpg", ".jpeg") else {}
            Image.fromarray(data).save(tmp, format="PNG" if suffix == ".png" else "JPEG", **options)

    atomic_write(path, write, suffix, replace=replace)
    return f"{path}: " + "; ".join(lost) if lost else None
