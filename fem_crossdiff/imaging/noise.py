r"""Noise models with explicit seeds (noise level ``sigma`` in the image's own units, e.g. 25/255).

* Gaussian: :math:`f = u + \sigma n`;  * speckle (multiplicative): :math:`f = u(1 + \sigma n)`;
:math:`n \sim N(0, 1)` i.i.d. per pixel. Values are not clipped, so PSNR(noisy) = 20 log10(1/σ) on average.
"""
import numpy as np

from ..errors import InputError
from .files import check_image

__all__ = ["gaussian_noise", "speckle_noise", "add_noise", "NOISE"]


def _checked(img, sigma):
    img = check_image(img)
    if not (np.isfinite(sigma) and sigma >= 0):
        raise InputError(f"noise level sigma must be a finite number >= 0, got {sigma}")
    return img


def gaussian_noise(img, sigma, seed=0):
    """:math:`u + \\sigma n`, :math:`n\\sim N(0,1)` from ``numpy.random.default_rng(seed)``."""
    img = _checked(img, sigma)
    return img + sigma * np.random.default_rng(seed).standard_normal(img.shape)


def speckle_noise(img, sigma, seed=0):
    """:math:`u(1 + \\sigma n)`, :math:`n\\sim N(0,1)` from ``numpy.random.default_rng(seed)``."""
    img = _checked(img, sigma)
    return img * (1 + sigma * np.random.default_rng(seed).standard_normal(img.shape))


NOISE = {"gaussian": gaussian_noise, "speckle": speckle_noise}


def add_noise(img, sigma, kind="gaussian", seed=0):
    if kind not in NOISE:
        raise InputError(f"unknown noise '{kind}'; expected one of {', '.join(NOISE)}")
    return NOISE[kind](img, sigma, seed)
