r"""Deblurring, inpainting and upscaling on the public test crops, beside the anchors; and the held-out version on
crops of the training pictures that chooses the learned set-ups.

**The cases** (:data:`CASES`), each degraded from the clean crop with a fixed seed (``seed + i`` for image ``i``,
as :func:`~fem_crossdiff.imaging.data.test_set`):

- ``deblur``: Gaussian blur of 1.6 px and motion blur of 15 px at 30° (:func:`~fem_crossdiff.imaging.degrade.blur`,
  mirror boundary), each plus Gaussian noise σ = 2.55 on the 0–255 scale (1 %);
- ``inpaint``: 50 % and 80 % of the pixels missing at random, and scratches with a line of text-like strokes
  (:func:`~fem_crossdiff.imaging.degrade.random_mask`, :func:`~fem_crossdiff.imaging.degrade.scratch_mask`); the
  known pixels noise-free, the missing ones 0 in the input;
- ``upscale``: ×2 and ×4, the input the k×k block means of the clean crop (cut to multiples of k), the
  ground truth the crop.

**The methods** (:func:`methods`): the input as it stands (inpainting: holes at 0; upscaling: each pixel
repeated), the anchors of :mod:`fem_crossdiff.imaging.anchors` (Richardson–Lucy with the oracle count, unsupervised
Wiener, TV deconvolution with the oracle weight; biharmonic and TV inpainting with the oracle weight; bicubic,
Lanczos and TV upscaling with the oracle weight) and **ours**: :func:`fem_crossdiff.fem.deblur` (given the true σ),
:func:`~fem_crossdiff.fem.inpaint`, :func:`~fem_crossdiff.fem.upscale` with their defaults (the shipped learned
models). An *oracle* chooses its parameter on the clean crop: a bound for the method, not a method.

**The measures**: PSNR and SSIM against the clean crop (values clipped to [0, 1]), and the no-reference blur metric
of Crété-Roffet et al. (2007), ``skimage.measure.blur_effect`` (0 sharp, 1 blurred; the clean crops' own value is
printed beside the table): it tells an over-smoothed result from a sharp one where PSNR cannot.

**Held out** (:func:`heldout`): the same cases on the crops ``training_pairs(TRAIN_IMAGES, 0, **HELDOUT)`` (96²
crops of the training pictures, seed 12345, as the denoisers were chosen), mean PSNR per picture, for any
``{label: function(observed, data) -> restored}``: how a learned set-up (λ, steps) is chosen, never on the test
crops.
"""
import time

import numpy as np

from ..errors import InputError
from ..imaging import anchors
from ..imaging.data import COLOUR_TEST_IMAGES, COLOUR_TRAIN_IMAGES, TEST_IMAGES, TRAIN_IMAGES, centre_crop, load
from ..imaging.degrade import blur, downsample, parse_psf, random_mask, scratch_mask
from ..imaging.metrics import psnr, ssim
from ..imaging.noise import gaussian_noise

__all__ = ["TASKS", "CASES", "degrade", "methods", "evaluate_task", "print_task_table", "heldout", "print_heldout"]

#: The noise of the deblurring cases, σ on the 0–255 scale (1 % of the range).
DEBLUR_SIGMA255 = 2.55
#: {task: {case: its degradation}}.
CASES = {
    "deblur": {"gaussian:1.6": {"psf": "gaussian:1.6", "sigma255": DEBLUR_SIGMA255},
               "motion:15,30": {"psf": "motion:15,30", "sigma255": DEBLUR_SIGMA255}},
    "inpaint": {"50 % missing": {"missing": 0.5}, "80 % missing": {"missing": 0.8}, "scratches": {"scratches": True}},
    "upscale": {"×2": {"factor": 2}, "×4": {"factor": 4}},
}
TASKS = tuple(CASES)


def check_task(task):
    if task not in CASES:
        raise InputError(f"--task {task!r}: expected one of {', '.join(TASKS)}")


