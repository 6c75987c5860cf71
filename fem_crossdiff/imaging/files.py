"""Image files and arrays: reading (PNG/JPEG/TIFF/BMP/NPY), the one colour → grey conversion, checked arrays,
and atomic writing.

Pixels are float64 (8- and 16-bit integers scaled to [0, 1] by their range, floats kept), and a result is
written back at the input's depth (:data:`DEPTHS`). Colour becomes grey by
:func:`to_grey` — ITU-R BT.709 luma, as scikit-image's ``rgb2gray`` (alpha composited on white first, as its
``rgba2rgb``): the same conversion for the user's files and the bundled pictures the models were trained on.
"""
import os
import warnings

import numpy as np

from ..errors import ImageError
from ..safeio import atomic_write

__all__ = ["ImageError", "read_image", "write_image", "check_image", "to_grey", "IMAGE_SUFFIXES", "WRITE_SUFFIXES",
           "DEPTHS", "SUFFIX_DEPTHS"]

#: Suffixes :func:`read_image` reads and :func:`write_image` writes.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy")
#: The depths of pixel values: "uint8" and "uint16" (read as [0, 1] by their range, written back to it) and "float"
#: (values kept as they are).
DEPTHS = ("uint8", "uint16", "float")
#: The depths each writable suffix holds (``.npy``: float64, exact).
SUFFIX_DEPTHS = {".png": ("uint8", "uint16"), ".tif": DEPTHS, ".tiff": DEPTHS, ".npy": ("float",)}
WRITE_SUFFIXES = tuple(SUFFIX_DEPTHS)


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


def _to_unit(arr, name, colour):
    """``(float64 image, depth)`` from a file's array: integers → [0, 1]; colour kept as (H, W, 3) (alpha
    composited on white, said) with ``colour``, else made grey (:func:`to_grey`)."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] in (1, 2):                     # grey (+ alpha)
        arr = arr[..., 0]
    if np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ImageError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    depth = _depth(arr, name)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        if not colour:
            arr = to_grey(arr)
        elif arr.shape[-1] == 4:
            from skimage.color import rgba2rgb
            warnings.warn(f"{name}: its alpha channel is composited on white (the result has none)", stacklevel=3)
            arr = rgba2rgb(arr)                                        # floats in [0, 1]
    return check_image(arr, name, colour=colour), depth


def _read_file(path):
    """The pixel array of an image file; refuses a file holding several images (an animation, a multi-page TIFF,
    a TIFF stack: anything but one grey or colour plane)."""
    import imageio.v3 as iio
    if path.lower().endswith((".tif", ".tiff")):
        import tifffile
        with tifffile.TiffFile(path) as tif:
            pages, axes = len(tif.pages), (tif.series[0].axes if tif.series else "")
            shape = tif.series[0].shape if tif.series else ()
        if pages > 1:
            raise ImageError(f"{path}: holds {pages} pages (a multi-page TIFF), not one image; give one image per "
                             "file")
        if axes not in ("YX", "YXS"):
            raise ImageError(f"{path}: holds a stack of shape {tuple(shape)} (axes {axes}), not one image; give one "
                             "image per file")
    else:
        props = iio.improps(path, index=None)
        if props.is_batch and props.shape[0] > 1:
            raise ImageError(f"{path}: holds {props.shape[0]} images (an animation or stack); give one image per "
                             "file")
    return iio.imread(path)


def read_image(path, with_depth=False, colour=False):
    """Read PNG/JPEG/TIFF/BMP/NPY as a float64 image (with ``with_depth``: and its depth, one of :data:`DEPTHS`, so
    that the result can be written back at the input's depth).

    Colour is converted to grey (:func:`to_grey`) unless ``colour`` (then kept as (H, W, 3)); 8- and 16-bit integers
    are scaled to [0, 1], float data is kept as is; other integer types and files holding several images are
    refused.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ImageError(f"{path}: is a directory, expected an image file")
    try:
        arr = np.load(path, allow_pickle=False) if path.lower().endswith(".npy") else _read_file(path)
    except ImageError:
        raise
    except Exception as e:  # imageio/PIL/numpy raise many different types
        why = " ".join(str(e).split())[:200]
        raise ImageError(f"{path}: cannot be read as an image ({type(e).__name__}: {why})") from None
    img, depth = _to_unit(arr, path, colour)
    return (img, depth) if with_depth else img


def _quantised(img, depth):
    """``img`` in [0, 1] as uint8/uint16 and the number of pixels clipped (beyond half a level outside [0, 1])."""
    top = np.iinfo(depth).max
    clipped = int(np.count_nonzero((img < -0.5 / top) | (img > 1 + 0.5 / top)))
    return np.round(np.clip(img, 0.0, 1.0) * top).astype(depth), clipped


def write_image(path, img, replace=False, depth="uint8"):
    """Write a grey (H, W) or colour (H, W, 3) image at ``depth`` (one of :data:`DEPTHS`; the input's, for a result read by
    :func:`read_image` ``with_depth``). Returns None, or one line saying what was lost.

    ``.npy`` keeps float64 exactly; ``.tif`` keeps every depth (float as float32); ``.png`` holds uint8 and uint16, so
    float data goes to a 16-bit PNG (said). Integer depths clip to [0, 1] (said when pixels lie beyond half a level
    outside). The file is written to a temporary name and moved into place
    (:func:`~fem_crossdiff.safeio.atomic_write`): never left half-written, never replacing a file unless ``replace``.
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
        lost.append(f"{depth} pixels stored as {stored} ({suffix} holds {', '.join(SUFFIX_DEPTHS[suffix])}; "
                    "use .tif or .npy to keep them)")
    if suffix == ".npy":
        data = img
    elif stored == "float":
        data = img.astype(np.float32)
    else:
        data, clipped = _quantised(img, stored)
        if clipped:
            lost.append(f"{clipped} pixel(s) outside [0, 1] clipped")

    def write(tmp):
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, data)
        else:
            import imageio.v3 as iio
            iio.imwrite(tmp, data, extension=suffix)

    atomic_write(path, write, suffix, replace=replace)
    return f"{path}: " + "; ".join(lost) if lost else None
