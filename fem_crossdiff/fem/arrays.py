"""The numpy API: :func:`denoise` an image array with a named, learned or given model (scikit-image style: numpy
in, numpy out). Compiled evolutions are kept per (shape, refinement, scheme, model structure, horizon, solver
options), so denoising many images of one size compiles once.

The split scheme of the built-in family and of colour models runs on grid arrays (:mod:`fem_crossdiff.fast.split`),
that of a user model whose UFL compiles for it on :mod:`fem_crossdiff.fast.generic`'s, both without Firedrake, which this module then never imports (:func:`split_fast_path`); every other case is solved by an
:class:`~fem_crossdiff.fem.evolution.Evolution` on the image mesh.

Under ``mpiexec`` the windows of a tiled image are dealt out over the ranks, each solving its own alone: a rank whose
part fails (a solver that diverges on its windows, a model that explodes there, a bug) must not leave the others
waiting in the collective that gathers the image. So every rank first learns whether any failed (:func:`_agree`, one
``allgather`` that every rank reaches) and then all raise: the failing rank its own error, the others the same
bad-input message (one line, exit status 2, whichever rank found it) or, for a bug there, :class:`RankFailure`.
Decisions that read this machine's state (the available memory) are agreed the same way, so that no rank goes on alone.

Bounds, checked before anything is built: ``refine`` a non-negative integer; at most :data:`MAX_STEPS` time steps;
the memory of the solve *and* of the whole-image arrays (:data:`IMAGE_BYTES_PER_PIXEL`, held whatever the tiling)
within the memory available (:func:`check_memory`)."""
import math
import os

import numpy as np

from ..errors import ImageError, InputError, ModelError
from ..fast.generic import on_grid, split_scheme
from ..fast.split import Grid, interpolant
from ..imaging.files import check_image
from ..model import make_model
from ..model.base import StagedModel
from ..resources import mpi_world
from .certify import certify

__all__ = ["denoise", "evolution_for", "memory_estimate", "image_memory", "available_memory", "check_memory",
           "check_image_memory", "check_refine", "split_fast_path", "RankFailure",
           "SPLIT_BYTES_PER_PIXEL", "IMAGE_BYTES_PER_PIXEL", "MAX_STEPS"]

#: Peak memory of a denoise on one rank, measured (``/usr/bin/time -v fem-crossdiff denoise``, 256²–2048²): a base
#: (Python, Firedrake, PETSc, compiled kernels) and, per mesh vertex, the mesh, spaces, solvers and fast path, plus
#: the stage parameters, which are held per cell (8 bytes each, every stage): nonlinear complex diffusion 2048²
#: 11.2 GiB (estimate 11.1), the shipped learned model (804 parameters) 1024² 10.2 GiB (estimate 9.6).
BASE_MEMORY, BYTES_PER_VERTEX = 0.3 * 2 ** 30, 2700
#: The split scheme on grid arrays (:func:`split_fast_path`): bytes per grid node of one grey image (a colour model
#: 2.5 times as many), from the peaks of ``fem-crossdiff bench --large`` (``demos/PHOTOGRAPHS.md`` §6).
SPLIT_BYTES_PER_PIXEL = 200
#: The whole-image arrays of a tiled denoise, held on every rank beside one window's solve: the image as float64, the
#: result ``u`` and ``v``, and (on the command line) the file's pixels, their conversion and the quantised output.
#: Bytes per pixel of a grey image, a colour image 2.5 times as many (``v`` is shared): the growth of the peak with
#: the image at a fixed window (``/usr/bin/time -v fem-crossdiff denoise IN OUT --sigma 25``, 2.25 → 6.25 MP PNG,
#: 1024² windows: grey 41, colour 100 bytes per pixel), rounded up.
IMAGE_BYTES_PER_PIXEL = 48
#: The most time steps one denoise takes. Every scheme here is unconditionally stable and of first or second order in
#: Δt: the refinement study's errors level off long before (128 steps); the models run 8–60. A count beyond this is a
#: typo (``--steps 1000000000`` would run for years) and is refused rather than left to run without end.
MAX_STEPS = 10_000

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


def memory_estimate(shape, refine, model, ranks=1, split=False, whole=None):
    """Bytes one rank needs to denoise an image of ``shape`` on the mesh refined ``refine`` times with ``model`` (on
    the grid arrays of the split scheme if ``split``); ``whole``: the shape of the whole image when ``shape`` is one
    window of it (a tiled denoise), whose arrays (:func:`image_memory`) every rank holds as well."""
    if whole is not None:
        return memory_estimate(shape, refine, model, ranks, split) + image_memory(whole)
    H, W = shape
    r = 2 ** int(refine)
    vertices = ((H - 1) * r + 1) * ((W - 1) * r + 1)
    if split:
        per = 2.5 if getattr(model, "channels", 1) == 3 else max(1.0, (getattr(model, "components", 2) / 2) ** 1.5)
        return 0.1 * 2 ** 30 + vertices * SPLIT_BYTES_PER_PIXEL * per       # n components: measured 1.7x (3), 2.7x (4)
    parameters = len(model.stages) * sum(n for _, n, _ in model.stage_layout)
    return BASE_MEMORY + vertices * (BYTES_PER_VERTEX + 8 * parameters) / ranks


