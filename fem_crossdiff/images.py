r"""Images ↔ finite-element functions.

An H×W grey image is a field on the rectangle :math:`\Omega = [0, W-1]\times[0, H-1]` (pixel units, pixel
centres at integer coordinates, row 0 at the top: :math:`x = \text{col}`, :math:`y = H-1-\text{row}`).
On the *pixel mesh* (one quadrilateral per 2×2 block of pixels) the Q1 vertex values are the pixels, so the
round trip image → function → image is exact. On a mesh refined ``r`` times the same image is its bilinear
interpolant, so refinement studies converge to one continuum problem.

Everything here is MPI-safe: every rank holds the (small) pixel array, sets the dofs it owns, and
:func:`function_to_image` gathers them back.
"""
import os

import numpy as np

from ._io import atomic_write

__all__ = ["ImageError", "read_image", "write_image", "image_mesh", "pixel_space",
           "image_to_function", "function_to_image", "check_image",
           "function_to_grid", "grid_to_function", "prolong"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy")


class ImageError(ValueError):
    """An image file or array cannot be used (names the file or value and what was expected)."""


# --------------------------------------------------------------------------------------------- I/O
def check_image(img, name="image"):
    """Return ``img`` as a float64 2-D array, or raise :class:`ImageError` saying what is wrong."""
    img = np.asarray(img)
    if img.ndim != 2:
        raise ImageError(f"{name}: expected a 2-D grey image, got an array of shape {img.shape}")
    if min(img.shape) < 2:
        raise ImageError(f"{name}: image of shape {img.shape} is too small; need at least 2×2 pixels")
    if not np.issubdtype(img.dtype, np.number) or np.iscomplexobj(img):
        raise ImageError(f"{name}: expected real numbers, got dtype {img.dtype}")
    img = img.astype(np.float64)
    if not np.all(np.isfinite(img)):
        raise ImageError(f"{name}: contains {np.count_nonzero(~np.isfinite(img))} NaN or infinite values")
    return img


def _to_grey_unit(arr, name):
    """Colour → grey (ITU-R 601 luma, alpha dropped); integers → [0, 1] by their type's range."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3]
        scale = np.iinfo(arr.dtype).max if np.issubdtype(arr.dtype, np.integer) else 1.0
        arr = (arr.astype(np.float64) / scale) @ np.array([0.299, 0.587, 0.114])
    elif arr.ndim == 3 and arr.shape[-1] in (1, 2):
        arr = arr[..., 0]
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        arr = arr.astype(np.float64) / (1.0 if arr.dtype == bool else np.iinfo(arr.dtype).max)
    return check_image(arr, name)


def read_image(path):
    """Read PNG/JPEG/TIFF/BMP/NPY as a float64 grey image.

    Colour is converted to grey, 8- and 16-bit integers are scaled to [0, 1]; float data is kept as is.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ImageError(f"{path}: is a directory, expected an image file")
    try:
        if path.lower().endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        else:
            import imageio.v3 as iio
            arr = iio.imread(path)
    except Exception as e:  # imageio/PIL raise many different types
        raise ImageError(f"{path}: cannot be read as an image ({type(e).__name__}: {e})") from None
    return _to_grey_unit(arr, path)


def write_image(path, img):
    """Write a grey image: ``.npy`` keeps float64 exactly, PNG stores 8 bits (values clipped to [0, 1]).

    The file is written to a temporary name and renamed, so an existing file is never left half-written.
    """
    path = os.fspath(path)
    img = check_image(img, "image to write")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".png", ".npy", ".tif", ".tiff"):
        raise ImageError(f"{path}: cannot write '{suffix}' files; use .png, .tif or .npy")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ImageError(f"{path}: directory {directory} does not exist")
    def write(tmp):
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, img)
        else:
            import imageio.v3 as iio
            iio.imwrite(tmp, np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8), extension=suffix)

    atomic_write(path, write, suffix)


# ------------------------------------------------------------------------------------- meshes
def image_mesh(shape, refine=0, comm=None):
    """Structured quadrilateral mesh of :math:`[0, W-1]\\times[0, H-1]` with ``2**refine`` cells per pixel gap.

    ``refine=0`` is the pixel mesh (vertices = pixel centres).
    """
    import firedrake as fd
    H, W = _shape(shape)
    if refine < 0 or int(refine) != refine:
        raise ImageError(f"refine must be a non-negative integer, got {refine}")
    r = 2 ** int(refine)
    kwargs = {} if comm is None else {"comm": comm}
    mesh = fd.RectangleMesh((W - 1) * r, (H - 1) * r, W - 1.0, H - 1.0, quadrilateral=True, **kwargs)
    mesh.image_shape = (H, W)
    mesh.refinement = int(refine)
    return mesh


