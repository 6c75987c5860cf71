r"""The user's training data: which images ``--images``, ``--pairs`` and ``--val`` name, and how a fraction of them is
held out for validation.

A *source* is an image file's path, a bundled scikit-image picture (:class:`Picture`, a name), or a synthetic
dead-leaves image (:class:`Synthetic`: a seed and a size, generated when it is read by
:func:`~fem_crossdiff.imaging.synthetic.dead_leaves`; ``train --synthetic N`` adds N of them,
:func:`synthetic_sources`). What the user names is resolved before anything is read or written, so that a name
that means nothing is refused at once:

- an existing file is one image (read later by :func:`~fem_crossdiff.imaging.files.read_image`, which refuses what
  it cannot read, naming the file); an existing folder is the image files in it (:data:`IMAGE_SUFFIXES`, not its
  sub-folders, hidden files skipped), in sorted order; a pattern with ``*``, ``?`` or ``[`` is a glob (sorted, a
  folder it matches counts as its images); then a bundled picture's name. A folder without images, a glob matching
  nothing, a test picture and a name that is none of these are refused by name. The same file named twice is used
  once.
- ``--pairs NOISY CLEAN``: two folders are matched by file name without its suffix (``noisy/a.tif`` with
  ``clean/a.png``); a file without a partner, or two files of one name in a folder, is refused by name. Otherwise
  each of NOISY and CLEAN is a file, folder or glob, and the two sorted lists are matched in order: they must be
  equally long.

The images are read one at a time, their patches cropped and the image dropped (:mod:`.pairs`): memory is bounded
by the patches, not by the data set.
"""
import os

import numpy as np

from ..errors import InputError
from ..imaging.data import COLOUR_TEST_IMAGES, COLOUR_TRAIN_IMAGES, TEST_IMAGES, TRAIN_IMAGES
from ..imaging.files import folder_images, image_paths
from ..safeio import file_key, unique_files

__all__ = ["Picture", "Synthetic", "image_sources", "synthetic_sources", "pair_sources", "held_out", "VAL_SEED",
           "SYNTHETIC_SIZE"]

#: The seed of the validation patches and of their synthesised noise: the same validation set for every --seed.
VAL_SEED = 20231
#: The least side of a synthetic image (pixels): ``max(2 * patch, SYNTHETIC_SIZE)``, room for leaves of many sizes
#: around every patch.
SYNTHETIC_SIZE = 128
_SYNTHETIC_KEY = 0x1EAF                    # mixed into --seed for the synthetic images' seeds
_BUNDLED = tuple(dict.fromkeys(TRAIN_IMAGES + COLOUR_TRAIN_IMAGES))


class Picture(str):
    """A bundled scikit-image picture's name (as opposed to a file's path)."""


class Synthetic(str):
    """A synthetic dead-leaves image of side ``size`` drawn from ``seed``
    (:func:`~fem_crossdiff.imaging.synthetic.dead_leaves`, grey or colour as the model): as a string, the call
    that makes it, ``dead_leaves(size=128, seed=...)``, which is how the provenance names it."""

    def __new__(cls, seed, size):
        self = super().__new__(cls, f"dead_leaves(size={int(size)}, seed={int(seed)})")
        self.seed, self.size = int(seed), int(size)
        return self

    def __reduce__(self):                   # copies and pickles (MPI) keep the seed and size
        return Synthetic, (self.seed, self.size)


def synthetic_sources(n, seed, patch):
    """``n`` :class:`Synthetic` images of side ``max(2 * patch, SYNTHETIC_SIZE)``, their seeds derived from
    ``seed`` (the run's ``--seed``) and their number: deterministic, different for every image and every seed."""
    size = max(2 * int(patch), SYNTHETIC_SIZE)
    return [Synthetic(np.random.SeedSequence([int(seed) % 2 ** 32, _SYNTHETIC_KEY, k]).generate_state(1)[0], size)
            for k in range(n)]


def _unique(sources):
    """``sources`` in order, each once (a file however it is named)."""
    return unique_files(sources, key=lambda s: s if isinstance(s, (Picture, Synthetic)) else file_key(s))


