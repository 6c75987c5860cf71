r"""Training data: (clean, noisy) patches — of the bundled pictures that are not test images or of the user's images
(files, folders, globs: :mod:`.datasets`) or of synthetic dead-leaves images (:class:`~.datasets.Synthetic`,
generated when read) with synthesised noise (Gaussian of level σ, or speckle of L looks), or of the user's real
noisy/clean pairs, cropped at the same place in both (no noise synthesised).

Each image is read, its patches cropped (copies) and the image dropped before the next is read, so that memory is
bounded by the patches, not by the data set. A grey model learns from grey images: a colour file is made grey
(:func:`~fem_crossdiff.imaging.files.to_grey`, the conversion of every command), said once; a colour model learns
from colour images only: a grey one is refused by name.

``epoch``: the patches of one epoch of a stochastic training (:func:`~.training.train` with Adam), drawn afresh:
new crops, each turned by one of the eight symmetries of the square (``rot90`` by :math:`k \in \{0,1,2,3\}`
quarter turns, then a left-right flip or not; the same for both images of a real pair) and new noise realisations,
all from ``numpy.random.default_rng([seed, epoch])``: deterministic in (seed, epoch), different between epochs.
Without it (L-BFGS-B's fixed set), the crops of ``default_rng(seed)``, unturned, as before."""
import warnings

import numpy as np

from ..errors import InputError, check_counts
from ..imaging.data import check_sigma255, load
from ..imaging.files import read_image, to_grey
from ..imaging.noise import gaussian_noise, speckle_noise
from ..imaging.synthetic import dead_leaves
from .datasets import Picture, Synthetic, image_sources

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
    """A source as float64 in [0, 1]: grey (H, W), or with ``colour`` (H, W, 3); a :class:`~.datasets.Synthetic`
    one generated (the same image every time it is read)."""
    if isinstance(source, Synthetic):
        return dead_leaves(source.size, seed=source.seed, colour=colour)
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
        what = f"image '{source}'" if isinstance(source, (Picture, Synthetic)) else str(source)
        raise InputError(f"{what} ({img.shape[0]}×{img.shape[1]}) is smaller than the patch size {patch}")


def _rng(seed, epoch):
    """The patches' random generator: of ``seed``, or of ``(seed, epoch)`` (see the module's docstring)."""
    return np.random.default_rng(seed if epoch is None else [int(seed), int(epoch)])


def _cutter(rng, shape, patch, augment):
    """A function cropping the next patch from an image of ``shape`` (and its partner), drawn from ``rng``: its
    place, and with ``augment`` its quarter turns and flip. Returns copies: the image is dropped afterwards."""
    r = int(rng.integers(0, shape[0] - patch + 1))
    c = int(rng.integers(0, shape[1] - patch + 1))
    k, flip = (int(rng.integers(4)), bool(rng.integers(2))) if augment else (0, False)

    def cut(img):
        p = np.rot90(img[r:r + patch, c:c + patch], k, axes=(0, 1))
        return np.array(p[:, ::-1] if flip else p, order="C")
    return cut


def training_pairs(images=None, sigma255=25.0, patch=64, per_image=2, seed=0, colour=False, noise="gaussian",
                   looks=4.0, epoch=None):
    """(clean, noisy) patches of ``images`` (files, folders, globs or bundled names, see
    :func:`~.datasets.image_sources`; default: the bundled pictures that are *not* test images) with synthesised
    noise; deterministic in ``seed`` (and ``epoch``: that epoch's crops, turns, flips and noise, see the module's
    docstring). ``colour``: (H, W, 3) patches of colour images; ``noise="speckle"``: multiplicative Gamma noise of
    ``looks``."""
    if noise == "gaussian":
        check_sigma255(sigma255)
        add = lambda clean, s: gaussian_noise(clean, sigma255 / 255.0, seed=s)  # noqa: E731
    elif noise == "speckle":
        add = lambda clean, s: speckle_noise(clean, looks, seed=s)  # noqa: E731
    else:
        raise InputError(f"unknown noise '{noise}'; expected gaussian or speckle")
    check_counts(patch=(patch, 2), per_image=(per_image, 1))
    sources = image_sources(images, colour)
    rng, note, pairs = _rng(seed, epoch), _GreyNote(), []
    for source in sources:
        img = _read(source, colour, note)
        _fits(img, source, patch)
        for _ in range(per_image):
            clean = _cutter(rng, img.shape, patch, epoch is not None)(img)    # a copy: the image is dropped
            pairs.append((clean, add(clean, int(rng.integers(2 ** 31)))))
        del img
    note.say()
    return pairs


def pair_patches(pairs, patch=64, per_image=2, seed=0, colour=False, epoch=None):
    """(clean, noisy) patches of real pairs ``[(noisy path, clean path)]`` (:func:`~.datasets.pair_sources`), each
    cropped at the same place in both images (and with ``epoch`` turned and flipped alike); deterministic in
    ``seed`` (and ``epoch``). Partners of different shapes are refused,
    naming both files."""
    check_counts(patch=(patch, 2), per_image=(per_image, 1))
    rng, note, out = _rng(seed, epoch), _GreyNote(), []
    for noisy_path, clean_path in pairs:
        noisy, clean = _read(noisy_path, colour, note), _read(clean_path, colour, note)
        if noisy.shape != clean.shape:
            raise InputError(f"{noisy_path} ({'×'.join(map(str, noisy.shape))}) and {clean_path} "
                             f"({'×'.join(map(str, clean.shape))}): partners of different shapes")
        _fits(clean, clean_path, patch)
        for _ in range(per_image):
            cut = _cutter(rng, clean.shape, patch, epoch is not None)
            out.append((cut(clean), cut(noisy)))
        del noisy, clean
    note.say()
    return out
