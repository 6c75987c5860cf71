r"""The blind default, measured: the estimated noise level against the true one, and the learned model the estimate
chooses against the model chosen by the true σ, crop by crop.

What ``fem-crossdiff denoise photo.png out.png`` does without ``--sigma`` is two steps: estimate σ
(:func:`~fem_crossdiff.imaging.noise.estimate_sigma255`), then restore with the learned model for that estimate
(:func:`~fem_crossdiff.learned.estimated_model`). Each crop is measured at every σ of :data:`SIGMAS`: the estimate
σ̂, and the PSNR of the noisy input, of the blind default and of the *σ-matched* model (the same choice made with the
true σ). The crops: the public test crops (:mod:`.testcrops`), held-out crops of every training picture (the most
textured among them: brick, grass, gravel) and partly saturated ones (the top :data:`WHITE_ROWS` of the rows set to
white after the noise, as an over-exposed sky is; PSNR over the other rows). Colour: the colour test crops and
held-out crops of the colour training pictures.

Two further measurements decide how the learned models serve levels they were not trained for:
:func:`colour_below_table` (below the lowest shipped colour level: the grey model on each channel against the colour
model with luma at :math:`\sigma/\sqrt3`) and :func:`between_table` (between two shipped levels of different
structure: the interpolated parameters, :func:`~fem_crossdiff.learned.compatible`, against the nearest level and the
convex combination of the two levels' outputs).

Run: ``python -m fem_crossdiff.evaluation.blind`` (grey, colour and both further tables; ``--quick``: small crops,
three levels).
"""
import math
import time

import numpy as np

from ..fem import denoise
from ..imaging.data import (COLOUR_TEST_IMAGES, COLOUR_TRAIN_IMAGES, TEST_IMAGES, TRAIN_IMAGES, centre_crop, load)
from ..imaging.metrics import psnr
from ..imaging.noise import estimate_sigma255, gaussian_noise
from ..learned import HELDOUT, blind_colour_model, blind_model, estimated_model, served_range, shipped_models

__all__ = ["SIGMAS", "WHITE_ROWS", "blind_crops", "measure_blind", "print_blind", "colour_below_table",
           "between_table", "main"]

#: The noise levels of the measurement (0–255 scale).
SIGMAS = (2, 5, 10, 15, 25, 50, 75)
#: The share of the rows set to white in the saturated crops.
WHITE_ROWS = 0.45


def blind_crops(colour=False, size=256, heldout=128, saturated=("camera", "gravel")):
    """``[(label, clean, white_rows)]``: the (colour) test crops (``size``² centre crops), one held-out crop
    (``heldout``²) of every (colour) training picture at a place drawn with the held-out seed, and partly saturated
    copies of the pictures named in ``saturated`` (grey only; ``white_rows`` rows to set to white, else 0)."""
    rng = np.random.default_rng(HELDOUT["seed"])
    out = [(name, centre_crop(load(name, colour), size), 0)
           for name in (COLOUR_TEST_IMAGES if colour else TEST_IMAGES)]
    for name in (COLOUR_TRAIN_IMAGES if colour else TRAIN_IMAGES):
        img = load(name, colour)
        n = min(heldout, *img.shape[:2])
        r, c = rng.integers(0, img.shape[0] - n + 1), rng.integers(0, img.shape[1] - n + 1)
        out.append((f"{name} (held-out)", np.ascontiguousarray(img[r:r + n, c:c + n]), 0))
    if not colour:
        for label, clean, _ in list(out):
            if label.split(" ")[0] in saturated:
                out.append((f"{label}, {WHITE_ROWS:.0%} white", clean, int(round(WHITE_ROWS * clean.shape[0]))))
    return out


def _noisy(clean, sigma, white, index):
    """The noisy crop (unclipped Gaussian noise of seed ``round(1000 σ) + index``) with its top ``white`` rows set to
    white, and the clean crop the same; the rows PSNR is taken over."""
    noisy = gaussian_noise(clean, sigma / 255.0, seed=int(round(1000 * sigma)) + index)
    clean = clean.copy()
    noisy[:white] = clean[:white] = 1.0
    return clean, noisy, slice(white, None)


