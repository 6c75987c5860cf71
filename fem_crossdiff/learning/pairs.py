"""Training data: (clean, noisy) patches — of the bundled pictures that are not test images or of the user's images
(files, folders, globs: :mod:`.datasets`) with synthesised noise (Gaussian of level σ, or speckle of L looks), or of
the user's real noisy/clean pairs, cropped at the same place in both (no noise synthesised).

Each image is read, its patches cropped (copies) and the image dropped before the next is read, so that memory is
bounded by the patches, not by the data set. A grey model learns from grey images: a colour file is made grey
(:func:`~fem_crossdiff.imaging.files.to_grey`, the conversion of every command), said once; a colour model learns
from colour images only: a grey one is refused by name."""
import warnings

import numpy as np

from ..errors import InputError, check_counts
from ..imaging.data import check_sigma255, load
from ..imaging.files import read_image, to_grey
from ..imaging.noise import gaussian_noise, speckle_noise
from .datasets import Picture, image_sources

__all__ = ["training_pairs", "pair_patches"]


class _GreyNote:
    """Counts the colour files made grey for a grey model, and says it once."""

    def __init__(self):
        self.files = []

    def say(self):
        if self.files:
            warnings.warn(f"{len(self.files)} colour image(s) made grey (BT.709 luma) for a grey model, e.g. "
                          f"{self.files[0]} (give --colour to train a colour model)", stacklevel=3)


def _read(source, colour, note):
    """A source as float64 in [0, 1]: grey (H, W), or with ``colour`` (H, W, 3)."""
    if isinstance(source, Picture):
        return load(source, colour)
    img = read_image(source, colour=True)
    if colour and img.ndim == 2:
        raise InputError(f"{source}: a grey image; a colour model (--colour) learns from colour (H, W, 3) images")
    if not colour and img.ndim == 3:
        note.files.append(source)
        img = to_grey(img)
    return img


def _fits(img, source, patch):
    if min(img.shape[:2]) < patch:
        what = f"image '{source}'" if isinstance(source, Picture) else str(source)
        raise InputError(f"{what} ({img.shape[0]}×{img.shape[1]}) is smaller than the patch size {patch}")


def training_pairs(images=None, sigma255=25.0, patch=64, per_image=2, seed=0, colour=False, noise="gaussian",
                   looks=4.0):
    """(clean, noisy) patches of ``images`` (files, folders, globs or bundled names, see
    :func:`~.datasets.image_sources`; default: the bundled pictures that are *not* test images) with synthesised
    noise; deterministic in ``seed``. ``colour``: (H, W, 3) patches of colour images; ``noise="speckle"``:
    multiplicative Gamma noise of ``looks``."""
    if noise == "gaussian":
        check_sigma255(sigma255)
        add = lambda clean, s: gaussian_noise(clean, sigma255 / 255.0, seed=s)  # noqa: E731
    elif noise == "speckle":
        add = lambda clean, s: speckle_noise(clean, looks, seed=s)  # noqa: E731
    else:
        raise InputError(f"unknown noise '{noise}'; expected gaussian or speckle")
    check_counts(patch=(patch, 2), per_image=(per_image, 1))
    sources = image_sources(images, colour)
    rng, note, pairs = np.random.default_rng(seed), _GreyNote(), []
    for source in sources:
        img = _read(source, colour, note)
        _fits(img, source, patch)
        for _ in range(per_image):
            r = rng.integers(0, img.shape[0] - patch + 1)
            c = rng.integers(0, img.shape[1] - patch + 1)
            clean = np.array(img[r:r + patch, c:c + patch], order="C")       # a copy: the image is dropped
            pairs.append((clean, add(clean, int(rng.integers(2 ** 31)))))
        del img
    note.say()
    return pairs


def pair_patches(pairs, patch=64, per_image=2, seed=0, colour=False):
    """(clean, noisy) patches of real pairs ``[(noisy path, clean path)]`` (:func:`~.datasets.pair_sources`), each
    cropped at the same place in both images; deterministic in ``seed``. Partners of different shapes are refused,
    naming both files."""
    check_counts(patch=(patch, 2), per_image=(per_image, 1))
    rng, note, out = np.random.default_rng(seed), _GreyNote(), []
    for noisy_path, clean_path in pairs:
        noisy, clean = _read(noisy_path, colour, note), _read(clean_path, colour, note)
        if noisy.shape != clean.shape:
            raise InputError(f"{noisy_path} ({'×'.join(map(str, noisy.shape))}) and {clean_path} "
                             f"({'×'.join(map(str, clean.shape))}): partners of different shapes")
        _fits(clean, clean_path, patch)
        for _ in range(per_image):
            r = rng.integers(0, clean.shape[0] - patch + 1)
            c = rng.integers(0, clean.shape[1] - patch + 1)
            out.append((np.array(clean[r:r + patch, c:c + patch], order="C"),
                        np.array(noisy[r:r + patch, c:c + patch], order="C")))
        del noisy, clean
    note.say()
    return out
