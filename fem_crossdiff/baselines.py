"""Reference denoisers for comparison: TV-Chambolle with an oracle weight, BM3D (if installed)."""
import numpy as np

from .metrics import psnr

__all__ = ["tv_oracle", "bm3d_denoise"]


def tv_oracle(clean, noisy, weights=None):
    """TV-Chambolle (scikit-image) with the weight that maximises PSNR against ``clean``: (u, weight)."""
    from skimage.restoration import denoise_tv_chambolle
    weights = np.geomspace(0.02, 0.4, 15) if weights is None else weights
    best = max(((psnr(clean, u), w, u) for w in weights for u in [denoise_tv_chambolle(noisy, weight=w)]),
               key=lambda t: t[0])
    return best[2], best[1]


def bm3d_denoise(noisy, sigma):
    """BM3D with the true noise level ``sigma`` (image units), or None when the package is missing."""
    try:
        import bm3d
    except ImportError:
        return None
    return np.asarray(bm3d.bm3d(noisy, sigma_psd=sigma))
