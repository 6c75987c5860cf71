r"""Images ↔ finite-element functions on the structured image mesh.

An H×W grey image is a field on the rectangle :math:`\Omega = [0, W-1]\times[0, H-1]` (pixel units, pixel
centres at integer coordinates, row 0 at the top: :math:`x = \text{col}`, :math:`y = H-1-\text{row}`).
On the *pixel mesh* (one quadrilateral per 2×2 block of pixels) the Q1 vertex values are the pixels, so the
round trip image → function → image is exact. On a mesh refined ``r`` times the same image is its bilinear
interpolant, so refinement studies converge to one continuum problem.

Everything here is MPI-safe: every rank holds the (small) pixel array, sets the dofs it owns, and
:func:`function_to_image` gathers them back.
"""
import numpy as np
import firedrake as fd

from ..errors import ImageError
from ..imaging.files import check_image

__all__ = ["image_mesh", "pixel_space", "image_to_function", "function_to_image", "function_to_grid",
           "grid_to_function", "prolong", "dof_coordinates"]


def image_mesh(shape, refine=0, comm=None):
    """Structured quadrilateral mesh of :math:`[0, W-1]\\times[0, H-1]` with ``2**refine`` cells per pixel gap.

    ``refine=0`` is the pixel mesh (vertices = pixel centres).
    """
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
    if dim is None:
        return fd.FunctionSpace(mesh, "Q", 1)
    return fd.VectorFunctionSpace(mesh, "Q", 1, dim=dim)


def _shape(shape):
    H, W = (int(s) for s in shape)
    if H < 2 or W < 2:
        raise ImageError(f"image of shape {(H, W)} is too small; need at least 2×2 pixels")
    return H, W


def dof_coordinates(V):
    """(x, y) of every dof of the scalar Q1 space ``V`` (owned and halo), shape (n, 2)."""
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
    """Q1 function on ``V`` equal to the bilinear interpolant of lattice values ``grid`` (H, W) with spacing ``h``;
    for a vector-valued ``V`` of C components, of ``grid`` (H, W, C), component by component."""
    f = out if out is not None else fd.Function(V)
    if grid.ndim == 3:
        xy = dof_coordinates(pixel_space(V.mesh()))            # a vector Q1 space numbers its nodes as the scalar one
        values = f.dat.data_wo_with_halos.reshape(len(xy), -1)
        for c in range(grid.shape[2]):
            values[:, c] = _bilinear(grid[..., c], xy[:, 0], xy[:, 1], h)
        return f
    xy = dof_coordinates(V)
    f.dat.data_wo_with_halos[:] = _bilinear(grid, xy[:, 0], xy[:, 1], h)
    return f


def image_to_function(img, V, out=None):
    """The Q1 function on ``V``'s mesh whose vertex values are the bilinear interpolant of ``img`` (grey on a scalar
    ``V``; colour (H, W, 3) on a 3-component ``V``).

    On the pixel mesh this is the pixels themselves, exactly.
    """
    img = check_image(img, colour=V.value_size == 3)
    mesh = V.mesh()
    if getattr(mesh, "image_shape", img.shape[:2]) != img.shape[:2]:
        raise ImageError(f"image of shape {img.shape} does not fit a mesh made for shape {mesh.image_shape}")
    if (img.ndim == 3) != (V.value_size > 1):
        raise ImageError(f"image of shape {img.shape} does not fit a space of {V.value_size} component(s)")
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
    xy = dof_coordinates(V)[:n_owned] * r
    idx = np.round(rows - 1 - xy[:, 1]).astype(int) * cols + np.round(xy[:, 0]).astype(int)
    local = np.stack([idx.astype(np.float64), f.dat.data_ro[:n_owned]])
    out = np.full(rows * cols, np.nan)
    for part in mesh.comm.allgather(local):
        out[part[0].astype(int)] = part[1]
    return out.reshape(rows, cols)


def function_to_image(f):
    """Pixel values of the Q1 function ``f`` (its values at the pixel centres), on every rank: (H, W), or (H, W, C)
    for a vector-valued ``f``."""
    V = f.function_space()
    mesh = V.mesh()
    r = 2 ** getattr(mesh, "refinement", 0)
    if V.value_size > 1:
        scalar = pixel_space(mesh)
        return np.stack([function_to_grid(fd.Function(scalar).interpolate(f[c]))[::r, ::r]
                         for c in range(V.value_size)], axis=-1)
    return function_to_grid(f)[::r, ::r].copy()


def prolong(f, V_fine):
    """Exact prolongation of a Q1 function to the Q1 space of a finer nested structured mesh."""
    mesh = f.function_space().mesh()
    return grid_to_function(function_to_grid(f), V_fine, h=2.0 ** -getattr(mesh, "refinement", 0))

