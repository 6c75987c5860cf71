"""``fem-crossdiff bench``: warm time per step and per whole denoise for several image sizes (the model's scheme or
another), the cold (first, compiling) run separately, and TV-Chambolle / BM3D on the same image in the same run; a
training gradient's cost; many photographs in one command; large images.

The default model is the learned default, the model ``denoise`` runs without ``--model`` at the benchmark's σ (the
shipped learned model of that level, on its own scheme: the split one's fast path), so that the comparison with
TV and BM3D is at the quality a user gets; every time is printed beside its PSNR. Peak memory is that of a process
that did one piece of work alone, read at its end (:func:`~fem_crossdiff.resources.peak_memory_mb`: its own
high-water mark, not the one it inherits from the process that started it)."""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from mpi4py import MPI

from ..errors import InputError
from ..fem import denoise, split_fast_path
from ..imaging.data import centre_crop, load, noisy_pair
from ..imaging.metrics import psnr
from ..imaging.noise import gaussian_noise
from ..learned import blind_model, shipped_model
from ..learning.parametrisation import pack
from ..learning.split_loss import SplitDatasetLoss, uses_split_path
from ..model import load_model, make_model

__all__ = ["run_bench", "run_gradient_bench", "gradient_case", "forward_case", "time_call", "speed_ratio",
           "run_batch_bench", "run_large_bench", "large_case"]


def time_call(fn, repeats):
    """(min, result) of ``repeats`` wall-clock timings of ``fn()``."""
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def speed_ratio(theirs, ours):
    """"3.1x faster" / "2.0x slower": ``ours`` against ``theirs`` (seconds)."""
    return f"{theirs / ours:.1f}x faster" if theirs >= ours else f"{ours / theirs:.1f}x slower"


def _test_image(size, sigma255):
    base = load("camera") if size <= 512 else np.tile(load("camera"), (2, 2))
    clean = centre_crop(base, size)
    return noisy_pair(clean, sigma255, seed=0)


def _bench_subject(model, sigma255):
    """(model, label, Python expression of it for a new process): ``model`` None is the learned default at
    ``sigma255`` (:func:`~fem_crossdiff.learned.blind_model`, what ``denoise`` without ``--model`` runs); else a
    named model or a model file."""
    if model is None:
        m = blind_model(sigma255)
        return m, f"the learned default ({m.description.removeprefix('learned, ')})", f"fc.blind_model({sigma255!r})"
    return make_model(model), model, repr(model)


def run_bench(sizes=(64, 128, 256, 512), model=None, repeats=3, sigma255=25.0, out=print, scheme=None):
    """Per size: ms per step (the evolution alone) and seconds per whole :func:`denoise`, each beside its PSNR, in
    ``scheme`` (None: the model's own); then TV and BM3D on the same image. ``model``: None, the learned default at
    ``sigma255`` (what ``denoise`` runs without ``--model``); or a named model or model file."""
    rank0 = MPI.COMM_WORLD.rank == 0
    out = out if rank0 else (lambda *a, **k: None)
    m, label, expr = _bench_subject(model, sigma255)
    scheme = scheme or m.scheme
    m = m.replace(scheme=scheme)
    split = split_fast_path(m) or uses_split_path(m)        # a user model's UFL compiled for the grid too
    out(f"fem-crossdiff bench: {label}, {scheme} scheme{' (grid arrays, no Firedrake)' if split else ''}, "
        f"{m.steps} steps to T={m.time:g}, σ {sigma255:g}, {MPI.COMM_WORLD.size} rank(s), best of {repeats}")
    if rank0:
        cold, cached = (_first_run_seconds(expr, 256, True, scheme), _first_run_seconds(expr, 256, False, scheme))
        out(f"first denoise of a 256² image in a new process (imports, {'grid' if split else 'mesh'}, compiled "
            f"kernels): cold, empty kernel cache {cold:.1f} s; with the kernel cache on disk {cached:.1f} s")
    clean, noisy = _test_image(sizes[0], sigma255)
    denoise(noisy, m)  # set-up outside the timings below
    components = getattr(m, "components", 2)
    out(f"{'size':>6} {'dofs':>9} {'ms/step':>9} {'denoise s':>10} {'ns/dof/step':>12} {'PSNR in':>8} {'PSNR out':>9}")
    results = {}
    for size in sizes:
        clean, noisy = _test_image(size, sigma255)
        run = _evolution_only(m, noisy, scheme, split)
        t_run, _ = time_call(run, repeats)
        t_all, u = time_call(lambda: denoise(noisy, m), repeats)
        dofs = components * size * size
        per_step = t_run / m.steps
        results[size] = dict(step=per_step, denoise=t_all, psnr=psnr(clean, u), noisy=psnr(clean, noisy))
        out(f"{size:>5}² {dofs:>9d} {1e3 * per_step:>9.1f} {t_all:>10.3f} {1e9 * per_step / dofs:>12.1f} "
            f"{psnr(clean, noisy):>8.2f} {psnr(clean, u):>9.2f}")
    results["baselines"] = _baselines(sizes, sigma255, results, out, rank0, label)
    return results


