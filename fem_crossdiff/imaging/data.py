"""Data sets from scikit-image's bundled images (no download): public test crops and training images.

Grey test (public benchmark): 256×256 centre crops of camera, astronaut (grey), coins, moon. Colour test: 256² centre
crops of astronaut (the public colour anchor), retina and the left view of stereo_motorcycle, none of which any
training uses. Training uses only *other* bundled images (the colour ones among them for colour models), so no test
pixel is ever seen in training.
"""
import numpy as np

from ..errors import InputError
from .files import to_grey

__all__ = ["TEST_IMAGES", "TRAIN_IMAGES", "COLOUR_TEST_IMAGES", "COLOUR_TRAIN_IMAGES", "load", "centre_crop",
           "test_set", "noisy_pair", "check_sigma255", "check_image_name", "NOISE_KINDS"]

TEST_IMAGES = ("camera", "astronaut", "coins", "moon")
TRAIN_IMAGES = ("brick", "grass", "gravel", "text", "page", "clock", "chelsea", "coffee", "rocket",
                "hubble_deep_field", "immunohistochemistry", "horse", "cell", "microaneurysms")
COLOUR_TEST_IMAGES = ("astronaut", "retina", "stereo_motorcycle")
COLOUR_TRAIN_IMAGES = ("chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
#: Noise kinds of the data sets: Gaussian (level σ on the 0–255 scale) and speckle (level: looks L).
NOISE_KINDS = ("gaussian", "speckle")
_ALL = tuple(dict.fromkeys(TEST_IMAGES + TRAIN_IMAGES + COLOUR_TEST_IMAGES))


def check_image_name(name):
    """Refuse a name that is not one of the bundled pictures this package uses."""
    if name not in _ALL:
        raise InputError(f"unknown image '{name}'; expected one of {', '.join(_ALL)}")


def load(name, colour=False):
    """A bundled scikit-image picture as float64 in [0, 1]: grey (H, W), or with ``colour`` (H, W, 3)."""
    import skimage.data
    from skimage.util import img_as_float
    check_image_name(name)
    img = getattr(skimage.data, name)()
    img = img[0] if isinstance(img, tuple) else img                       # stereo_motorcycle: the left view
    if colour:
        if img.ndim != 3:
            raise InputError(f"image '{name}' is grey; colour pictures: {', '.join(COLOUR_TRAIN_IMAGES)}, "
                             f"{', '.join(COLOUR_TEST_IMAGES)}")
        return img_as_float(img[..., :3]).astype(np.float64)
    return to_grey(img) if img.ndim == 3 else img_as_float(img).astype(np.float64)


def centre_crop(img, size=256):
    H, W = img.shape[:2]
    size = min(size, H, W)
    r, c = (H - size) // 2, (W - size) // 2
    return np.ascontiguousarray(img[r:r + size, c:c + size])


def check_sigma255(sigma255):
    """Refuse a noise level ``sigma255`` (0–255 scale) that is not a finite number >= 0, in the user's units."""
    if not (np.isfinite(sigma255) and sigma255 >= 0):
        raise InputError(f"noise level sigma {sigma255:g} (0-255 scale): expected a finite number >= 0")


def noisy_pair(clean, level, seed, kind="gaussian"):
    """(clean, noisy): Gaussian noise of level ``level`` = σ on the 0–255 scale, or speckle of ``level`` looks."""
    from .noise import add_noise
    if kind == "gaussian":
        check_sigma255(level)
        return clean, add_noise(clean, level / 255.0, kind, seed)
    return clean, add_noise(clean, level, kind, seed)


def test_set(level, size=256, seed=0, colour=False, kind="gaussian"):
    """[(name, clean, noisy)] for the public test crops (``colour``: the colour test crops); seed ``seed + i`` for
    image ``i``; ``level``: σ (0–255) for Gaussian noise, looks for speckle."""
    names = COLOUR_TEST_IMAGES if colour else TEST_IMAGES
    return [(name, *noisy_pair(centre_crop(load(name, colour), size), level, seed + i, kind))
            for i, name in enumerate(names)]


test_set.__test__ = False            # a data set, not a test (pytest collects imported names starting with test)
