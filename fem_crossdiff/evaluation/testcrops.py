"""The public benchmark: PSNR/SSIM on 256² centre crops of camera, astronaut, coins, moon at σ = 15 and 25.

Rows: noisy input, a learned model, every hand-tuned classic model (parameters tuned on *training* images by
``demos/tune_classic.py``, :mod:`.tuned`), TV-Chambolle with its weight tuned there too and with the per-image
oracle weight (the best for each test image: a bound, not a method), and BM3D when the ``bm3d`` package is
installed. Model *selection* never looks at those crops (:mod:`.validation`).
"""
import time

import numpy as np

from ..errors import check_counts
from ..fem import denoise
from ..imaging.baselines import bm3d_denoise, bm3d_log, tv_log_oracle, tv_oracle
from ..imaging.data import check_sigma255, test_set
from ..imaging.metrics import psnr, ssim
from ..learned import shipped_model
from ..model import load_model
from .tuned import tuned_classic, tuned_tv_weight

__all__ = ["evaluate", "print_table"]


def _methods(models, level, noise, colour, classic, refine):
    """{label: function noisy -> restored} of the learned models and the tuned classic ones for one noise level."""
    methods = {}
    kind = "speckle" if noise == "speckle" else ("colour" if colour else "grey")
    for label, m in (models or {"learned": None}).items():
        m = m or shipped_model(level, kind=kind)
        m = load_model(m) if isinstance(m, str) else m
        methods[label] = (lambda noisy, m=m: denoise(noisy, m))
        if refine:
            methods[f"{label} (h/{2 ** refine})"] = (lambda noisy, m=m: denoise(noisy, m, refine=refine))
    if colour and noise == "gaussian" and (models is None or classic):
        grey = load_model(shipped_model(level))                      # the grey learned model, channel by channel
        methods["learned grey, per channel"] = (lambda noisy, m=grey: denoise(noisy, m))
    if classic and not colour:
        for name, params in tuned_classic(level, noise).items():
            methods[name] = (lambda noisy, name=name, params=params: denoise(noisy, name, **params))
    return methods


def _baselines(clean, noisy, level, noise, colour):
    """(label, restored) of TV and BM3D: tuned TV and TV-oracle, BM3D (CBM3D in colour) with the true level; for
    speckle both on the log image, bias corrected."""
    from skimage.restoration import denoise_tv_chambolle
    if noise == "speckle":
        yield "TV-log (oracle)", tv_log_oracle(clean, noisy, level)[0]
        u = bm3d_log(noisy, level)
        if u is not None:
            yield "BM3D-log", u
        return
    axis = -1 if colour else None
    if not colour:
        yield "TV (tuned)", denoise_tv_chambolle(noisy, weight=tuned_tv_weight(level))
    yield "TV (oracle)", tv_oracle(clean, noisy, tuned=None if colour else tuned_tv_weight(level), channel_axis=axis)[0]
    u = bm3d_denoise(noisy, level / 255)
    if u is not None:
        yield ("CBM3D" if colour else "BM3D"), u


def evaluate(models=None, sigmas=(15, 25), size=256, classic=True, baselines=True, refine=0, log=print,
             noise="gaussian", colour=False, png=False):
    """Rows of (method, image, level, PSNR, SSIM, seconds). ``models``: {label: model or path or None=shipped}.

    ``noise``: "gaussian" (``sigmas`` on the 0–255 scale) or "speckle" (``sigmas`` are looks L); ``colour``: the
    colour test crops (the grey learned model per channel and CBM3D beside); ``png``: the noisy inputs as an 8-bit
    file holds them (clipped to [0, 1] and rounded). ``refine > 0`` also runs the learned models on a mesh refined
    that many times (the image as its bilinear interpolant, read back at the pixel centres): a
    resolution-independence check. Every level is checked first (a shipped model and tuned parameters where they
    are needed), so a bad level is refused before any work. ``log``: one line per image and method as it is done
    (its PSNR and seconds), so that a long evaluation shows its progress.
    """
    check_counts(refine=(refine, 0))
    kind = "speckle" if noise == "speckle" else ("colour" if colour else "grey")
    for level in sigmas:
        if noise == "gaussian":
            check_sigma255(level)
        for m in (models or {"learned": None}).values():
            if m is None:
                shipped_model(level, kind=kind)
        if classic and not colour:
            tuned_classic(level, noise)
        if baselines and noise == "gaussian" and not colour:
            tuned_tv_weight(level)
    rows = []
    what = "looks" if noise == "speckle" else "σ"
    for level in sigmas:
        methods = _methods(models, level, noise, colour, classic, refine)
        crops = test_set(level, size=size, colour=colour, kind=noise)
        width = max(len(image) for image, _, _ in crops)
        for i, (image, clean, noisy) in enumerate(crops, start=1):
            if png:
                noisy = np.round(np.clip(noisy, 0.0, 1.0) * 255) / 255
            tag = f"{image} ({i}/{len(crops)}):"
            where = f"{what} {level:g}, {tag:<{width + 7}}"

            def add(label, u, seconds):
                rows.append((label, image, level, psnr(clean, u), ssim(clean, u), seconds))
                log(f"{where} {label:<26} {rows[-1][3]:6.2f} dB {seconds:7.1f} s")

            add("noisy", noisy, 0.0)
            for label, fn in methods.items():
                t0 = time.perf_counter()
                u = fn(noisy)
                add(label, u, time.perf_counter() - t0)
            if baselines:
                t0 = time.perf_counter()
                for label, u in _baselines(clean, noisy, level, noise, colour):
                    add(label, u, time.perf_counter() - t0)
                    t0 = time.perf_counter()
    return rows


def print_table(rows, out=print):
    """PSNR / SSIM per method (rows) and image (columns), with the mean per σ."""
    methods = list(dict.fromkeys(r[0] for r in rows))
    width = max(20, *(len(m) + 2 for m in methods))          # the longest label and two spaces
    for sigma in sorted({r[2] for r in rows}):
        images = list(dict.fromkeys(r[1] for r in rows if r[2] == sigma))
        out(f"\nlevel {sigma:g} (σ, or looks for speckle): PSNR (dB) / SSIM")
        out(f"{'method':<{width}}" + "".join(f"{im:>17}" for im in images) + f"{'mean':>17}")
        for m in methods:
            sel = {r[1]: r for r in rows if r[0] == m and r[2] == sigma}
            if not sel:
                continue
            cells = "".join(f"{sel[im][3]:>9.2f} / {sel[im][4]:.3f}" for im in images)
            mean_p, mean_s = np.mean([r[3] for r in sel.values()]), np.mean([r[4] for r in sel.values()])
            out(f"{m:<{width}}{cells}{mean_p:>9.2f} / {mean_s:.3f}")
