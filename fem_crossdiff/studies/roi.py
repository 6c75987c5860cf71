r"""A region of interest on its own unstructured mesh: the disc-shaped ROI of ``coins`` meshed by gmsh
(``meshes/roi_disc.msh``), refined uniformly, the model run on it and compared with the whole picture's pixel mesh."""
import os
import time as _time
import warnings

import numpy as np
import firedrake as fd

from ..errors import InputError
from ..fem import Evolution, denoise, image_to_function
from ..imaging.data import load, noisy_pair
from ..model import make_model
from .cases import MESHES, OUT
from .plots import plot_roi
from .tables import eoc, format_table

__all__ = ["roi_mesh", "roi_denoise"]


def roi_mesh(path=None):
    """The unstructured all-quad gmsh mesh ``meshes/roi_disc.msh`` (coins pixel coordinates), ready for
    :class:`~fem_crossdiff.fem.evolution.Evolution` (``image_shape`` set to the coins picture's)."""
    path = path or os.path.join(MESHES, "roi_disc.msh")
    if not os.path.exists(path):
        raise InputError(f"{path}: not found; make it with `python meshes/make_meshes.py` (needs gmsh)")
    mesh = fd.Mesh(path)
    mesh.image_shape = load("coins").shape
    return mesh


def _roi_pixels(shape, centre=(207.0, 107.0), radius=36.0, margin=1.0):
    """(rows, cols, xy) of the pixel centres at distance ≤ radius − margin from the ROI centre."""
    H, W = shape
    rows, cols = np.mgrid[0:H, 0:W]
    x, y = cols.astype(float), (H - 1 - rows).astype(float)
    inside = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= (radius - margin) ** 2
    return rows[inside], cols[inside], np.c_[x[inside], y[inside]]


def roi_denoise(model="perona-malik", levels=2, sigma255=25.0, seed=0, out=OUT, compare_full=True, log=print,
                path=None):
    r"""Denoise the disc-shaped region of interest of ``coins`` on its own unstructured mesh and its uniform
    refinements (``firedrake.MeshHierarchy``, ``levels`` times, h ≈ 1.5·2^-l pixels).

    The noisy picture enters as its bilinear interpolant at the mesh vertices, the ROI boundary gets the
    natural (no-flux) condition. PSNR is measured at the pixel centres inside the disc (point evaluation on a
    ``VertexOnlyMesh``) on every level, beside the self-convergence :math:`\|u_l - P u_{l-1}\|_{L^2}` (P the
    exact Q1 prolongation) and the same model run on the whole picture's structured pixel mesh.

    Every level falls back from the structured grid's fast path to Firedrake's assembly: that is said once for the
    whole run (each distinct warning is passed on once: Firedrake resets Python's registry of shown warnings
    between levels, which made the note come once per level).
    """
    psnr = lambda a, b: float(10 * np.log10(1.0 / np.mean((np.asarray(a) - np.asarray(b)) ** 2)))  # noqa: E731
    clean, noisy = noisy_pair(load("coins"), sigma255, seed)
    m = make_model(model) if isinstance(model, str) else model
    hierarchy = fd.MeshHierarchy(roi_mesh(path), levels)
    rows, cols, xy = _roi_pixels(clean.shape)
    c, f = clean[rows, cols], noisy[rows, cols]
    res = dict(model=m.name, pixels=len(xy), psnr_noisy=psnr(c, f), levels=[])
    prev = None
    said = set()
    for lvl, mesh in enumerate(hierarchy):
        with warnings.catch_warnings(record=True) as caught:      # the filters as they are; passed on below
            mesh.image_shape = clean.shape
            t0 = _time.perf_counter()
            ev = Evolution(m, mesh)
            u = fd.Function(ev.V).interpolate(ev.run(image_to_function(noisy, ev.V))[0])
            elapsed = _time.perf_counter() - t0
            vom = fd.VertexOnlyMesh(mesh, xy, redundant=True)
            at_vom = fd.Function(fd.FunctionSpace(vom, "DG", 0)).interpolate(u)
            pix = fd.Function(fd.FunctionSpace(vom.input_ordering, "DG", 0)).interpolate(at_vom).dat.data_ro.copy()
            diff = None
            if prev is not None:
                fine = fd.Function(ev.V)
                fd.prolong(prev, fine)
                diff = fd.errornorm(u, fine)
        for w in caught:                                          # each distinct warning once for all levels
            if (str(w.message), w.category) not in said:
                said.add((str(w.message), w.category))
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        res["levels"].append(dict(level=lvl, cells=mesh.num_cells(), vertices=mesh.num_vertices(),
                                  psnr=psnr(c, pix), self_diff=diff, time=elapsed))
        prev = u
    if compare_full:
        t0 = _time.perf_counter()
        full = denoise(noisy, m)
        res.update(psnr_full=psnr(c, full[rows, cols]), time_full=_time.perf_counter() - t0,
                   roi_vs_full=float(np.sqrt(np.mean((pix - full[rows, cols]) ** 2))))
    rows_t = [[lv["level"], lv["cells"], lv["vertices"], lv["psnr"], lv["self_diff"], lv["time"]]
              for lv in res["levels"]]
    diffs = [lv["self_diff"] for lv in res["levels"][1:]]
    log(f"\nRegion of interest: disc r=36 px in coins (meshes/roi_disc.msh, gmsh all-quad, refined uniformly), "
        f"model {m.name}, sigma {sigma255:g}; PSNR at the {len(xy)} ROI pixel centres (noisy "
        f"{res['psnr_noisy']:.2f} dB)")
    log(format_table(["level", "quads", "vertices", "PSNR dB", "||u_l - P u_l-1||", "time s"], rows_t,
                     [None, None, None, ".2f", ".3e", ".2f"]))
    if len(diffs) > 1:
        log("  self-convergence EOC: " + ", ".join(f"{x:.2f}" for x in eoc(diffs)))
    if compare_full:
        log(f"  same model on the whole {clean.shape[0]}x{clean.shape[1]} picture (pixel mesh): PSNR on the ROI "
            f"pixels {res['psnr_full']:.2f} dB ({res['time_full']:.1f} s); RMS difference to the finest ROI run "
            f"{res['roi_vs_full']:.4f}")
    if out:
        os.makedirs(out, exist_ok=True)
        plot_roi(hierarchy[0], noisy, prev, os.path.join(out, "roi_denoise.png"), res)
    return res