def _evolution_only(m, noisy, scheme, split):
    """A function running the evolution of ``noisy`` alone (no set-up, no output): the split scheme on its grid
    arrays, or the compiled :class:`~fem_crossdiff.fem.evolution.Evolution` on the image mesh."""
    if split:
        from ..fast.generic import split_scheme
        from ..fast.split import Grid
        grid_scheme = split_scheme(m, Grid(noisy.shape, 1.0))
        grid_scheme.run(noisy)                                      # kernels built outside the timings
        return lambda: grid_scheme.run(noisy)
    from ..fem import image_to_function
    from ..fem.arrays import evolution_for
    ev = evolution_for(noisy.shape, m, 0, scheme, m.time, m.steps, None)
    f = image_to_function(noisy, ev.V)
    return lambda: ev.run(f)


def _first_run_seconds(expr, size, fresh_cache, scheme=None):
    """Wall time of a whole first denoise in a new Python process with the model ``expr`` (a Python expression,
    ``fc`` the package), optionally with empty Firedrake and kernel caches."""
    code = ("import time; t0 = time.perf_counter(); import numpy as np; import fem_crossdiff as fc; "
            f"fc.denoise(np.random.default_rng(0).random(({size}, {size})), {expr}, scheme={scheme!r}); "
            "print(time.perf_counter() - t0)")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if fresh_cache:
            env["FIREDRAKE_CACHE_DIR"] = cache
            env["FEM_CROSSDIFF_CACHE"] = os.path.join(cache, "kernels")
            env.pop("PYOP2_CACHE_DIR", None)
            env.pop("FIREDRAKE_TSFC_KERNEL_CACHE_DIR", None)
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"first-run measurement failed: {proc.stderr[-500:]}")
    return float(proc.stdout.split()[-1])


def _baselines(sizes, sigma255, results, out, rank0, label):
    """TV-Chambolle (its weight tuned on training images where there is one for σ, else 0.1) and (if installed) BM3D
    on the 256² image (or the largest size below it), each time beside its PSNR and the benchmarked model's
    difference in both; returns {method: (seconds, PSNR)}."""
    size = 256 if 256 in sizes else max(sizes)
    clean, noisy = _test_image(size, sigma255)
    if not rank0:
        return {}
    from skimage.restoration import denoise_tv_chambolle
    from .tuned import tuned_tv_weight
    try:
        weight, how = tuned_tv_weight(sigma255), "weight tuned on training images"
    except InputError:
        weight, how = 0.1, "weight 0.1: none tuned for this σ"
    t_tv, u_tv = time_call(lambda: denoise_tv_chambolle(noisy, weight=weight), 3)
    ours = results[size]
    rows = {"TV-Chambolle": (t_tv, psnr(clean, u_tv))}
    try:
        import bm3d
    except ImportError:
        bm3d = None
    if bm3d is not None:
        t_bm, u_bm = time_call(lambda: bm3d.bm3d(noisy, sigma_psd=sigma255 / 255), 1)
        rows["BM3D"] = (t_bm, psnr(clean, u_bm))
    out(f"\nsame {size}² image, same run (noisy input {ours['noisy']:.2f} dB); {label}:")
    out(f"  {'fem-crossdiff':<15} {ours['denoise']:8.3f} s   PSNR {ours['psnr']:.2f} dB")
    for name, (seconds, quality) in rows.items():
        out(f"  {name:<15} {seconds:8.3f} s   PSNR {quality:.2f} dB   (fem-crossdiff: "
            f"{speed_ratio(seconds, ours['denoise'])}, {ours['psnr'] - quality:+.2f} dB)"
            + (f"   {how} {weight:g}" if name == "TV-Chambolle" else "   (the true σ)"))
    if bm3d is None:
        out("  BM3D            not installed (pip install bm3d)")
    return rows