def pixel_space(mesh, dim=None):
    """Continuous Q1 space on ``mesh``; ``dim=2`` gives the interleaved two-component space for ``w=(u,v)``."""
    import firedrake as fd
    if dim is None:
        return fd.FunctionSpace(mesh, "Q", 1)
    return fd.VectorFunctionSpace(mesh, "Q", 1, dim=dim)


def _shape(shape):
    H, W = (int(s) for s in shape)
    if H < 2 or W < 2:
        raise ImageError(f"image of shape {(H, W)} is too small; need at least 2×2 pixels")
    return H, W


def _dof_coordinates(V):
    """(x, y) of every dof of the scalar Q1 space ``V`` (owned and halo), shape (n, 2)."""
    import firedrake as fd
    mesh = V.mesh()
    key = "_fem_crossdiff_dof_xy"
    cache = mesh.__dict__.setdefault(key, {})
    if V.ufl_element() not in cache:
        X = fd.Function(fd.VectorFunctionSpace(mesh, V.ufl_element())).interpolate(fd.SpatialCoordinate(mesh))
        cache[V.ufl_element()] = X.dat.data_ro_with_halos.copy()
    return cache[V.ufl_element()]


def _bilinear(grid, x, y, h=1.0):
    """Bilinear interpolant of lattice values ``grid`` (spacing ``h``, row 0 at the top) at points (x, y)."""
    H, W = grid.shape
    col = np.clip(x / h, 0, W - 1)
    row = np.clip(H - 1 - y / h, 0, H - 1)
    c0 = np.clip(np.floor(col).astype(int), 0, W - 2)
    r0 = np.clip(np.floor(row).astype(int), 0, H - 2)
    a, b = col - c0, row - r0
    return ((1 - a) * (1 - b) * grid[r0, c0] + a * (1 - b) * grid[r0, c0 + 1]
            + (1 - a) * b * grid[r0 + 1, c0] + a * b * grid[r0 + 1, c0 + 1])


def grid_to_function(grid, V, h=1.0, out=None):
    """Q1 function on ``V`` equal to the bilinear interpolant of lattice values ``grid`` with spacing ``h``."""
    import firedrake as fd
    xy = _dof_coordinates(V)
    f = out if out is not None else fd.Function(V)
    f.dat.data_wo_with_halos[:] = _bilinear(grid, xy[:, 0], xy[:, 1], h)
    return f


def image_to_function(img, V, out=None):
    """The Q1 function on ``V``'s mesh whose vertex values are the bilinear interpolant of ``img``.

    On the pixel mesh this is the pixels themselves, exactly.
    """
    img = check_image(img)
    mesh = V.mesh()
    if getattr(mesh, "image_shape", img.shape) != img.shape:
        raise ImageError(f"image of shape {img.shape} does not fit a mesh made for shape {mesh.image_shape}")
    return grid_to_function(img, V, 1.0, out)


def function_to_grid(f):
    """Values of the scalar Q1 function ``f`` at every vertex of its structured mesh, gathered on every rank.

    Shape ``((H-1)r+1, (W-1)r+1)`` with ``r = 2**refinement``; row 0 at the top.
    """
    V = f.function_space()
    mesh = V.mesh()
    H, W = mesh.image_shape
    r = 2 ** getattr(mesh, "refinement", 0)
    rows, cols = (H - 1) * r + 1, (W - 1) * r + 1
    n_owned = V.dof_dset.size
    xy = _dof_coordinates(V)[:n_owned] * r
    idx = np.round(rows - 1 - xy[:, 1]).astype(int) * cols + np.round(xy[:, 0]).astype(int)
    local = np.stack([idx.astype(np.float64), f.dat.data_ro[:n_owned]])
    out = np.full(rows * cols, np.nan)
    for part in mesh.comm.allgather(local):
        out[part[0].astype(int)] = part[1]
    return out.reshape(rows, cols)


def function_to_image(f):
    """Pixel values of the scalar Q1 function ``f`` (its values at the pixel centres), on every rank."""
    mesh = f.function_space().mesh()
    r = 2 ** getattr(mesh, "refinement", 0)
    return function_to_grid(f)[::r, ::r].copy()


def prolong(f, V_fine):
    """Exact prolongation of a Q1 function to the Q1 space of a finer nested structured mesh."""
    mesh = f.function_space().mesh()
    return grid_to_function(function_to_grid(f), V_fine, h=2.0 ** -getattr(mesh, "refinement", 0))