def degrade(task, case, clean, seed):
    """``(clean, observed, data)`` of one case: ``data`` is the PSF array (deblur), the mask (True = missing) or
    the factor; ``clean`` is cut to multiples of the factor for upscaling."""
    spec = CASES[task][case]
    if task == "deblur":
        psf = parse_psf(spec["psf"])
        return clean, blur(clean, psf) + gaussian_noise(np.zeros_like(clean), spec["sigma255"] / 255.0, seed=seed), psf
    if task == "inpaint":
        shape = clean.shape[:2]
        mask = scratch_mask(shape, seed=seed) if spec.get("scratches") else random_mask(shape, spec["missing"], seed)
        observed = np.where(mask if clean.ndim == 2 else mask[..., None], 0.0, clean)
        return clean, observed, mask
    k = spec["factor"]
    H, W = (s - s % k for s in clean.shape[:2])
    clean = np.ascontiguousarray(clean[:H, :W])
    return clean, downsample(clean, k), k


def _ours(task):
    """The learned restoration of ``task`` as ``function(observed, data)``, or None while it does not exist."""
    try:
        from ..fem import deblur, inpaint, upscale
    except ImportError:                                # not there (yet): the table has no "ours" row
        return None
    fn = {"deblur": deblur, "inpaint": inpaint, "upscale": upscale}[task]
    if task == "deblur":
        return lambda f, psf: fn(f, psf, sigma=DEBLUR_SIGMA255)
    return fn


def methods(task, ours=True):
    """``{label: function(clean, observed, data) -> (restored, parameter or None)}`` of ``task``: the input, the
    anchors and (``ours``) the learned restoration when it exists. ``ours`` may also be ``{label: function(observed,
    data)}`` to measure other set-ups."""
    A = anchors
    out = {}
    if task == "deblur":
        out["blurred input"] = lambda c, f, psf: (f, None)
        out["Richardson–Lucy (oracle)"] = lambda c, f, psf: A.richardson_lucy_oracle(c, f, psf)[:2]
        out["unsupervised Wiener"] = lambda c, f, psf: (A.wiener_unsupervised(f, psf), None)
        out["TV deconv. (oracle)"] = lambda c, f, psf: A.tv_deconvolution_oracle(c, f, psf)[:2]
    elif task == "inpaint":
        out["input (holes at 0)"] = lambda c, f, m: (f, None)
        out["biharmonic"] = lambda c, f, m: (A.biharmonic_inpaint(f, m), None)
        out["TV inpainting (oracle)"] = lambda c, f, m: A.tv_inpaint_oracle(c, f, m)[:2]
    else:
        out["pixels repeated"] = lambda c, f, k: (np.repeat(np.repeat(f, k, axis=0), k, axis=1), None)
        out["bicubic"] = lambda c, f, k: (A.bicubic_upscale(f, k), None)
        out["Lanczos"] = lambda c, f, k: (A.lanczos_upscale(f, k), None)
        out["TV upscaling (oracle)"] = lambda c, f, k: A.tv_upscale_oracle(c, f, k)[:2]
    learned = ({"ours (learned)": _ours(task)} if ours is True else dict(ours or {}))
    for label, fn in learned.items():
        if fn is not None:
            out[label] = (lambda c, f, d, fn=fn: (fn(f, d), None))
    return out


def _crops(size, colour):
    names = COLOUR_TEST_IMAGES if colour else TEST_IMAGES
    return [(name, centre_crop(load(name, colour), size)) for name in names]


def evaluate_task(task, size=256, colour=False, cases=None, images=None, ours=True, seed=0, log=print):
    """Rows ``(case, method, image, PSNR, SSIM, blur_effect, seconds, parameter)`` of ``task`` on the public test
    crops (``colour``: the colour ones; ``images``: a subset by name; ``cases``: a subset of :data:`CASES`), plus a
    row ``(case, "clean", image, inf, 1, blur_effect of the clean crop, 0, None)``. ``log``: a line per image and
    method as it is done."""
    check_task(task)
    cases = list(cases or CASES[task])
    for case in cases:
        if case not in CASES[task]:
            raise InputError(f"case {case!r} of --task {task}: expected one of {', '.join(CASES[task])}")
    crops = _crops(size, colour)
    if images:
        unknown = [n for n in images if n not in dict(crops)]
        if unknown:
            raise InputError(f"image {unknown[0]!r}: expected one of {', '.join(n for n, _ in crops)}")
        crops = [(n, c) for n, c in crops if n in images]
    table = methods(task, ours)
    if ours is True and _ours(task) is None:
        log(f"note: fem_crossdiff.fem.{task} does not exist yet: no 'ours' row")
    rows = []
    for case in cases:
        for i, (name, crop) in enumerate(crops):
            clean, observed, data = degrade(task, case, crop, seed + i)
            rows.append((case, "clean", name, float("inf"), 1.0, anchors.blur_effect(clean), 0.0, None))
            for label, fn in table.items():
                t0 = time.perf_counter()
                u, param = fn(clean, observed, data)
                seconds = time.perf_counter() - t0
                u = np.clip(u, 0.0, 1.0)
                rows.append((case, label, name, psnr(clean, u), ssim(clean, u), anchors.blur_effect(u), seconds,
                             param))
                log(f"{case}, {name} ({i + 1}/{len(crops)}): {label:<26} {rows[-1][3]:6.2f} dB {seconds:7.1f} s")
    return rows