# ------------------------------------------------------------------------------- gradient cost
def _in_own_process(case, args, what):
    """``case(*args)`` (a function of this module returning a JSON-ready dict) in a fresh Python process, so that
    its compilations and its memory are its own: the dict, with ``peak_mb`` the peak of that whole process (imports
    included), read when the case has returned; an internal failure is raised with the child's last lines."""
    code = (f"from fem_crossdiff.evaluation.bench import {case}; from fem_crossdiff.resources import peak_memory_mb; "
            f"import json; r = {case}(*{tuple(args)!r}); print(json.dumps({{**r, 'peak_mb': peak_memory_mb()}}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ratio(x):
    """A cost ratio to two significant digits without rounding a small one to 0.0."""
    return f"{x:.1f}" if x >= 0.95 else f"{x:.2g}"


def run_gradient_bench(sizes=(64, 128, 256), model="sigma25", repeats=2, steps=None, checkpoints=None, out=print,
                       scheme=None):
    """Cost of one training gradient against the forward solve, and peak memory, per image size and way of
    computing it (``checkpoints``: None = pyadjoint tape, taped forward + adjoint; "all" or K = the reverse sweep
    of :mod:`fem_crossdiff.learning.sweep`, keeping every state or K snapshots, its forward inside its time).
    Every gradient runs in its own process, and the reference forward of the UFL (Firedrake's assembly) in
    another one per size, so that each peak is that of one piece of work. Model: a shipped learned
    model (``sigma15``/``sigma25``) or a model JSON; ``steps`` overrides its number of time steps (same final
    time: a longer horizon). ``scheme``: the model's own (None) or another; a split-scheme model's gradient is
    timed on the split scheme's fast path ("fast": :class:`~fem_crossdiff.learning.split_loss.SplitDatasetLoss`, its
    own forward inside its time; ``checkpoints`` ``tape`` adds pyadjoint's tape of its UFL, the reference: about
    3.9 GiB at 128²), a semi-implicit one's by the tape, the sweep keeping all states and 4 snapshots (default
    ``checkpoints``). Returns one row per case: ``gradient`` s, ``taped_forward`` s (the tape only, else None),
    ``forward_fast``, ``forward_ufl`` s, ``peak_mb`` (the gradient's process), ``ufl_peak_mb``."""
    m = _bench_model(model)
    split = uses_split_path(m, scheme)
    if checkpoints is None:
        checkpoints = ("fast",) if split else (None, "all", 4)
    sweeps = [ck for ck in checkpoints if ck not in (None, "fast")]
    if split and sweeps:
        raise InputError(f"bench --gradient --checkpoints {sweeps[0]}: the reverse sweep runs the semi-implicit "
                         f"scheme, and model {model} is timed on the split scheme; add --scheme semi-implicit, "
                         f"or time the split scheme's own adjoint (default) and pyadjoint's tape (tape)")
    if not split and "fast" in checkpoints:
        raise InputError(f"bench --gradient: the 'fast' gradient is the split scheme's; model {model} runs "
                         f"the {scheme or m.scheme} scheme")
    out(f"fem-crossdiff bench --gradient: model {model}, {scheme or 'its own scheme'}, {steps or 'its'} steps, "
        f"one image per gradient, best of {repeats}, one rank, each gradient and each UFL forward its own process")
    out(f"{'size':>6} {'gradient':>10} {'grad s':>8} {'taped fwd':>9} {'adjoint':>8} {'fwd fast s':>10} "
        f"{'fwd UFL s':>9} {'grad/fast':>9} {'grad/UFL':>8} {'peak MiB':>8} {'UFL MiB':>8}")
    rows = []
    for size in sizes:
        ufl = _in_own_process("forward_case", (size, model, repeats, steps, scheme),
                              f"forward benchmark ({size}², UFL)")
        for ck in checkpoints:
            r = _in_own_process("gradient_case", (size, model, repeats, ck, steps, scheme),
                                f"gradient benchmark ({size}², checkpoints={ck!r})")
            row = dict(size=size, checkpoints=ck, **r, forward_ufl=ufl["forward_ufl"], ufl_peak_mb=ufl["peak_mb"])
            rows.append(row)
            label = "tape" if ck is None else ck if ck == "fast" else f"sweep:{ck}"
            taped = "-" if r["taped_forward"] is None else f"{r['taped_forward']:.4f}"
            adjoint = "-" if r["taped_forward"] is None else f"{r['gradient'] - r['taped_forward']:.4f}"
            out(f"{size:>5}² {label:>10} {r['gradient']:>8.4f} {taped:>9} {adjoint:>8} {r['forward_fast']:>10.4f} "
                f"{row['forward_ufl']:>9.4f} {_ratio(r['gradient'] / r['forward_fast']):>9} "
                f"{_ratio(r['gradient'] / row['forward_ufl']):>8} {r['peak_mb']:>8.0f} {row['ufl_peak_mb']:>8.0f}")
    out("grad s: one whole gradient, its forward included; taped fwd + adjoint: its two parts on the tape\n"
        "  ('-': the forward is inside the sweep or the split adjoint); fwd fast: the denoise path (no tape);\n"
        "  fwd UFL: the same model by Firedrake's assembly, the tape's reference; 'sweep:all'/'sweep:K': the reverse\n"
        "  sweep keeping every state / K snapshots; 'fast': the split scheme's adjoint on its grid arrays;\n"
        "  peak MiB: the whole process that computed the gradient (imports included); UFL MiB: that of the UFL forward")
    return rows


def _bench_model(model):
    """A shipped learned model by name (``sigma15``, ``sigma25``, …), a model JSON or a definition
    ``path/to/file.py:Class``."""
    import re
    m = re.fullmatch(r"sigma(\d+)", model)
    return load_model(shipped_model(int(m.group(1)))) if m else make_model(model)


def _gradient_pairs(size):
    clean = centre_crop(load("chelsea"), size)
    return [(clean, gaussian_noise(clean, 25 / 255, seed=0))]


def gradient_case(size, model, repeats, checkpoints, steps=None, scheme=None):
    """Seconds of one image's gradient (best of ``repeats``: ``gradient``, and on the tape its ``taped_forward``)
    and of the forward on the denoise path (``forward_fast``), in this process (run by :func:`run_gradient_bench`
    in a process of its own); ``checkpoints="fast"``: the split scheme's fast path (no Firedrake)."""
    m = _bench_model(model)
    m = m.replace(scheme=scheme or m.scheme)
    pairs = _gradient_pairs(size)
    steps = steps or m.steps
    if checkpoints == "fast":
        loss = SplitDatasetLoss(m, pairs, steps=steps)
    else:
        from ..learning.loss import DatasetLoss
        loss = DatasetLoss(m, pairs, checkpoints=checkpoints, steps=steps)
    x = pack(m)
    loss.loss_and_gradient(x)                          # compile everything outside the timings
    best = (float("inf"), None)
    for _ in range(repeats):
        loss.seconds = dict.fromkeys(loss.seconds, 0.0)
        t0 = time.perf_counter()
        loss.loss_and_gradient(x)
        seconds = time.perf_counter() - t0
        if seconds < best[0]:
            best = (seconds, loss.seconds["taped forward"] if checkpoints is None else None)
    t_fast, _ = time_call(lambda: loss.loss(x), repeats)
    return dict(gradient=best[0], taped_forward=best[1], forward_fast=t_fast, steps=steps)


def forward_case(size, model, repeats, steps=None, scheme=None):
    """Seconds of one image's forward by Firedrake's assembly of the model's UFL (``forward_ufl``: the reference the
    tape records and the fast paths are tested against), in this process."""
    from ..learning.loss import DatasetLoss
    m = _bench_model(model)
    m = m.replace(scheme=scheme or m.scheme)
    steps = steps or m.steps
    ufl = DatasetLoss(m, _gradient_pairs(size), fast=False, steps=steps)
    x = pack(m)
    ufl.loss(x)
    t_ufl, _ = time_call(lambda: ufl.loss(x), repeats)
    return dict(forward_ufl=t_ufl, steps=steps)


# ------------------------------------------------------------------------- many images, large images
def _photo_crops(count, size, colour, sigma255, folder):
    """``count`` noisy ``size``² crops of the bundled training pictures written to ``folder`` as 8-bit PNG (what a
    user's folder of photographs holds); returns their paths and the clean crops."""
    import imageio.v3 as iio
    from ..imaging.data import COLOUR_TRAIN_IMAGES, TRAIN_IMAGES
    pictures = [img for img in (load(n, colour) for n in (COLOUR_TRAIN_IMAGES if colour else TRAIN_IMAGES))
                if min(img.shape[:2]) >= size]
    if not pictures:
        raise InputError(f"--sizes {size}: no bundled training picture is that large (--batch takes crops of them)")
    rng = np.random.default_rng(0)
    paths, cleans = [], []
    for i in range(count):
        img = pictures[i % len(pictures)]
        r, c = (rng.integers(0, n - size + 1) for n in img.shape[:2])
        clean = img[r:r + size, c:c + size]
        noisy = gaussian_noise(clean, sigma255 / 255, seed=i)
        path = os.path.join(folder, f"photo{i:02d}.png")
        iio.imwrite(path, np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8))
        paths.append(path)
        cleans.append(clean)
    return paths, cleans


