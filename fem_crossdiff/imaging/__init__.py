"""Pixels, numpy in and numpy out: image files (:mod:`.files`), noise (:mod:`.noise`), quality metrics
(:mod:`.metrics`), the bundled training and test pictures (:mod:`.data`) and the reference denoisers TV and BM3D
(:mod:`.baselines`) and restorers (:mod:`.anchors`: Richardson–Lucy, Wiener, TV, biharmonic, bicubic, Lanczos). No
Firedrake."""
from ..errors import ImageError
from .files import IMAGE_SUFFIXES, WRITE_SUFFIXES, check_image, read_image, to_grey, write_image
from .metrics import psnr, ssim
from .noise import estimate_sigma255, gaussian_noise, speckle_noise

__all__ = ["ImageError", "IMAGE_SUFFIXES", "WRITE_SUFFIXES", "check_image", "read_image", "to_grey", "write_image",
           "psnr", "ssim", "gaussian_noise", "speckle_noise", "estimate_sigma255"]
