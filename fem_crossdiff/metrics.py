r"""Image quality: PSNR :math:`= 10\log_{10}(1/\mathrm{MSE})` and SSIM, for images on the [0, 1] scale."""
import numpy as np

from .images import check_image

__all__ = ["psnr", "ssim", "mse"]


def _pair(clean, test):
    clean, test = check_image(clean, "reference image"), check_image(test, "test image")
    if clean.shape != test.shape:
        raise ValueError(f"images differ in shape: {clean.shape} vs {test.shape}")
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
    return float(structural_similarity(clean, test, data_range=data_range))
