r"""Noise models with explicit seeds, and the estimate of an unknown Gaussian noise level.

* Gaussian: :math:`f = u + \sigma n`, :math:`n \sim N(0, 1)` i.i.d. per pixel (and channel), ``sigma`` in the image's
  own units (e.g. 25/255); values are not clipped, so PSNR(noisy) = 20 log10(1/σ) on average;
* speckle (multiplicative, the OCT/SAR setting): :math:`f = u\,n`, :math:`n \sim \Gamma(L, 1/L)` i.i.d., mean 1,
  variance :math:`1/L` — :math:`L` the equivalent number of looks (ENL);
* :func:`estimate_sigma255`: the noise level of a Gaussian-noisy image from its finest wavelet coefficients
  (Donoho's median absolute deviation, scikit-image's ``estimate_sigma``), on the 0–255 scale.
"""
import warnings

import numpy as np

from ..errors import InputError
from .files import check_image

__all__ = ["gaussian_noise", "speckle_noise", "add_noise", "estimate_sigma255", "NOISE", "NORMAL_Q75"]


def _level(value, what="noise level sigma", least=0.0):
    if not (np.isfinite(value) and value >= least):
        raise InputError(f"{what} must be a finite number >= {least:g}, got {value}")


def gaussian_noise(img, sigma, seed=0):
    """:math:`u + \\sigma n`, :math:`n\\sim N(0,1)` from ``numpy.random.default_rng(seed)`` (grey or colour)."""
    img = check_image(img, colour=True)
    _level(sigma)
    return img + sigma * np.random.default_rng(seed).standard_normal(img.shape)


def speckle_noise(img, looks=4.0, seed=0):
    """:math:`u\\,n`, :math:`n \\sim \\Gamma(L, 1/L)` (mean 1, variance 1/L) with :math:`L` = ``looks`` (ENL)."""
    img = check_image(img, colour=True)
    _level(looks, "equivalent number of looks", 1e-3)
    return img * np.random.default_rng(seed).gamma(looks, 1.0 / looks, img.shape)


NOISE = {"gaussian": gaussian_noise, "speckle": speckle_noise}


def add_noise(img, level, kind="gaussian", seed=0):
    """Noise of ``kind`` at ``level`` (Gaussian: σ in image units; speckle: looks L)."""
    if kind not in NOISE:
        raise InputError(f"unknown noise '{kind}'; expected one of {', '.join(NOISE)}")
    return NOISE[kind](img, level, seed)


#: The 75th percentile of the standard normal distribution (``scipy.stats.norm.ppf(0.75)``).
NORMAL_Q75 = 0.6744897501960817


def estimate_sigma255(img):
    """The Gaussian noise level of ``img`` (grey or colour, values in [0, 1]) on the 0–255 scale, estimated from
    the median absolute deviation of its finest diagonal wavelet coefficients (``db2``; the mean over colour
    channels), as ``skimage.restoration.estimate_sigma`` does (tested equal) without importing
    ``skimage.restoration`` (and scipy.stats: 1.4 s of start-up)."""
    import pywt
    img = check_image(img, colour=True)
    channels = [img] if img.ndim == 2 else [img[..., c] for c in range(img.shape[2])]
    sigmas = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")                   # a flat image has no detail coefficients: 0, not noise
        for channel in channels:
            detail = pywt.dwtn(channel, wavelet="db2")["dd"]
            detail = detail[np.nonzero(detail)]
            sigmas.append(np.median(np.abs(detail)) / NORMAL_Q75)
        sigma = np.mean(sigmas)
    return 255.0 * float(sigma) if np.isfinite(sigma) else 0.0