def image_memory(shape):
    """Bytes of the whole-image arrays of a tiled denoise of an image of ``shape`` ((H, W) grey, (H, W, 3) colour):
    :data:`IMAGE_BYTES_PER_PIXEL` per pixel, 2.5 times as many in colour."""
    return shape[0] * shape[1] * IMAGE_BYTES_PER_PIXEL * (2.5 if len(shape) == 3 else 1)


def check_image_memory(shape, name="image", comm=None):
    """Refuse an image whose whole-image arrays alone (:func:`image_memory`) would not fit in the available memory:
    called with the shape in a file's header, before its pixels are decoded (a huge TIFF refused, not killed).
    ``comm``: the ranks that decide together (collective, as in :func:`check_memory`)."""
    need, have = image_memory(shape), _agreed_memory(comm)
    if have is not None and need > 0.9 * have:
        raise InputError(f"{name}: an image of {shape[0]}×{shape[1]} pixels needs about {need / 2 ** 30:.1f} GiB for "
                         f"its arrays alone, {have / 2 ** 30:.1f} GiB available; use a smaller image")


def _agreed_memory(comm):
    """:func:`available_memory`, the least over the ranks of ``comm`` (collective) when given."""
    have = available_memory()
    if comm is not None and comm.size > 1:
        have = comm.allreduce(math.inf if have is None else have, op=_mpi().MIN)
        have = None if have == math.inf else have
    return have


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


def check_memory(shape, refine, model, ranks=1, split=False, whole=None, comm=None, copies=1):
    """Refuse, before anything is built, a problem that would not fit in this machine's available memory.

    ``whole``: the whole image's shape when ``shape`` is a window of it (:func:`memory_estimate`); ``copies``: the
    ranks on this machine that each hold as much; ``comm``: the ranks that decide together (collective: each reads
    its machine's memory at its own moment, and all must agree, or one would go on alone)."""
    need = memory_estimate(shape, refine, model, ranks, split, whole) * copies
    have = _agreed_memory(comm)
    if have is not None and need > 0.9 * have:
        H, W = (whole or shape)[:2]
        where = f" on the mesh refined {refine} time(s)" if refine else ""
        per = f" ({copies} ranks on this machine, each holding as much)" if copies > 1 else " per rank"
        if whole is None and not split:              # the mesh is shared out: more ranks hold less each
            advice = "use a smaller image or refinement, or more ranks (mpiexec)"
        elif copies > 1:
            advice = "use a smaller image, or fewer ranks per machine"
        else:
            advice = "use a smaller image" + (" or refinement" if refine else "")
        raise InputError(f"image of {H}×{W} pixels{where}: needs about {need / 2 ** 30:.1f} GiB{per} with model "
                         f"'{model.name}', {have / 2 ** 30:.1f} GiB available; {advice}")


def check_refine(refine):
    """Refuse a mesh refinement that is not a non-negative integer (``2**refine`` cells per pixel gap)."""
    if isinstance(refine, bool) or not isinstance(refine, (int, float, np.integer, np.floating)) or not (
            math.isfinite(refine) and refine >= 0 and int(refine) == refine):
        raise ImageError(f"refine must be a non-negative integer, got {refine}")
    return int(refine)


class RankFailure(RuntimeError):
    """Raised on the ranks whose part of a collective :func:`denoise` went well when another rank's part failed by an
    internal error (whose traceback that rank shows): every rank stops, none waits for the others for ever."""

    secondary = True                     # the command line reports the failing rank's own error, not this one


def _mpi():
    from mpi4py import MPI
    return MPI


def _local_ranks(comm):
    """How many ranks of ``comm`` run on this machine (collective)."""
    if comm is None or comm.size == 1:
        return 1
    local = comm.Split_type(_mpi().COMM_TYPE_SHARED)
    try:
        return local.size
    finally:
        local.Free()


