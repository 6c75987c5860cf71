r"""Image quality: PSNR :math:`= 10\log_{10}(1/\mathrm{MSE})` and SSIM, for images on the [0, 1] scale, and where
the error is: the MSE split by the clean image's edge strength."""
import numpy as np

from ..errors import InputError
from .files import check_image

__all__ = ["psnr", "ssim", "mse", "edge_strength", "error_by_edge_strength", "EDGE_BINS"]

#: Edge-strength bin edges of :func:`error_by_edge_strength`: flat, shading, texture, edges.
EDGE_BINS = (0.01, 0.03, 0.1)


def _pair(clean, test):
    clean, test = check_image(clean, "reference image", colour=True), check_image(test, "test image", colour=True)
    if clean.shape != test.shape:
        raise InputError(f"images differ in shape: {clean.shape} vs {test.shape}")
    return clean, test


def mse(clean, test):
    clean, test = _pair(clean, test)
    return float(np.mean((clean - test) ** 2))


def psnr(clean, test, data_range=1.0):
    """Peak signal-to-noise ratio in dB: :math:`10\\log_{10}(R^2/\\mathrm{MSE})`."""
    err = mse(clean, test)
    return float("inf") if err == 0 else float(10 * np.log10(data_range ** 2 / err))


def ssim(clean, test, data_range=1.0):
    """Structural similarity (Wang et al. 2004; scikit-image's implementation, 7×7 window)."""
    from skimage.metrics import structural_similarity
    clean, test = _pair(clean, test)
    return float(structural_similarity(clean, test, data_range=data_range,
                                       channel_axis=-1 if clean.ndim == 3 else None))


def edge_strength(img):
    r""":math:`|\nabla c|` per pixel by the Sobel operator (a smoothed central difference, grey levels per pixel)."""
    from scipy import ndimage
    img = check_image(img, "image")
    return np.hypot(ndimage.sobel(img, 0), ndimage.sobel(img, 1)) / 8.0


def error_by_edge_strength(clean, test, edges=EDGE_BINS):
    r"""Where the squared error is: for the bins :math:`[0, e_1), [e_1, e_2), \dots, [e_n, \infty)` of the clean
    image's :func:`edge_strength`, ``(fraction of the pixels, share of the MSE)``, two arrays of ``len(edges) + 1``;
    the shares sum to :func:`mse`, the fractions to 1."""
    clean, test = _pair(clean, test)
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 1 or edges.size == 0 or not np.all(np.diff(edges) > 0) or edges[0] <= 0:
        raise InputError(f"edges {edges.tolist()}: expected increasing positive bin edges")
    bins = np.digitize(edge_strength(clean), edges)
    err2 = (clean - test) ** 2
    n = len(edges) + 1
    return np.bincount(bins.ravel(), minlength=n) / clean.size, np.bincount(bins.ravel(), err2.ravel(), n) / clean.size
