"""The numpy API: :func:`denoise` an image array with a named, learned or given model (scikit-image style: numpy
in, numpy out). Compiled evolutions are kept per (shape, refinement, scheme, model structure, horizon, solver
options), so denoising many images of one size compiles once.

The split scheme of the built-in family and of colour models runs on grid arrays (:mod:`fem_crossdiff.fast.split`)
without Firedrake, which this module then never imports (:func:`split_fast_path`); every other case is solved by an
:class:`~fem_crossdiff.fem.evolution.Evolution` on the image mesh."""
import os

import numpy as np

from ..errors import InputError, ModelError
from ..fast.split import Grid, SplitScheme, interpolant
from ..imaging.files import check_image
from ..model import make_model
from ..model.base import StagedModel
from .certify import certify

__all__ = ["denoise", "evolution_for", "memory_estimate", "available_memory", "check_memory", "split_fast_path",
           "SPLIT_BYTES_PER_PIXEL"]

#: Peak memory of a denoise on one rank, measured (``/usr/bin/time -v fem-crossdiff denoise``, 256²–2048²): a base
#: (Python, Firedrake, PETSc, compiled kernels) and, per mesh vertex, the mesh, spaces, solvers and fast path, plus
#: the stage parameters, which are held per cell (8 bytes each, every stage): nonlinear complex diffusion 2048²
#: 11.2 GiB (estimate 11.1), the shipped learned model (804 parameters) 1024² 10.2 GiB (estimate 9.6).
BASE_MEMORY, BYTES_PER_VERTEX = 0.3 * 2 ** 30, 2700
#: The split scheme on grid arrays (:func:`split_fast_path`): bytes per grid node of one grey image (a colour model
#: 2.5 times as many), from the peaks of ``fem-crossdiff bench --large`` (``demos/PHOTOGRAPHS.md`` §6).
SPLIT_BYTES_PER_PIXEL = 200

_CACHE, _MESHES = {}, {}


def evolution_for(shape, model, refine, scheme, time, steps, solver_parameters, own_rank=False):
    """Reuse one compiled :class:`Evolution` per (shape, refinement, scheme, model structure, horizon, solver
    options), on all ranks' mesh or (``own_rank``, a tile) on this rank alone."""
    import firedrake as fd
    from .evolution import Evolution
    from .functions import image_mesh
    key = (tuple(shape), refine, scheme, model.structure, time, steps, repr(sorted((solver_parameters or {}).items())),
           own_rank)
    ev = _CACHE.get(key)
    if ev is None:
        if len(_CACHE) > 16:
            _CACHE.clear()
            _MESHES.clear()
        where = (tuple(shape), refine, own_rank)      # one mesh per shape, whichever models run on it
        mesh = _MESHES.get(where)
        if mesh is None:
            mesh = _MESHES[where] = image_mesh(shape, refine, comm=fd.COMM_SELF if own_rank else None)
        ev = _CACHE[key] = Evolution(model, mesh, time=time, steps=steps, scheme=scheme,
                                     solver_parameters=solver_parameters)
    else:
        ev.discrete.set_stages(model.stages)
    return ev


def memory_estimate(shape, refine, model, ranks=1, split=False):
    """Bytes one rank needs to denoise an image of ``shape`` on the mesh refined ``refine`` times with ``model`` (on
    the grid arrays of the split scheme if ``split``)."""
    H, W = shape
    r = 2 ** int(refine)
    vertices = ((H - 1) * r + 1) * ((W - 1) * r + 1)
    if split:
        return 0.1 * 2 ** 30 + vertices * SPLIT_BYTES_PER_PIXEL * (2.5 if getattr(model, "channels", 1) == 3 else 1)
    parameters = len(model.stages) * sum(n for _, n, _ in model.stage_layout)
    return BASE_MEMORY + vertices * (BYTES_PER_VERTEX + 8 * parameters) / ranks


def available_memory():
    """Bytes of memory available to a new process here (``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def check_memory(shape, refine, model, ranks=1, split=False):
    """Refuse, before anything is built, a problem that would not fit in this machine's available memory."""
    need, have = memory_estimate(shape, refine, model, ranks, split), available_memory()
    if have is not None and need > 0.9 * have:
        where = f" on the mesh refined {refine} time(s)" if refine else ""
        raise InputError(f"image of {shape[0]}×{shape[1]} pixels{where}: needs about {need / 2 ** 30:.1f} GiB per rank "
                         f"with model '{model.name}', {have / 2 ** 30:.1f} GiB available; use a smaller image or "
                         "refinement, or more ranks (mpiexec)")