def run_batch_bench(count=16, size=256, colour=False, sigma255=25.0, out=print, scheme=None):
    """``fem-crossdiff denoise FOLDER --out-dir`` on ``count`` noisy ``size``² photographs (8-bit PNG), as a whole
    process (start-up, σ estimation, the learned default, writing), against BM3D — CBM3D in colour — on the same
    files in one process (reading, denoising, writing), both timed as wall-clock processes. ``scheme``: the learned
    models' own (None) or another (``denoise --scheme``)."""
    out(f"fem-crossdiff bench --batch: {count} {'colour' if colour else 'grey'} photographs {size}², σ {sigma255:g}, "
        f"8-bit PNG, {scheme or 'the models’ own scheme'}, each command a whole process")
    with tempfile.TemporaryDirectory() as work:
        src, dst, ref = (os.path.join(work, d) for d in ("in", "out", "bm3d"))
        for d in (src, dst, ref):
            os.makedirs(d)
        paths, cleans = _photo_crops(count, size, colour, sigma255, src)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "fem_crossdiff.cli", "denoise", src, "--out-dir", dst, "--quiet",
                               *(["--scheme", scheme] if scheme else [])], env=env, capture_output=True, text=True)
        t_ours = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"batch denoise failed: {proc.stderr[-800:]}")
        code = ("import sys, glob, os, numpy as np, imageio.v3 as iio, bm3d\n"
                "for p in sorted(glob.glob(os.path.join(sys.argv[1], '*.png'))):\n"
                "    f = iio.imread(p) / 255.0\n"
                f"    u = (bm3d.bm3d_rgb if f.ndim == 3 else bm3d.bm3d)(f, sigma_psd={sigma255 / 255})\n"
                "    iio.imwrite(os.path.join(sys.argv[2], os.path.basename(p)), "
                "np.round(np.clip(u, 0, 1) * 255).astype(np.uint8))\n")
        t0 = time.perf_counter()
        ref_proc = subprocess.run([sys.executable, "-c", code, src, ref], env=env, capture_output=True, text=True)
        t_bm3d = time.perf_counter() - t0
        import imageio.v3 as iio
        ours = np.mean([psnr(c, iio.imread(os.path.join(dst, os.path.basename(p))) / 255.0)
                        for c, p in zip(cleans, paths)])
        noisy = np.mean([psnr(c, iio.imread(p) / 255.0) for c, p in zip(cleans, paths)])
        out(f"  noisy inputs            mean PSNR {noisy:.2f} dB")
        out(f"  fem-crossdiff denoise   {t_ours:7.1f} s   {t_ours / count:6.2f} s/image   mean PSNR {ours:.2f} dB")
        if ref_proc.returncode != 0 and "No module named 'bm3d'" in ref_proc.stderr:
            out("  BM3D                    not installed (pip install bm3d)")
            return dict(ours=t_ours)
        if ref_proc.returncode != 0:
            raise RuntimeError(f"the BM3D reference run failed:\n{ref_proc.stderr[-800:]}")
        theirs = np.mean([psnr(c, iio.imread(os.path.join(ref, os.path.basename(p))) / 255.0)
                          for c, p in zip(cleans, paths)])
        name = "CBM3D" if colour else "BM3D"
        out(f"  {name:<22}  {t_bm3d:7.1f} s   {t_bm3d / count:6.2f} s/image   mean PSNR {theirs:.2f} dB   "
            f"(fem-crossdiff: {speed_ratio(t_bm3d, t_ours)}, {ours - theirs:+.2f} dB)")
        return dict(ours=t_ours, bm3d=t_bm3d, psnr=ours, psnr_bm3d=theirs)