def measure_blind(sigmas=SIGMAS, colour=False, crops=None, log=print):
    """Rows ``(crop, σ, σ̂, PSNR input, PSNR blind, PSNR σ-matched, blind model, matched model, σ̂ of the clean
    crop)`` for every crop of
    :func:`blind_crops` (or ``crops``) and level in ``sigmas``. The σ-matched model is the learned model the true σ
    chooses the same way (:func:`~fem_crossdiff.learned.estimated_model`: below the served range the lowest level's);
    the noise of crop ``i`` at level ``σ`` has the seed ``round(1000 σ) + i``."""
    kind = "colour" if colour else "grey"
    crops = blind_crops(colour) if crops is None else crops
    own = [estimate_sigma255(_noisy(clean, 0, white, 0)[1]) for _, clean, white in crops]
    rows = []
    for sigma in sigmas:
        t0 = time.perf_counter()
        for i, (label, clean0, white) in enumerate(crops):
            clean, noisy, rest = _noisy(clean0, sigma, white, i)
            sigma_hat = estimate_sigma255(noisy)
            blind, _ = estimated_model(sigma_hat, kind=kind)
            matched, _ = estimated_model(sigma, kind=kind)
            u_blind = denoise(noisy, blind)
            u_matched = u_blind if blind.stages == matched.stages and type(blind) is type(matched) else \
                denoise(noisy, matched)
            rows.append((label, sigma, sigma_hat, psnr(clean[rest], noisy[rest]), psnr(clean[rest], u_blind[rest]),
                         psnr(clean[rest], u_matched[rest]), blind.description, matched.description, own[i]))
        log(f"  σ {sigma}: {len(crops)} {kind} crops in {time.perf_counter() - t0:.1f} s")
    return rows


def print_blind(rows, out=print):
    """The rows of :func:`measure_blind` as Markdown: per level one table of the crops, then the summary per
    level (mean and largest |σ̂ − σ|, the worst blind − matched and blind − input). "own σ̂": the estimate on the
    clean crop, the picture's own noise (or pixel-scale texture that no patch statistic tells from noise)."""
    for sigma in dict.fromkeys(r[1] for r in rows):
        out(f"\nσ = {sigma}\n")
        out("| crop | own σ̂ | σ̂ | input | blind | σ-matched | blind − matched |")
        out("|---|---|---|---|---|---|---|")
        for r in rows:
            if r[1] == sigma:
                out(f"| {r[0]} | {r[8]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f} "
                    f"| {r[4] - r[5]:+.2f} |")
    out("\n| σ | mean σ̂ | largest \\|σ̂ − σ\\| | worst blind − matched | worst blind − input "
        "| mean input / blind / matched |")
    out("|---|---|---|---|---|---|")
    for sigma in dict.fromkeys(r[1] for r in rows):
        sel = [r for r in rows if r[1] == sigma]
        est = np.array([r[2] for r in sel])
        out(f"| {sigma} | {est.mean():.2f} | {np.abs(est - sigma).max():.2f} | "
            f"{min(r[4] - r[5] for r in sel):+.2f} | {min(r[4] - r[3] for r in sel):+.2f} | "
            f"{np.mean([r[3] for r in sel]):.2f} / {np.mean([r[4] for r in sel]):.2f} / "
            f"{np.mean([r[5] for r in sel]):.2f} |")


def colour_below_table(sigmas=(2, 3.5, 5, 5.5, 6, 6.5, 7, 10, 12.5, 15), crops=None, out=print):
    """Below the lowest shipped colour level: mean PSNR over the colour crops of the grey model for σ on each
    channel against the colour model whose luma is the grey model for :math:`\\sigma/\\sqrt3` (the luma's level
    raised to the lowest served one) and chroma that of the lowest colour level. Returns ``{σ: (grey, colour)}``."""
    from ..model import CHROMA_PARAMETERS, ColourModel
    crops = blind_crops(colour=True) if crops is None else crops
    lowest = min(shipped_models(kind="colour"))
    chroma = blind_colour_model(lowest)
    lo, _ = served_range()
    result = {}
    out("\n| σ | input | grey model per channel | colour, luma at σ/√3 |\n|---|---|---|---|")
    for sigma in sigmas:
        grey = blind_model(sigma)
        luma = blind_model(max(sigma / math.sqrt(3), lo))
        colour = ColourModel(luma, [{**ls, **{n: cs[n] for n in CHROMA_PARAMETERS}}
                                    for ls, cs in zip(luma.stages, chroma.stages)])
        scores = np.array([[psnr(clean, noisy), psnr(clean, denoise(noisy, grey)), psnr(clean, denoise(noisy, colour))]
                           for i, (_, c0, _) in enumerate(crops)
                           for clean, noisy, _ in [_noisy(c0, sigma, 0, i)]]).mean(axis=0)
        result[sigma] = tuple(scores[1:])
        out(f"| {sigma:g} | {scores[0]:.2f} | {scores[1]:.2f} | {scores[2]:.2f} |")
    return result


