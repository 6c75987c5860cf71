"""Model selection: held-out PSNR per training picture, on crops of the *training* pictures that no training run
used (other crops, other noise). Every step of the shipped models was chosen this way, never on the test crops."""
import numpy as np

from ..errors import InputError
from ..fem import denoise
from ..imaging.data import COLOUR_TRAIN_IMAGES, TRAIN_IMAGES
from ..imaging.baselines import tv_oracle as tv_oracle_denoise
from ..imaging.metrics import psnr
from ..learned import HELDOUT
from ..learning.pairs import training_pairs
from ..model import load_model

__all__ = ["HELDOUT", "validate", "print_validation"]


def _training_seeds(provenance):
    """The ``--seed`` of every training run in a model's chain (its provenance and the ``init_provenance`` inside)."""
    seeds = []
    while provenance:
        seeds.append(provenance.get("settings", {}).get("seed"))
        provenance = provenance.get("init_provenance")
    return seeds


def validate(models, sigma255, images=None, refine=0, log=print, colour=False, noise="gaussian", looks=10.0,
             tv_oracle=False, **crops):
    """Held-out PSNR, ``{label: [{picture: mean PSNR over its crops}, …]}`` (the list: the pixel mesh, then each
    refinement up to ``refine``) on the crops ``training_pairs(images, sigma255, **HELDOUT)`` (``crops`` overrides
    ``patch``, ``per_image``, ``seed``; ``colour``: of the colour training pictures; ``noise="speckle"``: with
    speckle of ``looks``). Refuses a model trained with the same seed (its own crops). ``tv_oracle``: first a
    reference row, ``"TV (oracle)"``: TV-Chambolle with the weight best on each crop (Gaussian noise only; one
    column: it has no mesh)."""
    crops = {**HELDOUT, **crops}
    if refine < 0:
        raise InputError(f"refine = {refine}; expected 0 (the pixel mesh) or more")
    images = list(images or (COLOUR_TRAIN_IMAGES if colour else TRAIN_IMAGES))
    pairs = training_pairs(images, sigma255, colour=colour, noise=noise, looks=looks, **crops)
    scores = {}
    if tv_oracle:
        if noise != "gaussian":
            raise InputError("the TV-oracle reference is for Gaussian noise; drop it for speckle")
        axis = -1 if colour else None
        psnrs = [psnr(clean, tv_oracle_denoise(clean, noisy, channel_axis=axis)[0]) for clean, noisy in pairs]
        scores["TV (oracle)"] = [dict(zip(images, np.reshape(psnrs, (len(images), -1)).mean(axis=1)))]
    for label, m in models.items():
        m = load_model(m) if isinstance(m, str) else m
        if crops["seed"] in _training_seeds(m.provenance):
            raise InputError(f"model '{label}' was trained with --seed {crops['seed']}: held-out crops need "
                             "another seed")
        scores[label] = []
        for r in range(refine + 1):
            psnrs = [psnr(clean, denoise(noisy, m, refine=r)) for clean, noisy in pairs]
            scores[label].append(dict(zip(images, np.reshape(psnrs, (len(images), -1)).mean(axis=1))))
        log(f"  {label} done")
    return scores


def print_validation(scores, out=print):
    """Held-out PSNR per training picture (rows) and model and mesh (columns), the mean last; with two or more
    models a last column: the last model minus the first on the pixel mesh."""
    labels = list(scores)
    columns = [(x, r) for x in labels for r in range(len(scores[x]))]
    names = [x if r == 0 else f"{x} (h/{2 ** r})" for x, r in columns]
    width = max(18, *(len(n) + 2 for n in names))
    diff = len(labels) > 1
    out(f"{'picture':<22}" + "".join(f"{n:>{width}}" for n in names) + (f"{'last − first':>14}" if diff else ""))
    def value(x, r, im):
        return np.mean(list(scores[x][r].values())) if im == "mean" else scores[x][r][im]
    for im in list(scores[labels[0]][0]) + ["mean"]:
        row = "".join(f"{value(x, r, im):>{width}.2f}" for x, r in columns)
        out(f"{im:<22}{row}" + (f"{value(labels[-1], 0, im) - value(labels[0], 0, im):>+14.3f}" if diff else ""))
