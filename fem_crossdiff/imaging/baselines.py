"""Reference denoisers for comparison: TV-Chambolle (weight tuned on training pairs, or the per-image oracle
weight) and BM3D (if installed)."""
import numpy as np

from .metrics import psnr

__all__ = ["TV_WEIGHTS", "tv_oracle", "tv_weight_for", "bm3d_denoise"]

#: The TV-Chambolle weights searched (scikit-image's ``weight``, grey values in [0, 1]).
TV_WEIGHTS = np.geomspace(0.02, 0.4, 15)


def tv_oracle(clean, noisy, weights=TV_WEIGHTS, tuned=None):
    """TV-Chambolle (scikit-image) with the weight that maximises PSNR against ``clean``: (u, weight). A ``tuned``
    weight joins the grid, so the oracle is never below TV with that weight."""
    from skimage.restoration import denoise_tv_chambolle
    weights = weights if tuned is None else np.union1d(weights, [tuned])
    best = max(((psnr(clean, u), w, u) for w in weights for u in [denoise_tv_chambolle(noisy, weight=w)]),
               key=lambda t: t[0])
    return best[2], best[1]


def tv_weight_for(pairs, weights=np.geomspace(0.02, 0.4, 41)):
    """(weight, mean PSNR): the one TV-Chambolle weight with the best mean PSNR over (clean, noisy) ``pairs``,
    i.e. TV tuned on training data like every other model here (not per test image, as :func:`tv_oracle`)."""
    from skimage.restoration import denoise_tv_chambolle
    scores = [np.mean([psnr(c, denoise_tv_chambolle(n, weight=w)) for c, n in pairs]) for w in weights]
    best = int(np.argmax(scores))
    return float(weights[best]), float(scores[best])


def bm3d_denoise(noisy, sigma):
    """BM3D with the true noise level ``sigma`` (image units), or None when the package is missing."""
    try:
        import bm3d
    except ImportError:
        return None
    return np.asarray(bm3d.bm3d(noisy, sigma_psd=sigma))
