"""Training data: (clean, noisy) patches of the bundled pictures that are not public test images."""
import numpy as np

from ..errors import InputError, check_counts
from ..imaging.data import TEST_IMAGES, TRAIN_IMAGES, check_sigma255, load
from ..imaging.noise import gaussian_noise

__all__ = ["training_pairs"]


def training_pairs(images=None, sigma255=25.0, patch=64, per_image=2, seed=0):
    """(clean, noisy) patches from bundled images that are *not* public test images; deterministic in ``seed``."""
    images = list(images or TRAIN_IMAGES)
    leaked = sorted(set(images) & set(TEST_IMAGES))
    if leaked:
        raise InputError(f"training images {leaked} are public test images; choose from {', '.join(TRAIN_IMAGES)}")
    check_sigma255(sigma255)
    check_counts(patch=(patch, 2), per_image=(per_image, 1))
    rng = np.random.default_rng(seed)
    pairs = []
    for name in images:
        img = load(name)
        if min(img.shape) < patch:
            raise InputError(f"image '{name}' ({img.shape[0]}×{img.shape[1]}) is smaller than the patch size {patch}")
        for _ in range(per_image):
            r = rng.integers(0, img.shape[0] - patch + 1)
            c = rng.integers(0, img.shape[1] - patch + 1)
            clean = np.ascontiguousarray(img[r:r + patch, c:c + patch])
            pairs.append((clean, gaussian_noise(clean, sigma255 / 255.0, seed=int(rng.integers(2 ** 31)))))
    return pairs