def image_sources(specs=None, colour=False, option="--images"):
    """The sources (file paths and :class:`Picture` names) that ``specs`` name: files, folders, globs or bundled
    pictures (see the module's docstring); None or empty: the bundled training pictures (colour ones for
    ``colour``). Sources already resolved (:class:`Picture`, :class:`Synthetic`) are kept as they are."""
    if not specs:
        return [Picture(n) for n in (COLOUR_TRAIN_IMAGES if colour else TRAIN_IMAGES)]
    out, leaked = [], []
    for spec in specs:
        if isinstance(spec, (Picture, Synthetic)):
            out.append(spec)
            continue
        spec = os.fspath(spec)
        paths = image_paths(spec, option)
        if paths is not None:
            out += paths
        elif spec in TEST_IMAGES or spec in COLOUR_TEST_IMAGES:
            leaked.append(spec)
        elif spec in _BUNDLED:
            out.append(Picture(spec))
        else:
            raise InputError(f"{option} {spec}: no such file or folder, and not a bundled picture (bundled: "
                             f"{', '.join(_BUNDLED)})")
    if leaked:
        default = COLOUR_TRAIN_IMAGES if colour else TRAIN_IMAGES
        raise InputError(f"training images {sorted(set(leaked))} are test images; choose from {', '.join(default)} "
                         "or give your own files")
    return _unique(out)


def pair_sources(noisy, clean):
    """``[(noisy path, clean path)]`` of ``--pairs NOISY CLEAN``: two folders matched by file name (without the
    suffix), else two file/folder/glob lists matched in sorted order (see the module's docstring)."""
    noisy, clean = os.fspath(noisy), os.fspath(clean)
    if os.path.isdir(noisy) and os.path.isdir(clean):
        stems = []
        for folder in (noisy, clean):
            by_stem = {}
            for path in folder_images(folder):
                stem = os.path.splitext(os.path.basename(path))[0]
                if stem in by_stem:
                    raise InputError(f"{by_stem[stem]} and {path}: two images of one name in a --pairs folder; "
                                     "partners are matched by name without the suffix")
                by_stem[stem] = path
            stems.append(by_stem)
        n, c = stems
        for mine, other, folder, kind in ((n, c, clean, "clean"), (c, n, noisy, "noisy")):
            missing = sorted(set(mine) - set(other))
            if missing:
                raise InputError(f"{mine[missing[0]]}: no {kind} partner '{missing[0]}.*' in {folder} (--pairs "
                                 "folders are matched by file name)")
        return [(n[s], c[s]) for s in sorted(n)]
    lists = []
    for spec in (noisy, clean):
        paths = image_paths(spec, "--pairs")
        if paths is None:
            raise InputError(f"--pairs {spec}: no such file or folder")
        lists.append(paths)
    a, b = lists
    if len(a) != len(b):
        longer = a if len(a) > len(b) else b
        raise InputError(f"--pairs {noisy} {clean}: {len(a)} noisy and {len(b)} clean images (matched in sorted "
                         f"order: {longer[min(len(a), len(b))]} has no partner)")
    return list(zip(a, b))


def held_out(sources, fraction, seed):
    """``(train, val)``: a share ``fraction`` of ``sources`` held out for validation, chosen by ``seed`` (a
    permutation of NumPy's ``default_rng(seed)``); each list keeps the sources' order."""
    if not (np.isfinite(fraction) and 0 < fraction < 1):
        raise InputError(f"--val-fraction {fraction:g}: expected a number between 0 and 1")
    n = len(sources)
    k = int(round(fraction * n))
    if not 1 <= k < n:
        raise InputError(f"--val-fraction {fraction:g}: holds out {k} of {n} image(s); need at least one for "
                         "validation and one for training")
    val = set(np.random.default_rng(seed).permutation(n)[:k].tolist())
    return ([s for i, s in enumerate(sources) if i not in val], [s for i, s in enumerate(sources) if i in val])
