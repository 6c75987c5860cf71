"""The public benchmark: PSNR/SSIM on 256² centre crops of camera, astronaut, coins, moon at σ = 15 and 25.

Rows: noisy input, a learned model, every hand-tuned classic model (parameters tuned on *training* images by
``demos/tune_classic.py``, :mod:`.tuned`), TV-Chambolle with its weight tuned there too and with the per-image
oracle weight (the best for each test image: a bound, not a method), and BM3D when the ``bm3d`` package is
installed. Model *selection* never looks at those crops (:mod:`.validation`).
"""
import time

import numpy as np

from ..fem import denoise
from ..imaging.baselines import bm3d_denoise, tv_oracle
from ..imaging.data import check_sigma255, test_set
from ..imaging.metrics import psnr, ssim
from ..learned import shipped_model
from ..model import load_model
from .tuned import tuned_classic, tuned_tv_weight

__all__ = ["evaluate", "print_table"]


def evaluate(models=None, sigmas=(15, 25), size=256, classic=True, baselines=True, refine=0, log=print):
    """Rows of (method, image, σ, PSNR, SSIM, seconds). ``models``: {label: model or path or None=shipped}.

    ``refine > 0`` also runs the learned models on a mesh refined that many times (the image as its bilinear
    interpolant, read back at the pixel centres): a resolution-independence check. Every noise level is checked
    first (a shipped model and tuned parameters where they are needed), so a bad level is refused before any work.
    """
    for sigma in sigmas:
        check_sigma255(sigma)
        for m in (models or {"learned": None}).values():
            if m is None:
                shipped_model(sigma)
        if classic:
            tuned_classic(sigma)
        if baselines:
            tuned_tv_weight(sigma)
    rows = []
    for sigma in sigmas:
        methods = {}
        for label, m in (models or {"learned": None}).items():
            m = m or shipped_model(sigma)
            m = load_model(m) if isinstance(m, str) else m
            methods[label] = (lambda noisy, m=m: denoise(noisy, m))
            if refine:
                methods[f"{label} (h/{2 ** refine})"] = (lambda noisy, m=m: denoise(noisy, m, refine=refine))
        if classic:
            for name, params in tuned_classic(sigma).items():
                methods[name] = (lambda noisy, name=name, params=params: denoise(noisy, name, **params))
        for image, clean, noisy in test_set(sigma, size=size):
            rows.append(("noisy", image, sigma, psnr(clean, noisy), ssim(clean, noisy), 0.0))
            for label, fn in methods.items():
                t0 = time.perf_counter()
                u = fn(noisy)
                rows.append((label, image, sigma, psnr(clean, u), ssim(clean, u), time.perf_counter() - t0))
            if baselines:
                from skimage.restoration import denoise_tv_chambolle
                weight = tuned_tv_weight(sigma)
                t0 = time.perf_counter()
                u = denoise_tv_chambolle(noisy, weight=weight)
                rows.append(("TV (tuned)", image, sigma, psnr(clean, u), ssim(clean, u), time.perf_counter() - t0))
                t0 = time.perf_counter()
                u, _ = tv_oracle(clean, noisy, tuned=weight)
                rows.append(("TV (oracle)", image, sigma, psnr(clean, u), ssim(clean, u), time.perf_counter() - t0))
                t0 = time.perf_counter()
                u = bm3d_denoise(noisy, sigma / 255)
                if u is not None:
                    rows.append(("BM3D", image, sigma, psnr(clean, u), ssim(clean, u), time.perf_counter() - t0))
            log(f"  σ={sigma} {image} done")
    return rows


def print_table(rows, out=print):
    """PSNR / SSIM per method (rows) and image (columns), with the mean per σ."""
    methods = list(dict.fromkeys(r[0] for r in rows))
    for sigma in sorted({r[2] for r in rows}):
        images = list(dict.fromkeys(r[1] for r in rows if r[2] == sigma))
        out(f"\nσ = {sigma}: PSNR (dB) / SSIM")
        out(f"{'method':<20}" + "".join(f"{im:>17}" for im in images) + f"{'mean':>17}")
        for m in methods:
            sel = {r[1]: r for r in rows if r[0] == m and r[2] == sigma}
            if not sel:
                continue
            cells = "".join(f"{sel[im][3]:>9.2f} / {sel[im][4]:.3f}" for im in images)
            mean_p, mean_s = np.mean([r[3] for r in sel.values()]), np.mean([r[4] for r in sel.values()])
            out(f"{m:<20}{cells}{mean_p:>9.2f} / {mean_s:.3f}")