def large_case(size, colour, sigma255, scheme=None):
    """Seconds and PSNR of one learned denoise of a ``size``² image (tiled above the size :func:`denoise` tiles at),
    in this process (:func:`run_large_bench` runs it in a process of its own and adds that process's peak)."""
    base = load("retina", colour)
    reps = -(-size // min(base.shape[:2]))
    tiled = np.tile(base, (reps, reps, 1) if colour else (reps, reps))
    clean = np.ascontiguousarray(tiled[:size, :size])
    noisy = gaussian_noise(clean, sigma255 / 255, seed=0)
    model = blind_model(sigma255, kind="colour" if colour else "grey")
    t0 = time.perf_counter()
    u = denoise(noisy, model, scheme=scheme)
    seconds = time.perf_counter() - t0
    return dict(seconds=seconds, psnr=psnr(clean, u), noisy=psnr(clean, noisy))


def run_large_bench(sizes=(512, 1024, 2048, 4096), colour=False, sigma255=25.0, out=print, scheme=None):
    """Learned-model seconds per megapixel and peak memory per image size, each size in a process of its own (its
    peak is its own); on the finite-element path images above 512² pixels go tile by tile. ``colour``: colour images
    (the colour model)."""
    out(f"fem-crossdiff bench --large: the learned {'colour' if colour else 'grey'} model, σ {sigma255:g}, "
        f"{scheme or 'its own scheme'}, one rank, each size its own process (start-up excluded)")
    out(f"{'size':>7} {'MP':>6} {'seconds':>9} {'s/MP':>7} {'peak MiB':>9} {'PSNR in':>8} {'PSNR out':>9}")
    rows = []
    for size in sizes:
        r = _in_own_process("large_case", (size, colour, sigma255, scheme), f"large-image benchmark ({size}²)")
        mp = size * size / 1e6
        rows.append(dict(size=size, **r))
        out(f"{size:>6}² {mp:>6.2f} {r['seconds']:>9.1f} {r['seconds'] / mp:>7.1f} {r['peak_mb']:>9.0f} "
            f"{r['noisy']:>8.2f} {r['psnr']:>9.2f}")
    return rows
