r"""Reference denoisers for comparison: TV-Chambolle (weight tuned on training pairs, or the per-image oracle
weight) and BM3D (if installed); for speckle, both in the log domain with the bias of :math:`\log n` removed."""
import numpy as np

from .metrics import psnr

__all__ = ["TV_WEIGHTS", "tv_oracle", "tv_weight_for", "bm3d_denoise", "log_speckle_statistics", "homomorphic",
           "bm3d_log", "tv_log_oracle"]

#: The TV-Chambolle weights searched (scikit-image's ``weight``, grey values in [0, 1]).
TV_WEIGHTS = np.geomspace(0.02, 0.4, 15)


def tv_oracle(clean, noisy, weights=TV_WEIGHTS, tuned=None, channel_axis=None):
    """TV-Chambolle (scikit-image) with the weight that maximises PSNR against ``clean``: (u, weight). A ``tuned``
    weight joins the grid, so the oracle is never below TV with that weight. ``channel_axis=-1``: colour TV (the
    channels' joint total variation)."""
    from skimage.restoration import denoise_tv_chambolle
    weights = weights if tuned is None else np.union1d(weights, [tuned])
    best = max(((psnr(clean, u), w, u) for w in weights
                for u in [denoise_tv_chambolle(noisy, weight=w, channel_axis=channel_axis)]), key=lambda t: t[0])
    return best[2], best[1]


def tv_weight_for(pairs, weights=np.geomspace(0.02, 0.4, 41)):
    """(weight, mean PSNR): the one TV-Chambolle weight with the best mean PSNR over (clean, noisy) ``pairs``,
    i.e. TV tuned on training data like every other model here (not per test image, as :func:`tv_oracle`)."""
    from skimage.restoration import denoise_tv_chambolle
    scores = [np.mean([psnr(c, denoise_tv_chambolle(n, weight=w)) for c, n in pairs]) for w in weights]
    best = int(np.argmax(scores))
    return float(weights[best]), float(scores[best])


def bm3d_denoise(noisy, sigma):
    """BM3D with the true noise level ``sigma`` (image units) — CBM3D (``bm3d_rgb``) for a colour image — or None
    when the package is missing."""
    try:
        import bm3d
    except ImportError:
        return None
    if np.ndim(noisy) == 3:
        return np.asarray(bm3d.bm3d_rgb(noisy, sigma_psd=sigma))
    return np.asarray(bm3d.bm3d(noisy, sigma_psd=sigma))


def log_speckle_statistics(looks):
    """Mean and standard deviation of :math:`\\log n` for speckle :math:`n\\sim\\Gamma(L, 1/L)`: :math:`\\psi(L) - \\log L`
    and :math:`\\sqrt{\\psi'(L)}` (digamma, trigamma)."""
    from scipy.special import digamma, polygamma
    return float(digamma(looks) - np.log(looks)), float(np.sqrt(polygamma(1, looks)))


def homomorphic(denoise_log, speckled, looks):
    """A despeckling by a Gaussian denoiser in the log domain: :math:`\\exp(\\mathrm{den}(\\log f - b))` with the bias
    :math:`b = E\\log n` removed and ``denoise_log(g, sigma)`` given the log-noise level."""
    bias, sigma = log_speckle_statistics(looks)
    g = np.log(np.maximum(speckled, 1e-4)) - bias
    return np.exp(denoise_log(g, sigma))


def bm3d_log(speckled, looks):
    """BM3D on the bias-corrected log image (None when the package is missing)."""
    try:
        import bm3d
    except ImportError:
        return None
    return homomorphic(lambda g, s: np.asarray(bm3d.bm3d(g, sigma_psd=s)), speckled, looks)


def tv_log_oracle(clean, speckled, looks, weights=np.geomspace(0.05, 2.0, 15)):
    """TV-Chambolle on the bias-corrected log image with the weight best for ``clean`` (a bound, as TV-oracle)."""
    from skimage.restoration import denoise_tv_chambolle
    results = [homomorphic(lambda g, s: denoise_tv_chambolle(g, weight=w), speckled, looks) for w in weights]
    best = int(np.argmax([psnr(clean, u) for u in results]))
    return results[best], float(weights[best])
