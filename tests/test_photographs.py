"""Real photographs: colour in and out, unknown noise level, many images in one command, large images tile by tile,
speckle."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

import fem_crossdiff as fc
from fem_crossdiff.cli import main
from fem_crossdiff.evaluation import evaluate
from fem_crossdiff.imaging.data import centre_crop, load, noisy_pair, test_set


def test_speckle_noise_has_mean_one_and_variance_one_over_the_looks():
    from fem_crossdiff.imaging.noise import speckle_noise
    u = np.full((600, 600), 0.4)
    for looks in (1.0, 4.0, 10.0):
        n = speckle_noise(u, looks, seed=3) / u
        assert n.min() > 0
        assert abs(n.mean() - 1) < 0.01 and abs(n.var() - 1 / looks) < 0.03 / looks


def test_the_noise_level_is_estimated_within_two_levels_on_the_test_crops():
    """The stated tolerance: |σ̂ − σ| <= 2.5 on the 0–255 scale for every grey test crop at σ 5…50."""
    from fem_crossdiff.imaging.noise import estimate_sigma255
    for sigma in (5, 15, 25, 50):
        errors = [estimate_sigma255(noisy) - sigma for _, _, noisy in test_set(sigma)]
        assert max(map(abs, errors)) <= 2.5, (sigma, errors)
    assert estimate_sigma255(np.full((32, 32), 0.3)) < 1e-9                    # flat: no noise, no warning


def test_the_noise_estimate_does_not_import_scipy_stats_or_skimage_restoration():
    """A denoise that estimates σ does not pay for scipy.stats or skimage.restoration (1.4 s of start-up): the
    estimate's gamma quantile is computed here (tests/test_blind.py checks it against scipy's)."""
    import subprocess
    import sys
    code = ("import sys, numpy as np\nfrom fem_crossdiff.imaging.noise import estimate_sigma255\n"
            "estimate_sigma255(np.random.default_rng(0).random((32, 32)))\n"
            "estimate_sigma255(np.random.default_rng(0).random((64, 64, 3)))\n"
            "print('scipy.stats' in sys.modules, 'skimage.restoration' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_colour_files_round_trip_in_colour_at_their_depth(tmp_path):
    import imageio.v3 as iio
    rng = np.random.default_rng(0)
    rgb = rng.random((18, 20, 3))
    iio.imwrite(tmp_path / "c8.png", np.round(255 * rgb).astype(np.uint8))
    iio.imwrite(tmp_path / "c16.tif", np.round(65535 * rgb).astype(np.uint16))
    for src, dst, dtype in (("c8.png", "o8.png", np.uint8), ("c16.tif", "o16.tif", np.uint16)):
        assert main(["denoise", str(tmp_path / src), str(tmp_path / dst), "--model", "heat", "--steps", "2",
                     "--time", "0.2", "--quiet"]) == 0
        out = iio.imread(tmp_path / dst)
        assert out.shape == (18, 20, 3) and out.dtype == dtype
    assert fc.read_image(tmp_path / "c8.png").ndim == 2                      # the library's default: grey


def test_a_colour_model_restores_colour_as_one_system_and_keeps_its_certificate(tmp_path):
    """The colour model (luma by the family, chroma under luma's edges): shape, improvement, analytic certificate
    cross-checked by sampling, model file round trip."""
    from fem_crossdiff.fem.certify import sampled_ellipticity
    from fem_crossdiff.model import ColourModel
    clean = centre_crop(load("chelsea", colour=True), 48)
    _, noisy = noisy_pair(clean, 25, 1)
    model = ColourModel(fc.load_model(fc.shipped_model(15)))
    u = fc.denoise(noisy, model)
    assert u.shape == noisy.shape and fc.psnr(clean, u) > fc.psnr(clean, noisy) + 5
    assert 0 < model.certificate() <= sampled_ellipticity(model) * (1 + 1e-12)
    fc.save_model(model, tmp_path / "c.json")
    again = fc.load_model(tmp_path / "c.json")
    assert isinstance(again, ColourModel) and np.array_equal(fc.denoise(noisy, again), u)
    d = json.loads((tmp_path / "c.json").read_text())
    d["stages"][0]["dc"] = 9.0
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(fc.ModelError, match="digest"):
        fc.load_model(tmp_path / "bad.json")


def test_a_colour_model_file_made_before_the_chroma_exponent_reads_as_the_model_it_described():
    """A stage without ``pc`` (or ``kappac``) is the model it was written for: exponent 1 (Perona–Malik's rational
    influence), no chroma gradient in the stopping; an exponent p_c <= 0 is refused by name, and p_c != 1 changes
    the output but not the certificate (the floor g_0 bounds g_c for every exponent)."""
    from fem_crossdiff.fem.certify import sampled_ellipticity
    from fem_crossdiff.model import ColourModel, model_from_dict
    clean = centre_crop(load("chelsea", colour=True), 32)
    _, noisy = noisy_pair(clean, 15, 2)
    model = ColourModel(fc.load_model(fc.shipped_model(10)).replace(scheme="split"))
    model = model.with_stages([dict(st, kappac=0.0, pc=1.0) for st in model.stages])
    old = model.to_dict()
    for st in old["stages"]:
        del st["pc"], st["kappac"]
    del old["digest"]
    again = model_from_dict(old)
    assert all(st["pc"] == 1.0 and st["kappac"] == 0.0 for st in again.stages)
    assert np.array_equal(fc.denoise(noisy, again), fc.denoise(noisy, model))
    sharp = model.with_stages([dict(st, pc=4.0) for st in model.stages])
    assert not np.allclose(fc.denoise(noisy, sharp), fc.denoise(noisy, model))
    assert sharp.certificate() == model.certificate() <= sampled_ellipticity(sharp) * (1 + 1e-12)
    with pytest.raises(fc.ModelError, match="stage 0: .*pc=0 must be > 0"):
        model.with_stages([dict(st, pc=0.0) for st in model.stages])


def test_blind_model_serves_shipped_levels_interpolates_between_and_refuses_outside():
    from fem_crossdiff.learned import blind_model, shipped_models
    found = shipped_models()
    for level, path in found.items():
        assert blind_model(level).stages == fc.load_model(path).stages
    levels = sorted(found)
    same = [(a, b) for a, b in zip(levels, levels[1:]) if fc.load_model(found[a]).structure ==
            fc.load_model(found[b]).structure]
    for a, b in same:
        mid = blind_model(np.sqrt(a * b))                                      # half-way in log sigma
        pa, pb = (fc.learning.pack(fc.load_model(found[s])) for s in (a, b))
        assert np.allclose(fc.learning.pack(mid), 0.5 * (pa + pb)) and mid.certificate() > 0
    with pytest.raises(fc.InputError, match="outside the range"):
        blind_model(levels[-1] * 2)


def test_many_images_in_one_command_a_bad_one_is_reported_and_skipped(tmp_path, capsys):
    """Files, a folder and a glob, one start-up; the unreadable file is named, nothing is written for it, the rest
    are restored; the exit status is the number that failed."""
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    for i in range(3):
        np.save(tmp_path / "in" / f"a{i}.npy", 0.5 + 0.05 * rng.standard_normal((20, 22)))
    (tmp_path / "in" / "broken.png").write_text("not an image")
    np.save(tmp_path / "extra.npy", 0.5 + 0.05 * rng.standard_normal((20, 22)))
    rc = main(["denoise", str(tmp_path / "in"), str(tmp_path / "extr*.npy"), "--out-dir", str(tmp_path / "out"),
               "--model", "heat", "--steps", "2"])
    captured = capsys.readouterr()
    assert rc == 1
    assert sorted(os.listdir(tmp_path / "out")) == ["a0.npy", "a1.npy", "a2.npy", "extra.npy"]
    assert "broken.png: cannot be read as an image" in captured.err
    assert "[5/5]" in captured.out and "4 of 5 image(s) restored" in captured.out and "1 failed" in captured.out
    rc = main(["denoise", str(tmp_path / "in" / "a0.npy"), "--out-dir", str(tmp_path / "out"), "--model", "heat"])
    assert rc == 1 and "a0.npy: exists; pass --force" in capsys.readouterr().err       # never replaced


def test_the_learned_default_estimates_the_noise_and_restores_grey_and_colour(tmp_path, capsys):
    name, clean, noisy = test_set(25, size=48)[0]
    np.save(tmp_path / "grey.npy", noisy)
    assert main(["denoise", str(tmp_path / "grey.npy"), str(tmp_path / "g.npy"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "learned" in out and "estimated" in out
    assert fc.psnr(clean, np.load(tmp_path / "g.npy")) > fc.psnr(clean, noisy) + 4
    clean3 = centre_crop(load("chelsea", colour=True), 40)
    _, noisy3 = noisy_pair(clean3, 25, 2)
    np.save(tmp_path / "colour.npy", noisy3)
    assert main(["denoise", str(tmp_path / "colour.npy"), str(tmp_path / "c.npy"), "--sigma", "25", "--quiet"]) == 0
    assert "given" in capsys.readouterr().out
    restored = np.load(tmp_path / "c.npy")
    assert restored.shape == (40, 40, 3) and fc.psnr(clean3, restored) > fc.psnr(clean3, noisy3) + 4


@pytest.mark.parametrize("scheme", ["semi-implicit", "split"])
def test_a_large_image_tile_by_tile_equals_the_whole_image_to_solver_tolerance(scheme):
    """Windows of 100 px with 32-px margins on a 150×230 crop: the cores' results equal one solve of the whole (the
    finite-element path and the split scheme's grid arrays alike)."""
    clean = centre_crop(load("hubble_deep_field"), 400)[:150, :230]
    _, noisy = noisy_pair(clean, 25, 0)
    model = fc.load_model(fc.shipped_model(25))
    whole = fc.denoise(noisy, model, tile=0, scheme=scheme)
    tiled = fc.denoise(noisy, model, tile=100, scheme=scheme)
    assert not np.array_equal(tiled, whole)                            # the windows did run
    assert np.abs(tiled - whole).max() < 1e-5
    assert np.abs(whole - noisy).max() > 0.05


@pytest.mark.parallel
@pytest.mark.parametrize("scheme,tile", [("semi-implicit", 100), ("split", 100), ("split", 0)])
def test_two_ranks_give_the_same_image(tmp_path, mpirun, scheme, tile):
    """Tile by tile (windows dealt out over the ranks) or, on the split scheme, whole: 1 and 2 ranks, same pixels."""
    clean = centre_crop(load("hubble_deep_field"), 400)[:150, :230]
    _, noisy = noisy_pair(clean, 25, 0)
    np.save(tmp_path / "in.npy", noisy)
    script = tmp_path / "run.py"
    script.write_text("import sys, numpy as np, fem_crossdiff as fc\nfrom mpi4py import MPI\n"
                      "u = fc.denoise(np.load(sys.argv[1]), fc.load_model(fc.shipped_model(25)), "
                      f"tile={tile}, scheme={scheme!r})\n"
                      "if MPI.COMM_WORLD.rank == 0:\n    np.save(sys.argv[2], u)\n")
    for n in (1, 2):
        mpirun(n, script, tmp_path / "in.npy", tmp_path / f"u{n}.npy")
    assert np.array_equal(np.load(tmp_path / "u1.npy"), np.load(tmp_path / "u2.npy"))


@pytest.mark.parallel
def test_many_images_on_two_ranks_are_dealt_out_and_equal_one_rank(tmp_path, mpirun):
    """Under ``mpiexec -n 2`` each rank restores its own files alone: every file once, the same pixels as one rank."""
    rng = np.random.default_rng(1)
    (tmp_path / "in").mkdir()
    for i in range(3):
        np.save(tmp_path / "in" / f"a{i}.npy", 0.5 + 0.05 * rng.standard_normal((20, 22)))
    for n in (1, 2):
        (tmp_path / f"out{n}").mkdir()
        proc = mpirun(n, "-m", "fem_crossdiff.cli", "denoise", tmp_path / "in", "--out-dir", tmp_path / f"out{n}",
                      "--model", "nonlinear-cross", "--steps", "3")
        assert proc.stdout.count(" -> ") == 3 and "3 of 3 image(s) restored" in proc.stdout
    for i in range(3):
        assert np.array_equal(np.load(tmp_path / "out1" / f"a{i}.npy"), np.load(tmp_path / "out2" / f"a{i}.npy"))


def test_colour_training_learns_the_chroma_block_only_and_refuses_a_grey_start(tmp_path):
    """``train --colour`` without ``--init`` starts from the grey models' luma for σ/√3 and the default chroma; the
    luma block stays frozen, the chroma parameters move, the loss decreases and the saved model is certified."""
    from fem_crossdiff.learning.training import colour_start, train
    from fem_crossdiff.model import CHROMA_PARAMETERS
    out = str(tmp_path / "c.json")
    train(out, images=["chelsea"], sigma255=25, patch=24, per_image=1, maxiter=2, colour=True, log=lambda *a: None)
    start, model = colour_start(25), fc.load_model(out)
    assert model.channels == 3 and model.certificate() > 0
    prov = model.provenance
    assert prov["final_loss"] < prov["initial_loss"]
    for s0, s1 in zip(start.stages, model.stages):
        assert all(np.array_equal(np.asarray(s0[n]), np.asarray(s1[n])) for n in start.luma.parameter_names)
    assert any(s0[n] != s1[n] for s0, s1 in zip(start.stages, model.stages) for n in CHROMA_PARAMETERS)
    with pytest.raises(fc.InputError, match="a colour model; give --colour"):
        train(str(tmp_path / "a.json"), init=out, images=["chelsea"], patch=24, per_image=1, maxiter=1,
              log=lambda *a: None)
    with pytest.raises(fc.InputError, match="a grey model; drop --colour"):
        train(str(tmp_path / "b.json"), init=fc.shipped_model(25), images=["chelsea"], patch=24, per_image=1,
              maxiter=1, colour=True, log=lambda *a: None)
    assert not any(p.name.startswith(("a.json", "b.json")) for p in tmp_path.iterdir())      # nothing left behind


def test_bench_batch_and_large_run_end_to_end(capsys):
    """The photograph benchmarks at toy sizes: the batch command restores every file better than its noisy input
    (and BM3D, when installed, on the same files); the large-image rows report seconds, s/MP, peak memory."""
    from fem_crossdiff.evaluation.bench import run_batch_bench, run_large_bench
    r = run_batch_bench(count=2, size=48, out=print)
    out = capsys.readouterr().out
    noisy, ours = (float(line.split("mean PSNR")[1].split()[0]) for line in out.splitlines()
                   if line.strip().startswith(("noisy inputs", "fem-crossdiff denoise")))
    assert ours > noisy + 3 and r["ours"] > 0
    rows = run_large_bench(sizes=(40,), out=print)
    assert rows[0]["psnr"] > rows[0]["noisy"] + 3 and rows[0]["peak_mb"] > 0 and rows[0]["seconds"] > 0
    assert "s/MP" in capsys.readouterr().out


def test_speckle_end_to_end_train_validate_evaluate_denoise(tmp_path, capsys):
    """``--noise speckle`` through every command at toy size: training on speckled patches lowers its loss,
    validation and the test-crop evaluation name the looks and beat the noisy input, and ``denoise --noise speckle``
    takes the shipped speckle model."""
    from fem_crossdiff.imaging.noise import speckle_noise
    out = tmp_path / "s.json"
    assert main(["train", "--out", str(out), "--noise", "speckle", "--looks", "10", "--images", "brick",
                 "--patch", "24", "--per-image", "1", "--stages", "2", "--steps", "2", "--centres", "4",
                 "--maxiter", "2"]) == 0
    prov = fc.load_model(out).provenance
    assert prov["final_loss"] < prov["initial_loss"] and prov["settings"]["noise"] == "speckle"
    assert main(["validate", "--model", fc.shipped_model(10, kind="speckle"), "--noise", "speckle",
                 "--images", "brick", "--patch", "32"]) == 0
    assert "speckle of 10 looks" in capsys.readouterr().out
    rows = evaluate(sigmas=[10], size=40, noise="speckle", classic=False, baselines=False, log=lambda *a: None)
    by_method = {}
    for method, _, _, value, _, _ in rows:
        by_method.setdefault(method, []).append(value)
    assert np.mean(by_method["learned"]) > np.mean(by_method["noisy"]) + 3, by_method
    clean = centre_crop(load("camera"), 40)
    np.save(tmp_path / "scan.npy", speckle_noise(clean, 10, seed=0))
    assert main(["denoise", str(tmp_path / "scan.npy"), str(tmp_path / "u.npy"), "--noise", "speckle",
                 "--quiet"]) == 0
    assert "learned speckle model for 10 looks" in capsys.readouterr().out
    assert fc.psnr(clean, np.load(tmp_path / "u.npy")) > fc.psnr(clean, np.load(tmp_path / "scan.npy")) + 1