def print_task_table(rows, out=print):
    """Per case: PSNR / SSIM / blur_effect per method (rows) and image (columns), the mean last; then the clean
    crops' blur_effect and the oracles' choices."""
    for case in dict.fromkeys(r[0] for r in rows):
        sel = [r for r in rows if r[0] == case]
        images = list(dict.fromkeys(r[2] for r in sel))
        labels = [m for m in dict.fromkeys(r[1] for r in sel) if m != "clean"]
        width = max(22, *(len(m) + 2 for m in labels))
        out(f"\n{case}: PSNR (dB) / SSIM / blur_effect")
        out(f"{'method':<{width}}" + "".join(f"{im:>25}" for im in images) + f"{'mean':>25}")
        for m in labels:
            cell = {r[2]: r for r in sel if r[1] == m}
            if len(cell) != len(images):
                continue
            vals = [cell[im][3:6] for im in images]
            mean = np.mean(vals, axis=0)
            out(f"{m:<{width}}" + "".join(f"{p:>9.2f} / {s:.3f} / {b:.3f}" for p, s, b in [*vals, mean]))
        clean = {r[2]: r[5] for r in sel if r[1] == "clean"}
        if clean:
            out(f"{'(clean: blur_effect)':<{width}}" + "".join(f"{clean[im]:>25.3f}" for im in images)
                + f"{np.mean(list(clean.values())):>25.3f}")
        chosen = [(r[1], r[2], r[7]) for r in sel if r[7] is not None]
        for m in dict.fromkeys(c[0] for c in chosen):
            out(f"  {m} chose: " + ", ".join(f"{im} {p:.3g}" for mm, im, p in chosen if mm == m))


def heldout(task, learned=None, cases=None, anchors_too=True, colour=False, images=None, patch=96, per_image=2,
            seed=12345):
    """Held-out mean PSNR ``{case: {label: {picture: mean PSNR over its crops}}}`` on ``per_image`` crops of
    ``patch``² of each training picture (``training_pairs(images, 0, patch, per_image, seed)``: the held-out crops
    of the denoisers, :data:`~fem_crossdiff.learned.HELDOUT`), each degraded with seed ``seed + j`` (crop ``j``).
    ``learned``: ``{label: function(observed, data)}`` (default: ours, if it exists); ``anchors_too``: also the
    anchors. Choose a set-up here, never on the test crops."""
    from ..learning.pairs import training_pairs
    check_task(task)
    images = list(images or (COLOUR_TRAIN_IMAGES if colour else TRAIN_IMAGES))
    pairs = training_pairs(images, 0.0, patch=patch, per_image=per_image, seed=seed, colour=colour)
    table = methods(task, learned if learned is not None else True)
    if not anchors_too:
        keep = set(learned) if learned is not None else {"ours (learned)"}
        table = {k: v for k, v in table.items() if k in keep}
    scores = {}
    for case in cases or CASES[task]:
        per = {label: [] for label in table}
        for j, (crop, _) in enumerate(pairs):
            clean, observed, data = degrade(task, case, crop, seed + j)
            for label, fn in table.items():
                per[label].append(psnr(clean, np.clip(fn(clean, observed, data)[0], 0.0, 1.0)))
        scores[case] = {label: dict(zip(images, np.reshape(v, (len(images), -1)).mean(axis=1)))
                        for label, v in per.items()}
    return scores


def print_heldout(scores, out=print):
    """Held-out mean PSNR per case: methods (rows) and the mean over the pictures (the per-picture values are in
    the returned dict)."""
    for case, by_label in scores.items():
        width = max(20, *(len(m) + 2 for m in by_label))
        out(f"\n{case}: held-out mean PSNR (dB) over {len(next(iter(by_label.values())))} training pictures")
        for label, per in by_label.items():
            out(f"{label:<{width}}{np.mean(list(per.values())):>9.2f}")