def _agree(comm, error):
    """Every rank of ``comm`` learns whether any rank's own part failed (``error``: this rank's exception, or None),
    before the next collective: one ``allgather``, reached by every rank. Returns when none failed; else raises on
    every rank: ``error`` itself where it happened, elsewhere an :class:`InputError` with the failing rank's message
    (bad input, reported once, whichever rank found it) or a :class:`RankFailure` naming its error."""
    if comm is None or comm.size == 1:
        if error is not None:
            raise error
        return
    told = None if error is None else (isinstance(error, InputError), str(error) if isinstance(error, InputError)
                                       else f"{type(error).__name__}: {error}")
    everyone = comm.allgather(told)
    if error is not None:
        raise error
    for rank, failure in enumerate(everyone):
        if failure is not None:
            bad_input, message = failure
            if bad_input:
                raise InputError(message)
            raise RankFailure(f"rank {rank} failed: {message}")


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
    grid arrays (:func:`_denoise_split`), others with an :class:`~fem_crossdiff.fem.evolution.Evolution`.

    A rank whose windows fail does not leave the others waiting in the gathering ``Allreduce``: the ranks agree on
    any failure first (:func:`_agree`)."""
    MPI = _mpi()
    split = split_fast_path(model, scheme)
    H, W = img.shape[:2]
    rows, cols = tile_windows(H, tile, margin), tile_windows(W, tile, margin)
    shape = (H - rows[-1][0], W - cols[-1][0])                  # every window's (the last one ends at the border)
    if split:
        comm = MPI.COMM_SELF if own_rank else MPI.COMM_WORLD
        solve = lambda window: _denoise_split(window, model, refine, time, steps, True, None)  # noqa: E731
    else:
        import firedrake as fd
        comm = fd.COMM_SELF if own_rank else fd.COMM_WORLD

        def solve(window):
            return _denoise_evolution(window, model, refine, scheme, time, steps, solver_parameters, True, None,
                                      own_rank=True)
    check_memory(shape, refine, model, split=split, whole=img.shape, comm=comm, copies=_local_ranks(comm))
    u = np.zeros(img.shape)
    v = np.zeros((H, W)) if return_v else None
    jobs = [(r, c) for r in rows for c in cols]
    error = None
    try:
        for i, ((r0, a0, a1), (c0, b0, b1)) in enumerate(jobs):
            if i % comm.size != comm.rank:
                continue
            wu, wv = solve(img[r0:r0 + shape[0], c0:c0 + shape[1]])
            core = (slice(a0 - r0, a1 - r0), slice(b0 - c0, b1 - c0))
            u[a0:a1, b0:b1] = wu[core]
            if return_v:
                v[a0:a1, b0:b1] = wv[core]
    except Exception as e:                             # bad input or a bug: told to every rank before the Allreduce
        error = e
    _agree(comm, error)
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
    (``None``: the model's own) is ``"split"`` and the model is the built-in family, a colour model, or a user model
    whose UFL compiles for :mod:`fem_crossdiff.fast.generic` (else Firedrake's split scheme, which says why)."""
    return (model.scheme if scheme is None else scheme) == "split" and on_grid(model)


_SPLIT = {}


def _denoise_split(img, model, refine, time, steps, return_v, callback):
    """:func:`denoise` by :func:`~fem_crossdiff.fast.generic.split_scheme` on the grid of the mesh refined ``refine``
    times (the image as its bilinear interpolant there), the whole image at once (memory: :func:`memory_estimate`,
    checked by the caller)."""
    H, W = img.shape[:2]
    r = 2 ** int(refine)
    key = ((H, W), refine, model.structure, time, steps)
    scheme = _SPLIT.get(key)
    if scheme is None:
        if len(_SPLIT) > 16:
            _SPLIT.clear()
        scheme = _SPLIT[key] = split_scheme(model, Grid(((H - 1) * r + 1, (W - 1) * r + 1), 1.0 / r), time, steps)
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

    Refused before any work (:class:`~fem_crossdiff.errors.InputError`, one line): ``refine`` not a non-negative
    integer, more than :data:`MAX_STEPS` steps, a problem whose estimated memory (:func:`check_memory`) does not fit.
    """
    img = check_image(img, colour=True)
    refine = check_refine(refine)
    if not isinstance(model, StagedModel):
        model = make_model(model, **params)
    elif params:
        raise ModelError("parameters can only be overridden for a model given by name")
    certify(model, (float(img.min()), float(img.max())))          # over the states this image can reach
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
    if steps > MAX_STEPS:
        raise InputError(f"steps {steps}: at most {MAX_STEPS} (the schemes are unconditionally stable: more steps of "
                         "one time T gain nothing measurable, and would run for hours or years)")
    scheme = model.scheme if scheme is None else scheme
    split = split_fast_path(model, scheme)
    if tile is None:
        pixels = img.shape[0] * img.shape[1]
        tile = (SPLIT_TILE if pixels > SPLIT_TILE_ABOVE else 0) if split else (TILE if pixels > TILE_ABOVE else 0)
    if tile and max(img.shape[:2]) > tile:
        return _denoise_tiled(img, model, int(tile), MARGIN, refine, scheme, time, steps, solver_parameters, return_v,
                              own_rank)
    world = None if own_rank else mpi_world()           # all ranks on one image: they decide together
    if split:                                            # every rank solves the whole image (the same pixels)
        check_memory(img.shape[:2], refine, model, split=True, comm=world, copies=_local_ranks(world))
        return _denoise_split(img, model, refine, time, steps, return_v, callback)
    check_memory(img.shape[:2], refine, model, 1 if world is None else world.size, comm=world)
    return _denoise_evolution(img, model, refine, scheme, time, steps, solver_parameters, return_v, callback, own_rank)
