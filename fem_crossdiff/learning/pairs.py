"""Training data: (clean, noisy) patches of the bundled pictures that are not test images (grey or colour;
Gaussian noise of level σ, or speckle of L looks)."""
import numpy as np

from ..errors import InputError, check_counts
from ..imaging.data import (COLOUR_TEST_IMAGES, COLOUR_TRAIN_IMAGES, TEST_IMAGES, TRAIN_IMAGES, check_sigma255,
                            load)
from ..imaging.noise import gaussian_noise, speckle_noise

__all__ = ["training_pairs"]


def training_pairs(images=None, sigma255=25.0, patch=64, per_image=2, seed=0, colour=False, noise="gaussian",
                   looks=4.0):
    """(clean, noisy) patches from bundled images that are *not* test images; deterministic in ``seed``. ``colour``:
    (H, W, 3) patches of the colour training pictures; ``noise="speckle"``: multiplicative Gamma noise of ``looks``."""
    default = COLOUR_TRAIN_IMAGES if colour else TRAIN_IMAGES
    images = list(images or default)
    leaked = sorted(set(images) & (set(TEST_IMAGES) | set(COLOUR_TEST_IMAGES)))
    if leaked:
        raise InputError(f"training images {leaked} are test images; choose from {', '.join(default)}")
    if noise == "gaussian":
        check_sigma255(sigma255)
        add = lambda clean, s: gaussian_noise(clean, sigma255 / 255.0, seed=s)  # noqa: E731
    elif noise == "speckle":
        add = lambda clean, s: speckle_noise(clean, looks, seed=s)  # noqa: E731
    else:
        raise InputError(f"unknown noise '{noise}'; expected gaussian or speckle")
    check_counts(patch=(patch, 2), per_image=(per_image, 1))
    rng = np.random.default_rng(seed)
    pairs = []
    for name in images:
        img = load(name, colour)
        if min(img.shape[:2]) < patch:
            raise InputError(f"image '{name}' ({img.shape[0]}×{img.shape[1]}) is smaller than the patch size {patch}")
        for _ in range(per_image):
            r = rng.integers(0, img.shape[0] - patch + 1)
            c = rng.integers(0, img.shape[1] - patch + 1)
            clean = np.ascontiguousarray(img[r:r + patch, c:c + patch])
            pairs.append((clean, add(clean, int(rng.integers(2 ** 31)))))
    return pairs
