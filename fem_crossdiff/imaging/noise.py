r"""Noise models with explicit seeds, and the estimate of an unknown Gaussian noise level.

* Gaussian: :math:`f = u + \sigma n`, :math:`n \sim N(0, 1)` i.i.d. per pixel (and channel), ``sigma`` in the image's
  own units (e.g. 25/255); values are not clipped, so PSNR(noisy) = 20 log10(1/σ) on average;
* speckle (multiplicative, the OCT/SAR setting): :math:`f = u\,n`, :math:`n \sim \Gamma(L, 1/L)` i.i.d., mean 1,
  variance :math:`1/L` — :math:`L` the equivalent number of looks (ENL);
* :func:`estimate_sigma255`: the noise level of a Gaussian-noisy image, on the 0–255 scale, from the principal
  components of its weak-texture patches (Liu, Tanaka & Okutomi 2013): texture and saturated areas do not fool
  it, as they fool the median absolute deviation of wavelet coefficients.
"""
import functools
import math

import numpy as np

from ..errors import InputError
from .files import check_image

__all__ = ["gaussian_noise", "speckle_noise", "add_noise", "estimate_sigma255", "gamma_quantile", "NOISE",
           "NORMAL_Q75", "PATCHES", "CONFIDENCE", "MAX_PATCHES"]


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
#: Sides of the square patches of the noise estimate: Liu, Tanaka & Okutomi's 7, smaller ones where too few 7×7
#: patches are free of clipping (or the image is small); and the confidence of the weak-texture threshold (theirs).
PATCHES, CONFIDENCE = (7, 5, 3), 1.0 - 1e-6
#: Patches needed per dimension of a patch (``ENOUGH * d²``) before their covariance is trusted.
ENOUGH = 20
#: Patches looked at per image at most, divided by the number of channels (a regular subsample of all positions
#: beyond that): the estimate's cost is bounded whatever the image's size, and its sampling error (about
#: :math:`\sigma/\sqrt{n}`) stays far below a model's σ spacing.
MAX_PATCHES = 2 ** 16
#: Rounds of the weak-texture selection at most (it stops earlier when the selection no longer changes).
ROUNDS = 8
#: A patch whose variance is below this (image units squared) is flat — a constant area, no noise to measure.
FLAT_VARIANCE = 1e-12


def estimate_sigma255(img):
    r"""The Gaussian noise level of ``img`` (grey or colour, values in [0, 1]) on the 0–255 scale: the noise of one
    pixel of one channel, as ``--sigma`` takes it.

    Liu, Tanaka & Okutomi, "Single-image noise level estimation for blind denoising" (IEEE TIP 22(12), 2013): the
    covariance of the :math:`d \times d` patches of a noisy image is that of the clean patches plus :math:`\sigma^2 I`,
    and in *weak-texture* patches the clean part has rank below the patch size, so the smallest eigenvalue of their
    covariance is :math:`\sigma^2`. A patch is weak-textured when the energy of its gradients,
    :math:`\operatorname{tr}(G^TG) = \sum |\nabla x|^2` (central differences inside the patch), stays below the
    level pure noise reaches with probability :data:`CONFIDENCE`: for noise alone it follows a gamma distribution
    of shape :math:`r/2` and scale :math:`2\sigma^2\operatorname{tr}(D^TD)/r`, :math:`D` the patch's difference
    operator and :math:`r` its rank. Starting from all patches, the estimate and the selection are iterated until the
    selection no longer changes (at most :data:`ROUNDS`). Texture therefore is not read as noise, as a wavelet's
    median absolute deviation reads it.

    The smallest eigenvalue of a covariance estimated from :math:`n` samples in :math:`p` dimensions is biased low:
    for white noise it sits at the lower edge of the Marchenko–Pastur law, :math:`\sigma^2(1 - \sqrt{p/n})^2`;
    it is divided by that factor (without it σ is 3–6 % low on a 256² image).

    Saturation: patches that touch a clipped pixel (exactly 0 or 1, or a channel's lowest or highest value, held by
    more than one pixel: white or black areas, clipped noise) or that are flat (variance below
    :data:`FLAT_VARIANCE`) are left out; their noise is not Gaussian, or not there. Patches are 7×7 (Liu et al.'s);
    where fewer than :data:`ENOUGH` per dimension remain (scattered white rows, a small image) 5×5, then 3×3
    (:data:`PATCHES`), then the clipped ones are taken too; an image too small even for that is measured by the
    median absolute deviation of its diagonal second differences. A flat image: 0.

    Colour: the patches of the three channels side by side, :math:`3d^2` dimensions, one σ for every channel. Chroma
    is far smoother than luma, so the joint covariance has directions that texture hardly reaches even where every
    channel is textured: on the colour crops at σ 2 the joint estimate errs less than half as much as the mean of
    the channels' (``demos/PHOTOGRAPHS.md``).
    """
    img = check_image(img, colour=True)
    return 255.0 * _joint_sigma([img] if img.ndim == 2 else [img[..., c] for c in range(img.shape[2])])