def tile_windows(n, size, margin):
    """``[(window start, core start, core end)]`` along one axis of ``n`` pixels: equal windows of at most ``size``
    pixels (as few as cover the axis, shrunk to share it evenly; shifted inward at the ends) whose cores — the window
    less ``margin`` on each side that is not the image's border — partition ``[0, n)``."""
    if n <= size:
        return [(0, 0, n)]
    if size - 2 * margin < 1:
        raise InputError(f"tile {size} leaves no core inside margins of {margin}")
    count = -(-(n - 2 * margin) // (size - 2 * margin))
    size = -(-(n - 2 * margin) // count) + 2 * margin
    out, start = [], 0
    while start < n:
        window = min(max(start - margin, 0), n - size)
        end = n if window + size >= n else window + size - margin
        out.append((window, start, end))
        start = end
    return out


def _denoise_tiled(img, model, tile, margin, refine, scheme, time, steps, solver_parameters, return_v,
                   own_rank=False):
    """:func:`denoise` window by window: every window has the same shape (one compiled evolution), each result
    keeps its core; windows are dealt out over the ranks (each solves alone), so any rank count gives the same
    image. Memory is that of one window, whatever the image's size. Split-scheme models solve each window on its
    grid arrays (:func:`_denoise_split`), others with an :class:`~fem_crossdiff.fem.evolution.Evolution`."""
    from mpi4py import MPI
    split = split_fast_path(model, scheme)
    H, W = img.shape[:2]
    rows, cols = tile_windows(H, tile, margin), tile_windows(W, tile, margin)
    shape = (H - rows[-1][0], W - cols[-1][0])                  # every window's (the last one ends at the border)
    check_memory(shape, refine, model, split=split)
    if split:
        comm = MPI.COMM_SELF if own_rank else MPI.COMM_WORLD
        solve = lambda window: _denoise_split(window, model, refine, time, steps, True, None)  # noqa: E731
    else:
        import firedrake as fd
        comm = fd.COMM_SELF if own_rank else fd.COMM_WORLD

        def solve(window):
            return _denoise_evolution(window, model, refine, scheme, time, steps, solver_parameters, True, None,
                                      own_rank=True)
    u = np.zeros(img.shape)
    v = np.zeros((H, W)) if return_v else None
    jobs = [(r, c) for r in rows for c in cols]
    for i, ((r0, a0, a1), (c0, b0, b1)) in enumerate(jobs):
        if i % comm.size != comm.rank:
            continue
        wu, wv = solve(img[r0:r0 + shape[0], c0:c0 + shape[1]])
        core = (slice(a0 - r0, a1 - r0), slice(b0 - c0, b1 - c0))
        u[a0:a1, b0:b1] = wu[core]
        if return_v:
            v[a0:a1, b0:b1] = wv[core]
    if comm.size > 1:                                  # every pixel's value comes from exactly one rank
        comm.Allreduce(MPI.IN_PLACE, u, op=MPI.SUM)
        if return_v:
            comm.Allreduce(MPI.IN_PLACE, v, op=MPI.SUM)
    return (u, v) if return_v else u


def _denoise_evolution(img, model, refine, scheme, time, steps, solver_parameters, return_v, callback,
                       own_rank=False):
    """:func:`denoise` of one image (or window) by an :class:`~fem_crossdiff.fem.evolution.Evolution` on its mesh."""
    import firedrake as fd
    from .functions import function_to_image, image_to_function
    ev = evolution_for(img.shape[:2], model, refine, scheme, time, steps, solver_parameters, own_rank)
    w = ev.run(image_to_function(img, ev.F), callback=callback)
    ev.check_finite()
    u = function_to_image(fd.Function(ev.F).interpolate(ev.discrete.output(w)))
    if return_v:
        v = function_to_image(fd.Function(ev.V).interpolate(w[1])) if ev.discrete.components > 1 else 0 * u
        return u, v
    return u


#: On the finite-element path a larger image is denoised tile by tile (:func:`tile_windows`): windows of ``TILE``
#: pixels whose cores leave ``MARGIN`` pixels to each neighbour, where the tile's own (no-flux) boundary acts. The
#: difference to the whole image at once is below the 16-bit level (``tests/test_photographs.py``). Tiles are also
#: faster there: setting up a mesh costs about as much per pixel as the solve, and windows share one
#: (``demos/PHOTOGRAPHS.md``: 1024² in 18 s and 0.7 GiB tiled against 34 s and 3.4 GiB whole), so every image of more
#: than one window's pixels goes tile by tile. The split scheme's grid arrays need no mesh and little memory per
#: pixel: they solve the whole image at once (exactly) up to :data:`SPLIT_TILE_ABOVE` pixels.
TILE, MARGIN = 512, 32
TILE_ABOVE = TILE * TILE
#: The split scheme's windows: an image of more than ``SPLIT_TILE_ABOVE`` pixels goes in windows of ``SPLIT_TILE``
#: (faster than the whole image at once, whose arrays no longer fit the caches, and memory bounded by one window).
SPLIT_TILE = 1024
SPLIT_TILE_ABOVE = 2 * SPLIT_TILE * SPLIT_TILE


def split_fast_path(model, scheme=None):
    """True when :func:`denoise` runs ``model`` on the grid arrays of the split scheme (no Firedrake): the scheme
    (``None``: the model's own) is ``"split"`` and the model is the built-in family or a colour model."""
    return (model.scheme if scheme is None else scheme) == "split" and SplitScheme.supports(model)


_SPLIT = {}


def _denoise_split(img, model, refine, time, steps, return_v, callback):
    """:func:`denoise` by :class:`~fem_crossdiff.fast.split.SplitScheme` on the grid of the mesh refined ``refine``
    times (the image as its bilinear interpolant there), the whole image at once (memory: :func:`memory_estimate`)."""
    H, W = img.shape[:2]
    r = 2 ** int(refine)
    check_memory((H, W), refine, model, split=True)
    key = ((H, W), refine, model.structure, time, steps)
    scheme = _SPLIT.get(key)
    if scheme is None:
        if len(_SPLIT) > 16:
            _SPLIT.clear()
        scheme = _SPLIT[key] = SplitScheme(model, Grid(((H - 1) * r + 1, (W - 1) * r + 1), 1.0 / r), time, steps)
    scheme.stages = list(model.stages)
    u, v = scheme.denoise(interpolant(img, r), callback)
    u, v = u[::r, ::r].copy(), v[::r, ::r].copy()
    return (u, v) if return_v else u


def denoise(img, model="nonlinear-complex", *, time=None, steps=None, refine=0, scheme=None,
            solver_parameters=None, return_v=False, callback=None, tile=None, own_rank=False, **params):
    """Restore the image ``img`` — grey (H, W) or colour (H, W, 3), values in [0, 1] (uint8/uint16 scaled) — with a
    cross-diffusion model.

    ``model`` is a name from :data:`fem_crossdiff.model.MODELS` or a registered user model (``params`` override
    its parameters), a user model's definition ``path/to/file.py:Class``, a path to a model JSON file, or a model
    object (:class:`~fem_crossdiff.model.CrossDiffusionModel`, :class:`~fem_crossdiff.model.UFLModel`, a colour
    model). A colour image goes through a colour model as one system; a grey model restores it channel by channel.
    Returns ``u(T)`` as an array of the image's shape, and also ``v(T)`` (the edge indicator, the second component;
    zeros for a one-component model) when ``return_v``.

    ``scheme``: the time scheme (None: the model's own, ``model.scheme``; a learned model's is the one it was trained
    for). The split scheme of the built-in family and colour models runs on grid arrays, without Firedrake
    (:func:`split_fast_path`: about :data:`SPLIT_BYTES_PER_PIXEL` bytes per pixel; ``solver_parameters`` do not
    apply).

    ``tile``: the window size of a tiled run: bounded memory, time linear in the pixels, windows dealt out over the
    ranks, the same result on any number of ranks. Default: on the finite-element path :data:`TILE` for images of
    more than :data:`TILE_ABOVE` pixels, on the split scheme :data:`SPLIT_TILE` above :data:`SPLIT_TILE_ABOVE` (0:
    never).
    ``own_rank``: solve on this rank alone (many images dealt out over the ranks), not on all of them together.
    """
    img = check_image(img, colour=True)
    if not isinstance(model, StagedModel):
        model = make_model(model, **params)
    elif params:
        raise ModelError("parameters can only be overridden for a model given by name")
    certify(model)
    channels = getattr(model, "channels", 1)
    if img.ndim == 2 and channels != 1:
        raise ModelError(f"model '{model.name}' restores colour images; got a grey image of shape {img.shape}")
    if img.ndim == 3 and channels == 1:                  # a grey model on a colour image: channel by channel
        parts = [denoise(img[..., c], model, time=time, steps=steps, refine=refine, scheme=scheme,
                         solver_parameters=solver_parameters, return_v=True, callback=callback, tile=tile,
                         own_rank=own_rank) for c in range(3)]
        u = np.stack([p[0] for p in parts], axis=-1)
        return (u, np.mean([p[1] for p in parts], axis=0)) if return_v else u
    time, steps = model.check_run(model.time if time is None else time, model.steps if steps is None else steps)
    scheme = model.scheme if scheme is None else scheme
    split = split_fast_path(model, scheme)
    if tile is None:
        pixels = img.shape[0] * img.shape[1]
        tile = (SPLIT_TILE if pixels > SPLIT_TILE_ABOVE else 0) if split else (TILE if pixels > TILE_ABOVE else 0)
    if tile and max(img.shape[:2]) > tile:
        return _denoise_tiled(img, model, int(tile), MARGIN, refine, scheme, time, steps, solver_parameters, return_v,
                              own_rank)
    if split:
        return _denoise_split(img, model, refine, time, steps, return_v, callback)
    from mpi4py import MPI
    check_memory(img.shape[:2], refine, model, 1 if own_rank else MPI.COMM_WORLD.size)
    return _denoise_evolution(img, model, refine, scheme, time, steps, solver_parameters, return_v, callback, own_rank)
