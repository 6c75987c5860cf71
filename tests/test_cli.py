"""The command line: models listing, denoise end to end, clear errors, outputs never clobbered; 1 vs 2 ranks."""
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from fem_crossdiff.cli import main
from fem_crossdiff.imaging import read_image, write_image
from fem_crossdiff.imaging.metrics import psnr


def test_models_lists_every_model_and_its_parameters(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("heat", "perona-malik", "linear-complex", "nonlinear-complex", "linear-cross", "nonlinear-cross"):
        assert f"\n{name}\n" in "\n" + out
    assert "theta=0.10472" in out


def test_denoise_end_to_end_improves_psnr(tmp_path, noisy_small, capsys):
    clean, noisy = noisy_small
    write_image(tmp_path / "in.npy", noisy)
    rc = main(["denoise", str(tmp_path / "in.npy"), str(tmp_path / "out.npy"), "--model", "nonlinear-complex",
               "--time", "2", "--steps", "4", "--param", "theta=0.05", "--edges", str(tmp_path / "v.png")])
    assert rc == 0
    out = read_image(tmp_path / "out.npy")
    assert out.shape == noisy.shape
    assert psnr(clean, out) > psnr(clean, noisy) + 1.0
    assert read_image(tmp_path / "v.png").max() == 1.0
    assert "steps" in capsys.readouterr().err  # the progress bar


@pytest.mark.parametrize("args, message", [
    (["missing.png", "o.npy"], "missing.png: no such file"),
    (["in.npy", "o.npy", "--model", "bogus"], "unknown model 'bogus'"),
    (["in.npy", "o.npy", "--time", "-1"], "--time must be > 0, got -1"),
    (["in.npy", "o.npy", "--model", "linear-cross", "--param", "d11=-2"], "d11=-2 and d22=1 must be > 0"),
    (["in.npy", "o.npy", "--model", "nonlinear-complex", "--param", "nonsense=1"], "has no parameter 'nonsense'"),
    (["nan.npy", "o.npy"], "nan.npy: contains 1 NaN"),
    (["tiny.npy", "o.npy"], "too small"),
    (["text.png", "o.npy"], "text.png: cannot be read as an image"),
    (["in.npy", "in.npy"], "would overwrite the input"),
    (["in.npy", "exists.npy"], "exists.npy: exists; pass --force"),
])
def test_bad_input_gives_a_clear_error_and_leaves_files_alone(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    np.save("in.npy", np.full((6, 7), 0.5))
    np.save("nan.npy", np.array([[0.0, np.nan], [0.1, 0.2]]))
    np.save("tiny.npy", np.zeros((1, 1)))
    np.save("exists.npy", np.ones((2, 2)))
    Path("text.png").write_text("hello")
    before = {p: Path(p).read_bytes() for p in os.listdir(".")}
    assert main(["denoise", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert {p: Path(p).read_bytes() for p in os.listdir(".")} == before  # nothing written, nothing changed


def test_force_replaces_an_existing_output(tmp_path):
    np.save(tmp_path / "in.npy", np.full((5, 6), 0.25))
    np.save(tmp_path / "out.npy", np.ones((2, 2)))
    assert main(["denoise", str(tmp_path / "in.npy"), str(tmp_path / "out.npy"), "--force", "--quiet",
                 "--model", "heat", "--steps", "2"]) == 0
    assert np.allclose(np.load(tmp_path / "out.npy"), 0.25)


@pytest.mark.parallel
def test_two_ranks_give_the_same_output_as_one(tmp_path, noisy_small, mpirun):
    _, noisy = noisy_small
    write_image(tmp_path / "in.npy", noisy)
    outputs = []
    for n in (1, 2):
        out = tmp_path / f"out{n}.npy"
        mpirun(n, "-m", "fem_crossdiff.cli", "denoise", tmp_path / "in.npy", out, "--model", "nonlinear-cross",
               "--steps", "4", "--quiet")
        outputs.append(np.load(out))
    # one rank: fast path; two ranks: Firedrake's assembly; both FGMRES + block-Jacobi/ILU(0) to rtol 1e-6 per step
    # (fem.solvers.LINEAR_SOLVER; two blocks on two ranks). Equal to that tolerance (4e-7 on the 256² benchmark);
    # tight solves agree to 1e-12 (test_learning)
    assert np.max(np.abs(outputs[0] - outputs[1])) < 2e-6
    assert np.max(np.abs(outputs[0] - noisy)) > 1e-2


def test_bench_prints_a_table(capsys):
    """By default the model denoise runs without --model (the shipped learned model at σ, on the split scheme's fast
    path); every baseline line has its PSNR and the difference to ours beside the speed ratio."""
    assert main(["bench", "--sizes", "16", "24", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "cold, empty kernel cache" in out and "ms/step" in out
    assert lines[0].startswith("fem-crossdiff bench: the learned default (") and "split scheme" in lines[0]
    row = next(line.split() for line in lines if line.strip().startswith("24²"))
    step, seconds, noisy, ours = float(row[2]), float(row[3]), float(row[5]), float(row[6])
    assert step > 0 and seconds > 0 and ours > noisy + 2                          # the learned model restores
    assert next(line for line in lines if line.startswith("  fem-crossdiff ")).endswith(f"PSNR {ours:.2f} dB")
    baselines = [line for line in lines if line.startswith(("  TV-Chambolle ", "  BM3D "))]
    assert baselines and "TV-Chambolle" in baselines[0]
    for line in baselines:
        if "not installed" in line:
            continue
        theirs = float(re.search(r"PSNR (\d+\.\d\d) dB", line).group(1))
        assert re.search(r"\(fem-crossdiff: \d+\.\dx (faster|slower), ([+-]\d+\.\d\d) dB\)", line)
        assert np.isclose(float(re.search(r"([+-]\d+\.\d\d) dB\)", line).group(1)), ours - theirs, atol=0.011)
    for args, message in ((["--sizes", "16", "0"], "--sizes 16 0: expected integers >= 2"),
                          (["--repeats", "0"], "--repeats 0: expected an integer >= 1"),
                          (["--gradient", "--steps", "0"], "--steps 0: expected an integer >= 1")):
        assert main(["bench", *args]) == 2                                  # refused before any timing
        captured = capsys.readouterr()
        assert message in captured.err and "ms/step" not in captured.out


@pytest.mark.parametrize("scheme, checkpoints, labels", [
    ("semi-implicit", ["tape", "2"], ["tape", "sweep:2"]),    # the tape and the reverse sweep with 2 snapshots
    (None, [], ["fast"]),                                     # sigma25 is a split model: its own adjoint
])
def test_bench_gradient_prints_cost_ratios_and_peak_memory(capsys, scheme, checkpoints, labels):
    """Every column measured: the whole gradient's time (its taped forward and adjoint on the tape, '-' where the
    forward is inside the sweep or the split adjoint), both ratios from the printed times and never rounded to 0,
    the peaks of the gradient's own process and of the UFL forward's."""
    args = ["bench", "--gradient", "--sizes", "16", "--repeats", "1"]
    args += (["--scheme", scheme] if scheme else []) + (["--checkpoints", *checkpoints] if checkpoints else [])
    assert main(args) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("16²")]
    assert [r[1] for r in rows] == labels
    for r in rows:
        grad, fast, ufl, by_fast, by_ufl, peak, ufl_peak = map(float, (r[2], *r[5:]))
        assert min(grad, fast, ufl, by_fast, by_ufl) > 0
        if r[1] == "tape":
            taped, adjoint = float(r[3]), float(r[4])
            assert taped > 0 and adjoint > 0 and np.isclose(taped + adjoint, grad, rtol=0, atol=1.5e-4)
        else:
            assert r[3] == r[4] == "-"
        for ratio, forward in ((by_fast, fast), (by_ufl, ufl)):   # times printed to 0.1 ms, ratios to 2 digits
            assert np.isclose(ratio, grad / forward, rtol=0.06 + 5e-5 / grad + 5e-5 / forward, atol=0)
        assert 50 < peak < 24 * 1024 and 50 < ufl_peak < 24 * 1024      # MiB of one process, not KiB or bytes


def test_bench_gradient_refuses_a_reverse_sweep_of_a_split_model_before_timing(capsys):
    assert main(["bench", "--gradient", "--sizes", "16", "--checkpoints", "all"]) == 2
    captured = capsys.readouterr()
    assert "--checkpoints all: the reverse sweep runs the semi-implicit scheme" in captured.err
    assert "--scheme semi-implicit" in captured.err and "16²" not in captured.out


@pytest.mark.parametrize("args, message", [
    (["--sigma", "-3"], "noise level sigma -3 (0-255 scale)"),
    (["--stages", "0"], "--stages 0: expected an integer >= 1"),
    (["--stages", "13", "--steps", "12"], "--stages 13 exceeds --steps 12"),
    (["--maxiter", "0"], "--maxiter 0: expected an integer >= 1"),
    (["--per-image", "0"], "--per-image 0: expected an integer >= 1"),
    (["--patch", "1"], "--patch 1: expected an integer >= 2"),
    (["--psi", "-1"], "--psi -1: expected an integer >= 0"),
    (["--images", "nosuch"], "--images nosuch: no such file or folder, and not a bundled picture"),
])
def test_train_refuses_bad_options_by_name_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "m.json"
    assert main(["train", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []                                   # no model, no checkpoint


def test_train_then_evaluate_from_the_command_line(tmp_path, capsys):
    model = str(tmp_path / "m.json")
    assert main(["train", "--out", model, "--images", "brick", "--patch", "16", "--per-image", "1",
                 "--stages", "1", "--steps", "3", "--centres", "3", "--maxiter", "2", "--modulation", "3",
                 "--checkpoints", "2", "--scheme", "semi-implicit"]) == 0     # the sweep: a finite-element scheme
    saved = json.loads(Path(model).read_text())
    assert saved["h11"]["centres"] == 3 and saved["provenance"]["settings"]["modulation"] == 3
    assert saved["provenance"]["command"].startswith("fem-crossdiff train --out")
    assert saved["provenance"]["final_loss"] <= saved["provenance"]["initial_loss"]
    assert 50 < saved["provenance"]["peak_memory_mb_per_rank"] < 24 * 1024
    assert "peak" in capsys.readouterr().out                       # the progress line reports memory
    with pytest.raises(SystemExit, match="2"):                                     # argparse refuses
        main(["train", "--out", str(tmp_path / "x.json"), "--checkpoints", "0"])
    assert "number of snapshots" in capsys.readouterr().err
    assert main(["train", "--out", model, "--images", "brick"]) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err
    assert main(["evaluate", "--model", model, "--sigma", "25", "--size", "24", "--no-baselines",
                 "--refine", "1"]) == 0
    out = capsys.readouterr().out
    for label in ("noisy", "m.json", "m.json (h/2)", "perona-malik", "camera", "moon"):
        assert label in out
    assert main(["train", "--out", str(tmp_path / "other.json"), "--images", "camera"]) == 2
    assert "are test images" in capsys.readouterr().err


def test_evaluate_reports_tv_tuned_on_training_images_beside_its_per_image_oracle():
    """TV's weight is tuned on training images (like every model; stronger noise, larger weight); the oracle row
    picks the best weight per test image from a grid that contains the tuned one, so it is never below it."""
    from fem_crossdiff.imaging.baselines import tv_weight_for
    from fem_crossdiff.evaluation import evaluate, tuned_tv_weight
    from fem_crossdiff.model import make_model
    assert tuned_tv_weight(15) < tuned_tv_weight(25)
    rows = evaluate({"heat": make_model("heat")}, sigmas=(25,), size=32, classic=False, log=lambda *a: None)
    by = {(r[0], r[1]): r[3] for r in rows}
    images = {r[1] for r in rows}
    assert len(images) == 4 and all(("TV (tuned)", im) in by for im in images)
    assert all(by["TV (oracle)", im] >= by["TV (tuned)", im] - 1e-12 for im in images)
    assert any(by["TV (oracle)", im] > by["TV (tuned)", im] + 1e-3 for im in images)
    rng = np.random.default_rng(0)
    clean = np.kron(rng.random((4, 4)), np.ones((8, 8)))               # piecewise constant, 32²
    weak, strong = ([(clean, clean + s * rng.standard_normal(clean.shape))] for s in (0.05, 0.15))
    (w_weak, _), (w_strong, score) = tv_weight_for(weak), tv_weight_for(strong)
    assert w_weak < w_strong and 20 < score < 40


def test_validate_scores_held_out_crops_per_picture_and_refuses_a_models_own_crops(tmp_path, capsys):
    """``validate`` = mean PSNR of denoise over the held-out crops of each training picture (checked against the
    direct computation); a model whose training chain used the held-out seed is refused by name."""
    from fem_crossdiff.evaluation import validate
    from fem_crossdiff.learning import training_pairs
    from fem_crossdiff.model import make_model, save_model
    from fem_crossdiff.fem import denoise
    heat, pm = make_model("heat", time=1.0, steps=2), make_model("perona-malik", time=1.0, steps=2)
    crops = dict(patch=16, per_image=2, seed=5)
    scores = validate({"heat": heat, "pm": pm}, 25, images=["brick", "horse"], refine=1, log=lambda *a: None,
                      **crops)
    pairs = training_pairs(["brick", "horse"], 25, **crops)
    for label, m in (("heat", heat), ("pm", pm)):
        for r in (0, 1):
            direct = [psnr(c, denoise(n, m, refine=r)) for c, n in pairs]
            assert scores[label][r] == pytest.approx({"brick": np.mean(direct[:2]), "horse": np.mean(direct[2:])},
                                                     rel=1e-12)
    chained = heat.replace(provenance={"settings": {"seed": 0}, "init_provenance": {"settings": {"seed": 5}}})
    with pytest.raises(ValueError, match="trained with --seed 5"):
        validate({"chained": chained}, 25, images=["brick"], **crops)
    save_model(pm, str(tmp_path / "pm.json"))
    save_model(heat, str(tmp_path / "heat.json"))
    assert main(["validate", "--model", str(tmp_path / "heat.json"), str(tmp_path / "pm.json"), "--images",
                 "brick", "horse", "--patch", "16", "--seed", "5"]) == 0
    lines = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines["picture"] == ["heat.json", "pm.json", "last", "−", "first"]
    for picture in ("brick", "horse"):
        assert float(lines[picture][1]) == pytest.approx(scores["pm"][0][picture], abs=0.006)
    mean_heat, mean_pm, diff = map(float, lines["mean"])
    assert diff == pytest.approx(mean_pm - mean_heat, abs=0.011)
    assert main(["validate", "--model", str(tmp_path / "pm.json"), "--images", "brick", "--patch", "999"]) == 2
    assert "smaller than the patch size 999" in capsys.readouterr().err
    for option, value, message in (("--per-image", "0", "--per-image 0: expected an integer >= 1"),
                                   ("--refine", "-1", "refine = -1")):
        assert main(["validate", "--model", str(tmp_path / "pm.json"), option, value]) == 2
        assert message in capsys.readouterr().err


def test_adjoint_study_quick_takes_given_levels_and_refuses_bad_counts_by_name(tmp_path, capsys):
    assert main(["adjoint-study", "--dt-levels", "0"]) == 2
    assert "--dt-levels 0: expected an integer >= 1" in capsys.readouterr().err
    assert main(["adjoint-study", "--quick", "--dt-levels", "2", "--h-levels", "1", "--joint-levels", "1",
                 "--cn-levels", "0", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "adjoint_study_learned-v.json").read_text())
    levels = {series: [(lv["refine"], lv["steps"]) for lv in res[series]] for series in res}
    assert levels == {"dt": [(0, 4), (0, 8)], "h": [(0, 8)], "joint": [(0, 4)], "cn": []}  # h_steps 8: --quick


def test_refinement_study_refuses_an_unknown_image_before_running(tmp_path, capsys):
    assert main(["refinement-study", "--image", "nosuch", "--out", str(tmp_path / "o")]) == 2
    captured = capsys.readouterr()
    assert "unknown image 'nosuch'" in captured.err and "Manufactured solution" not in captured.out


@pytest.mark.parametrize("args, message", [
    (["in.npy", "o.npy", "--edges", "in.npy"], "in.npy: output would overwrite the input in.npy"),
    (["in.npy", "o.npy", "--edges", "in.npy", "--force"], "output would overwrite the input"),
    (["in.npy", "in.npy", "--force"], "output would overwrite the input"),
    (["in.npy", "link/in.npy", "--force"], "output would overwrite the input"),      # through a directory symlink
    (["in.npy", "o.npy", "--edges", "exists.npy"], "exists.npy: exists; pass --force to replace it"),
    (["in.npy", "o.npy", "--edges", "o.npy"], "o.npy: given twice as an output"),
    (["in.npy", "o.gif"], "o.gif: cannot write '.gif' files"),
    (["in.npy", "o.npy", "--edges", "e.gif"], "e.gif: cannot write '.gif' files"),
    (["in.npy", "nodir/o.npy"], "does not exist"),
    (["in.npy", "sub", "--force"], "sub: is a directory"),
])
def test_every_output_is_checked_before_any_work_and_nothing_is_overwritten(tmp_path, monkeypatch, capsys, args,
                                                                             message):
    """--edges obeys the rules of OUT (never the input, never an existing file without --force); suffixes and
    directories are checked before the solve (no progress bar); nothing is written or changed."""
    monkeypatch.chdir(tmp_path)
    np.save("in.npy", np.full((6, 7), 0.5))
    np.save("exists.npy", np.ones((2, 2)))
    os.mkdir("sub")
    os.symlink(".", "link")
    before = {p: Path(p).read_bytes() for p in os.listdir(".") if Path(p).is_file()}
    assert main(["denoise", *args, "--steps", "300"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "300/300 steps" not in err
    assert {p: Path(p).read_bytes() for p in os.listdir(".") if Path(p).is_file()} == before


def test_force_replaces_existing_outputs_including_edges(tmp_path):
    np.save(tmp_path / "in.npy", np.full((5, 6), 0.25))
    for name in ("out.npy", "v.npy"):
        np.save(tmp_path / name, np.ones((2, 2)))
    assert main(["denoise", str(tmp_path / "in.npy"), str(tmp_path / "out.npy"), "--edges", str(tmp_path / "v.npy"),
                 "--force", "--quiet", "--model", "heat", "--steps", "2"]) == 0
    assert np.load(tmp_path / "out.npy").shape == np.load(tmp_path / "v.npy").shape == (5, 6)


def test_an_internal_error_keeps_its_traceback_and_writes_nothing(tmp_path, monkeypatch):
    """Only the project's own input errors become one line; a ValueError from inside (a bug) propagates."""
    import fem_crossdiff.fem as fem

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    monkeypatch.setattr(fem, "denoise", broken)
    np.save(tmp_path / "in.npy", np.full((5, 6), 0.25))
    with pytest.raises(ValueError, match="could not be broadcast"):
        main(["denoise", str(tmp_path / "in.npy"), str(tmp_path / "out.npy"), "--quiet", "--model", "heat"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


def test_evaluate_says_which_model_and_parameters_serve_which_noise_level(tmp_path, capsys):
    """σ = 42 has no shipped model and no tuned parameters: refused by name before anything runs (the nearest ones
    are never substituted); with a given model and without the tuned rows it runs."""
    from fem_crossdiff.learned import shipped_model, shipped_models
    from fem_crossdiff.model import make_model, save_model
    levels = ", ".join(str(s) for s in shipped_models())
    assert main(["evaluate", "--sigma", "15", "42", "--size", "16"]) == 2
    captured = capsys.readouterr()
    assert f"no learned model is shipped for noise level sigma 42 (shipped: {levels})" in captured.err
    assert captured.out == ""                                            # refused before the σ = 15 rows ran
    model = str(tmp_path / "heat.json")
    save_model(make_model("heat", steps=2), model)
    assert main(["evaluate", "--sigma", "42", "--model", model, "--size", "16", "--no-baselines"]) == 2
    assert "no tuned parameters for noise level sigma 42 (tuned: 15, 25)" in capsys.readouterr().err
    assert main(["evaluate", "--sigma", "42", "--model", model, "--size", "16", "--no-baselines",
                 "--no-classic"]) == 0
    assert "heat.json" in capsys.readouterr().out
    for name in ("sigma15.json", "sigmaX.json", "sigma25-old.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    assert shipped_models(tmp_path) == {15: str(tmp_path / "sigma15.json")}
    assert shipped_model(25).endswith("sigma25.json")


def test_the_input_depth_is_kept_and_what_is_lost_is_said(tmp_path, capsys):
    """8-bit in, 8-bit out; 16-bit in, 16-bit out (PNG and TIFF); a float TIFF outside [0, 1] keeps its values;
    float data written to PNG goes to 16 bits, and the command says so."""
    import imageio.v3 as iio
    rng = np.random.default_rng(0)
    grey = rng.random((10, 12))
    iio.imwrite(tmp_path / "a8.png", np.round(255 * grey).astype(np.uint8))
    iio.imwrite(tmp_path / "a16.png", np.round(65535 * grey).astype(np.uint16))
    iio.imwrite(tmp_path / "f.tif", (4 * grey).astype(np.float32))
    np.save(tmp_path / "f.npy", grey)
    run = lambda src, dst: main(["denoise", str(tmp_path / src), str(tmp_path / dst), "--quiet",  # noqa: E731
                                 "--model", "heat", "--steps", "2", "--time", "0.2"])
    for src, dst, dtype in (("a8.png", "o8.png", np.uint8), ("a16.png", "o16.png", np.uint16),
                            ("a16.png", "o16.tif", np.uint16), ("f.tif", "of.tif", np.float32)):
        assert run(src, dst) == 0
        assert iio.imread(tmp_path / dst).dtype == dtype
    assert iio.imread(tmp_path / "of.tif").max() > 2                          # not clipped to [0, 1]
    assert abs(np.round(iio.imread(tmp_path / "o16.png") / 257.0) - iio.imread(tmp_path / "o8.png")).max() <= 1
    capsys.readouterr()
    assert run("f.npy", "of.png") == 0
    assert "float pixels stored as uint16" in capsys.readouterr().err
    assert iio.imread(tmp_path / "of.png").dtype == np.uint16


def test_integer_arrays_through_the_python_api_are_scaled_like_files(noisy_small):
    """A uint8 array is an image in 0..255 (as a PNG's pixels), not values 0..255 to diffuse; an int64 array is
    ambiguous and refused."""
    import fem_crossdiff as fc
    _, noisy = noisy_small
    as8 = np.round(255 * np.clip(noisy, 0, 1)).astype(np.uint8)
    assert np.allclose(fc.denoise(as8, "heat"), fc.denoise(as8 / 255.0, "heat"), atol=1e-12)
    with pytest.raises(fc.ImageError, match="int64 pixels .* are ambiguous"):
        fc.denoise(as8.astype(np.int64), "heat")