def _joint_sigma(channels):
    """The noise level common to ``channels`` (2-D arrays of one shape, image units), their patches taken jointly:
    a patch is the ``d``×``d`` windows of every channel side by side."""
    from numpy.lib.stride_tricks import sliding_window_view
    shape = channels[0].shape
    clipped = [_clipped(x) for x in channels]
    for drop_clipped in (True, False):
        for d in PATCHES:
            if min(shape) < d + 2:
                continue
            positions = (shape[0] - d + 1) * (shape[1] - d + 1)
            stride = max(1, int(np.ceil(np.sqrt(positions * len(channels) / MAX_PATCHES))))
            keep = np.ones(((shape[0] - d) // stride + 1, (shape[1] - d) // stride + 1), dtype=bool)
            if drop_clipped:
                for mask in clipped:
                    if mask is not None:
                        keep &= _box_sums(mask, d, d, stride) < 0.5       # counts: exact in floating point
            parts = [sliding_window_view(x, (d, d))[::stride, ::stride][keep].reshape(-1, d * d) for x in channels]
            alive = np.all([part.var(axis=1) > FLAT_VARIANCE for part in parts], axis=0)
            if np.count_nonzero(alive) >= ENOUGH * d * d * len(channels):
                X = np.concatenate([part[alive] for part in parts], axis=1)
                energy = sum(_gradient_energy(x, d, stride)[keep][alive] for x in channels)
                return _weak_texture_sigma(X, energy, d, len(channels))
    return float(np.mean([_mad_sigma(x) for x in channels]))


def _clipped(x):
    """1.0 where ``x`` holds a clipped value (0 or 1 exactly, or its lowest or highest value, held by more than one
    pixel), else 0.0; None where there is none."""
    mask = None
    for v in {float(x.min()), float(x.max()), 0.0, 1.0}:
        at = x == v
        if np.count_nonzero(at) > 1:
            mask = at if mask is None else mask | at
    return None if mask is None else mask.astype(float)


def _weak_texture_sigma(X, energy, d, channels=1):
    """Liu et al.'s iteration on the patches ``X`` (rows) with gradient energies ``energy``: the noise variance
    from the patches selected as weak-textured by the previous estimate, until the selection stays."""
    threshold = _weak_texture_threshold(d, channels)
    selected = np.ones(len(X), dtype=bool)
    sigma2 = _smallest_eigenvalue(X)
    for _ in range(ROUNDS):
        now = energy < sigma2 * threshold
        if np.count_nonzero(now) < ENOUGH * X.shape[1] or np.array_equal(now, selected):
            break
        selected = now
        sigma2 = _smallest_eigenvalue(X[selected])
    return float(np.sqrt(max(sigma2, 0.0)))


def _gradient_energy(x, d, stride):
    """The energy of the gradients of every ``d``×``d`` patch of ``x`` (every ``stride``-th position): central
    differences inside the patch, squared and summed."""
    gx = 0.25 * (x[:, 2:] - x[:, :-2]) ** 2
    gy = 0.25 * (x[2:, :] - x[:-2, :]) ** 2
    return _box_sums(gx, d, d - 2, stride) + _box_sums(gy, d - 2, d, stride)


def _box_sums(a, h, w, stride=1):
    """Sums of ``a`` over its ``h``×``w`` windows at every ``stride``-th position (a summed-area table)."""
    c = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
    c[1:, 1:] = a.cumsum(axis=0).cumsum(axis=1)
    return (c[h:, w:] - c[:-h, w:] - c[h:, :-w] + c[:-h, :-w])[::stride, ::stride]


def _smallest_eigenvalue(X):
    r"""The smallest eigenvalue of the covariance of the rows of ``X`` (``n`` samples in ``p`` dimensions), divided
    by the Marchenko–Pastur factor :math:`(1 - \sqrt{p/n})^2` of white noise."""
    n, p = X.shape
    mean = X.mean(axis=0)
    cov = (X.T @ X - n * np.outer(mean, mean)) / (n - 1)
    return float(np.linalg.eigvalsh(cov)[0]) / (1.0 - np.sqrt(p / n)) ** 2


@functools.lru_cache(maxsize=16)
def _weak_texture_threshold(d, channels=1):
    r""":math:`\tau_0`: the :data:`CONFIDENCE` quantile of the gradient energy of a ``d``×``d`` patch of unit white
    noise in ``channels`` channels, a gamma distribution of shape :math:`r/2` and scale
    :math:`2\operatorname{tr}(D^TD)/r` (Liu et al.; rank and trace of the channels' block-diagonal operator:
    ``channels`` times one channel's)."""
    unit = np.eye(d * d).reshape(d * d, d, d)
    D = np.concatenate([0.5 * (unit[:, :, 2:] - unit[:, :, :-2]).reshape(d * d, -1),
                        0.5 * (unit[:, 2:, :] - unit[:, :-2, :]).reshape(d * d, -1)], axis=1).T
    DD = D.T @ D
    rank = int(np.linalg.matrix_rank(DD))
    return gamma_quantile(CONFIDENCE, channels * rank / 2, 2 * float(np.trace(DD)) / rank)


def gamma_quantile(q, shape, scale=1.0):
    """The ``q`` quantile of the gamma distribution of ``shape`` and ``scale`` (as ``scipy.stats.gamma.ppf``, whose
    import costs more than a whole denoise: bisection on the regularised incomplete gamma function's series)."""
    lo, hi = 0.0, shape + 40.0 * np.sqrt(shape) + 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _lower_gamma(shape, mid) < q else (lo, mid)
    return 0.5 * (lo + hi) * scale


def _lower_gamma(a, x):
    """The regularised lower incomplete gamma function :math:`P(a, x)` (its power series, which converges for every
    x; here a and x are a few tens at most)."""
    if x <= 0:
        return 0.0
    term = total = 1.0 / a
    n = 0
    while term > total * 1e-17:
        n += 1
        term *= x / (a + n)
        total += term
    return math.exp(a * math.log(x) - x - math.lgamma(a) + math.log(total))


def _mad_sigma(x):
    r"""The noise level of a small image: the median absolute deviation of its diagonal second differences
    :math:`(x_{i,j} - x_{i+1,j} - x_{i,j+1} + x_{i+1,j+1})/2` (variance σ² for white noise), zeros (flat areas) left
    out."""
    diff = 0.5 * (x[:-1, :-1] - x[1:, :-1] - x[:-1, 1:] + x[1:, 1:]).ravel()
    diff = diff[np.abs(diff) > np.sqrt(FLAT_VARIANCE)]
    return float(np.median(np.abs(diff)) / NORMAL_Q75) if diff.size else 0.0
