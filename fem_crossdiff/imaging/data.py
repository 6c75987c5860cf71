"""Data sets from scikit-image's bundled images (no download): public test crops and training images.

Test (public benchmark): 256×256 centre crops of camera, astronaut (grey), coins, moon. Training uses only
*other* bundled images, so no test pixel is ever seen in training.
"""
import numpy as np

from ..errors import InputError
from .files import to_grey

__all__ = ["TEST_IMAGES", "TRAIN_IMAGES", "load", "centre_crop", "test_set", "noisy_pair", "check_sigma255",
           "check_image_name"]

TEST_IMAGES = ("camera", "astronaut", "coins", "moon")
TRAIN_IMAGES = ("brick", "grass", "gravel", "text", "page", "clock", "chelsea", "coffee", "rocket",
                "hubble_deep_field", "immunohistochemistry", "horse", "cell", "microaneurysms")


def check_image_name(name):
    """Refuse a name that is not one of the bundled pictures this package uses."""
    if name not in TEST_IMAGES + TRAIN_IMAGES:
        raise InputError(f"unknown image '{name}'; expected one of {', '.join(TEST_IMAGES + TRAIN_IMAGES)}")


def load(name):
    """A bundled scikit-image picture as float64 grey in [0, 1]."""
    import skimage.data
    from skimage.util import img_as_float
    check_image_name(name)
    img = getattr(skimage.data, name)()
    return to_grey(img) if img.ndim == 3 else img_as_float(img).astype(np.float64)


def centre_crop(img, size=256):
    H, W = img.shape
    size = min(size, H, W)
    r, c = (H - size) // 2, (W - size) // 2
    return np.ascontiguousarray(img[r:r + size, c:c + size])


def check_sigma255(sigma255):
    """Refuse a noise level ``sigma255`` (0–255 scale) that is not a finite number >= 0, in the user's units."""
    if not (np.isfinite(sigma255) and sigma255 >= 0):
        raise InputError(f"noise level sigma {sigma255:g} (0-255 scale): expected a finite number >= 0")


def noisy_pair(clean, sigma255, seed, kind="gaussian"):
    """(clean, noisy) with noise level ``sigma255`` on the 0–255 scale."""
    from .noise import add_noise
    check_sigma255(sigma255)
    return clean, add_noise(clean, sigma255 / 255.0, kind, seed)


def test_set(sigma255, size=256, seed=0):
    """[(name, clean, noisy)] for the public test crops; seed ``seed + i`` for image ``i``."""
    return [(name, *noisy_pair(centre_crop(load(name), size), sigma255, seed + i))
            for i, name in enumerate(TEST_IMAGES)]