def between_table(sigmas=(16, 17, 20, 22, 24), crops=None, out=print):
    """Between the shipped levels 15 and 25, whose structures differ: mean PSNR over the grey crops of the nearer
    level (what :func:`~fem_crossdiff.learned.blind_model` serves), of the interpolated parameters after rewriting
    σ 25 in σ 15's functions (``blind_model(σ, refit=True)``, :func:`~fem_crossdiff.learned.compatible`) and of the
    convex combination of the two levels' outputs with the same weights in log σ. Returns ``{σ: (nearest,
    interpolated, outputs combined)}``."""
    below, above = 15, 25
    crops = [c for c in blind_crops() if not c[2]] if crops is None else crops
    a, b = blind_model(below), blind_model(above)
    result = {}
    out("\n| σ | input | nearest level (served) | parameters interpolated (σ 25 refitted) | outputs combined |")
    out("|---|---|---|---|---|")
    for sigma in sigmas:
        t = (math.log(sigma) - math.log(below)) / (math.log(above) - math.log(below))
        nearest, interp = blind_model(sigma), blind_model(sigma, refit=True)
        rows = []
        for i, (_, c0, _) in enumerate(crops):
            clean, noisy, _ = _noisy(c0, sigma, 0, i)
            mix = (1 - t) * denoise(noisy, a) + t * denoise(noisy, b)
            rows.append([psnr(clean, noisy), psnr(clean, denoise(noisy, nearest)), psnr(clean, denoise(noisy, interp)),
                         psnr(clean, mix)])
        m = np.mean(rows, axis=0)
        result[sigma] = tuple(m[1:])
        out(f"| {sigma:g} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} | {m[3]:.2f} |")
    return result


def main(argv=None):
    """``python -m fem_crossdiff.evaluation.blind [--quick] [--only grey|colour|below|between]``."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m fem_crossdiff.evaluation.blind",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64² crops, σ 5, 25, 75 (a smoke run)")
    parser.add_argument("--only", choices=["grey", "colour", "below", "between"], action="append",
                        help="measure only these (default: all)")
    args = parser.parse_args(argv)
    parts = args.only or ["grey", "colour", "below", "between"]
    sigmas = (5, 25, 75) if args.quick else SIGMAS
    size = dict(size=64, heldout=64) if args.quick else {}
    t0 = time.perf_counter()
    for colour in (False, True):
        if ("colour" if colour else "grey") in parts:
            print(f"\n## {'colour' if colour else 'grey'}: the estimate and the blind default")
            print_blind(measure_blind(sigmas, colour, blind_crops(colour, **size), log=lambda *a: None))
    if "below" in parts:
        print("\n## colour at low σ: the grey model on each channel or the colour model, mean PSNR (dB)")
        crops = blind_crops(True, **size)
        for group, chosen in (("held-out colour crops (the choice)", True), ("colour test crops (reported)", False)):
            print(f"\n{group}:")
            colour_below_table((5, 10) if args.quick else (2, 3.5, 5, 5.5, 6, 6.5, 7, 10, 12.5, 15),
                               [c for c in crops if ("held-out" in c[0]) == chosen])
    if "between" in parts:
        print("\n## between σ 15 and σ 25: mean PSNR (dB)")
        between_table((20,) if args.quick else (16, 17, 20, 22, 24), [c for c in blind_crops(**size) if not c[2]])
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
