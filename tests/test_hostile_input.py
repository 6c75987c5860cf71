"""The command line under careless and hostile use: every bad input, output, parameter, model file and resume file
gets exit status 2, one line naming the problem, and leaves every file that existed byte-for-byte unchanged."""
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fem_crossdiff.cli import main

SHIPPED = str(Path(__file__).resolve().parent.parent / "fem_crossdiff" / "learned" / "sigma25.json")


def _model_file(path, edit=None, digest=False):
    """A small valid model file, optionally edited (then written without its digest, as a hand-made file)."""
    from fem_crossdiff.model import make_model
    d = make_model("nonlinear-cross", steps=2).to_dict()
    if edit:
        edit(d)
    if not digest:
        d.pop("digest")
    Path(path).write_text(json.dumps(d))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with good and bad inputs; the test's command runs inside it."""
    import imageio.v3 as iio
    import tifffile
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.save("in.npy", rng.random((12, 13)))
    np.save("exists.npy", np.ones((2, 2)))
    np.save("nan.npy", np.array([[0.0, np.nan], [0.1, 0.2]]))
    np.save("inf.npy", np.array([[0.0, np.inf], [0.1, 0.2]]))
    np.save("complex.npy", np.ones((4, 4), complex))
    np.save("int64.npy", (255 * rng.random((6, 6))).astype(np.int64))
    np.save("tiny.npy", np.zeros((1, 1)))
    np.save("volume.npy", np.zeros((2, 3, 5)))
    np.save("objects.npy", np.array([[{"a": 1}, None]], dtype=object), allow_pickle=True)
    Path("empty.png").write_bytes(b"")
    iio.imwrite("whole.png", (255 * rng.random((8, 9))).astype(np.uint8))
    Path("truncated.png").write_bytes(Path("whole.png").read_bytes()[:60])
    Path("text.png").write_text("hello")
    with tifffile.TiffWriter("pages.tif") as tif:
        for k in range(3):
            tif.write((255 * rng.random((8, 3))).astype(np.uint8), photometric="minisblack")
    iio.imwrite("anim.gif", (255 * rng.random((3, 8, 9, 3))).astype(np.uint8))
    os.mkdir("folder")
    os.mkdir("folder.json")
    os.symlink(".", "here")
    _model_file("cert_abc.json", lambda d: d.update(certificate="abc"))
    _model_file("stages_int.json", lambda d: d.update(stages=[1]))
    _model_file("span0.json", lambda d: d["g11"].update(span=0))
    _model_file("rho2.json", lambda d: d["stages"][0].update(rho=2.0))
    _model_file("digest.json", lambda d: d["stages"][0].update(d11=2.0), digest=True)
    _model_file("format2.json", lambda d: d.update(format=2))
    from fem_crossdiff.model import ColourModel, make_model
    colour = ColourModel(make_model("nonlinear-cross", steps=2)).to_dict()
    colour["stages"][0]["dc"] = 3.0                                          # edited, the digest kept
    Path("colour_digest.json").write_text(json.dumps(colour))
    Path("list.json").write_text("[1, 2]")
    Path("corrupt.json").write_text("{\"name\": ")
    Path("empty_model.json").write_text("{}")
    return tmp_path


def snapshot(root):
    """{relative path: bytes} of every regular file below ``root`` (symlinks not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                out[os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


DENOISE = [
    # inputs
    (["missing.png", "o.npy"], "missing.png: no such file"),
    (["empty.png", "o.npy"], "empty.png: cannot be read as an image"),
    (["truncated.png", "o.npy"], "truncated.png: cannot be read as an image"),
    (["folder", "o.npy"], "folder: is a directory, expected an image file"),
    (["text.png", "o.npy"], "text.png: cannot be read as an image"),
    (["nan.npy", "o.npy"], "nan.npy: contains 1 NaN or infinite values"),
    (["inf.npy", "o.npy"], "inf.npy: contains 1 NaN or infinite values"),
    (["complex.npy", "o.npy"], "complex.npy: expected real numbers"),
    (["int64.npy", "o.npy"], "int64.npy: int64 pixels"),
    (["tiny.npy", "o.npy"], "too small"),
    (["volume.npy", "o.npy"], "got an array of shape (2, 3, 5)"),
    (["objects.npy", "o.npy"], "objects.npy: cannot be read as an image"),
    (["pages.tif", "o.npy"], "pages.tif: holds 3 pages (a multi-page TIFF)"),
    (["anim.gif", "o.npy"], "anim.gif: holds 3 images"),
    # outputs
    (["in.npy", "in.npy"], "output would overwrite the input"),
    (["in.npy", "in.npy", "--force"], "output would overwrite the input"),
    (["in.npy", "here/in.npy", "--force"], "output would overwrite the input"),
    (["in.npy", "o.npy", "--edges", "in.npy", "--force"], "output would overwrite the input"),
    (["in.npy", "o.npy", "--edges", "o.npy"], "o.npy: given twice as an output"),
    (["in.npy", "exists.npy"], "exists.npy: exists; pass --force to replace it"),
    (["in.npy", "o.npy", "--edges", "exists.npy"], "exists.npy: exists; pass --force to replace it"),
    (["in.npy", "o.gif"], "o.gif: cannot write '.gif' files"),
    (["in.npy", "o.npy", "--edges", "e.gif"], "e.gif: cannot write '.gif' files"),
    (["in.npy", "nowhere/o.npy"], "does not exist"),
    (["in.npy", "folder", "--force"], "folder: is a directory, expected a file name"),
    # parameters
    (["in.npy", "o.npy", "--time", "-1"], "--time must be > 0, got -1"),
    (["in.npy", "o.npy", "--sigma", "25", "--steps", "0"], "steps must be a positive integer, got 0"),
    (["in.npy", "o.npy", "--model", "nonlinear-complex", "--param", "bogus=1"], "has no parameter 'bogus'"),
    (["in.npy", "o.npy", "--param", "theta=0.1"], "--param theta: the learned models take no parameters"),
    (["in.npy", "o.npy", "--sigma", "15", "--model", "heat"], "--sigma chooses the learned model"),
    (["in.npy", "o.npy", "--sigma", "500"], "noise level sigma 500 lies outside the range"),
    (["in.npy", "o.npy", "extra.npy"], "give IN OUT for one image, or --out-dir DIR for several (got 3 paths)"),
    (["in.npy", "o.npy", "--model", "linear-cross", "--param", "d11=-2"], "d11=-2 and d22=1 must be > 0"),
    (["in.npy", "o.npy", "--model", "nonlinear-complex", "--param", "theta=nan"], "theta=nan must be a finite number"),
    (["in.npy", "o.npy", "--sigma", "25", "--param", "steps=2.5"], "steps must be a positive integer, got 2.5"),
    (["in.npy", "o.npy", "--param", "time=2", "--time", "3"], "--param time=2 contradicts --time 3"),
    (["in.npy", "o.npy", "--model", "heat", "--refine", "-1"], "refine must be a non-negative integer, got -1"),
    (["in.npy", "o.npy", "--model", "bogus"], "unknown model 'bogus'"),
    (["in.npy", "o.npy", "--model", SHIPPED, "--steps", "3"], "3 steps would skip 9 of them"),
    (["in.npy", "o.npy", "--model", SHIPPED, "--time", "50"], "trained for the time horizon T = 2"),
    (["in.npy", "o.npy", "--model", SHIPPED, "--scheme", "implicit"], "use a scheme with lagged coefficients"),
    # model files
    (["in.npy", "o.npy", "--model", "folder.json"], "folder.json: is a directory, expected a model .json file"),
    (["in.npy", "o.npy", "--model", "none.json"], "none.json: no such model file"),
    (["in.npy", "o.npy", "--model", "corrupt.json"], "corrupt.json: not a valid model JSON file"),
    (["in.npy", "o.npy", "--model", "list.json"], "list.json: expected a JSON object describing a model"),
    (["in.npy", "o.npy", "--model", "empty_model.json"], "empty_model.json: malformed model description"),
    (["in.npy", "o.npy", "--model", "cert_abc.json"], "cert_abc.json: certificate 'abc' is not a number"),
    (["in.npy", "o.npy", "--model", "stages_int.json"], "stage 0: expected a dictionary of parameters, got 1"),
    (["in.npy", "o.npy", "--model", "span0.json"], "influence span must be a positive number, got 0"),
    (["in.npy", "o.npy", "--model", "rho2.json"], "rho=2 must satisfy |rho| < 1"),
    (["in.npy", "o.npy", "--model", "digest.json"], "digest.json: its contents do not match the digest"),
    (["in.npy", "o.npy", "--model", "format2.json"], "format2.json: unsupported format version 2; expected 1"),
    (["in.npy", "o.npy", "--model", "colour_digest.json"], "colour_digest.json: its contents do not match the"),
]


@pytest.mark.parametrize("args, message", DENOISE, ids=[m.split(":")[0][:40] for _, m in DENOISE])
def test_denoise_refuses_with_one_line_and_changes_nothing(workdir, capsys, args, message):
    before = snapshot(workdir)
    assert main(["denoise", *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fem-crossdiff denoise: error: "), err
    assert message in err[0]
    assert snapshot(workdir) == before


def _tiny_train(out, *more):
    return ["train", "--out", out, "--images", "brick", "--patch", "12", "--per-image", "1", "--stages", "1",
            "--steps", "2", "--centres", "3", "--modulation", "0", *more]


TRAIN = [
    (["--out", "m.txt"], "--out m.txt: the model file must end in .json"),
    (["--out", "nowhere/m.json"], "does not exist"),
    (["--out", "exists.npy.json"], "exists.npy.json: exists; choose another --out"),
    (["--out", "m.json", "--resume"], "m.json.checkpoint: no training state to resume from"),
    (["--out", "empty.json", "--resume"], "empty.json.checkpoint: not a complete training state"),
    (["--out", "nohistory.json", "--resume"], "nohistory.json.checkpoint: not a complete training state"),
    (["--out", "garbled.json", "--resume"], "garbled.json.checkpoint: not a readable training state"),
    (["--out", "earlier.json"], "earlier.json.checkpoint: holds the progress of an earlier run"),
    (["--out", "m.json", "--init", "none.json"], "none.json: no such model file"),
    (["--out", "m.json", "--images", "camera"], "are test images"),
    (["--out", "m.json", "--checkpoints", "tape"], "--checkpoints tape: this model trains for the split scheme"),
    (["--out", "m.json", "--checkpoints", "2"], "--checkpoints 2: this model trains for the split scheme"),
]


@pytest.mark.parametrize("args, message", TRAIN, ids=[m.split(":")[0][:40] for _, m in TRAIN])
def test_train_refuses_with_one_line_and_changes_nothing(workdir, capsys, args, message):
    Path("exists.npy.json").write_text("{}")
    Path("empty.json.checkpoint").write_text("{}")
    Path("nohistory.json.checkpoint").write_text(json.dumps(dict(settings={}, model={}, history=[], elapsed=0,
                                                                 initial_loss=1)))
    Path("garbled.json.checkpoint").write_text("{\"settings\": ")
    Path("earlier.json.checkpoint").write_text("{}")
    before = snapshot(workdir)
    out = args[args.index("--out") + 1]
    rest = [a for i, a in enumerate(args) if a != "--out" and (i == 0 or args[i - 1] != "--out")]
    assert main(_tiny_train(out, "--maxiter", "1", *rest)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fem-crossdiff train: error: "), err
    assert message in err[0]
    assert snapshot(workdir) == before


def test_a_training_run_holds_its_output_and_a_second_one_is_refused(workdir, capsys):
    """Two runs on one --out: the second is refused at once while the first holds OUT.lock (no shared resume file,
    no model lost); afterwards the lock is gone."""
    with open("r.json.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = snapshot(workdir)
        assert main(_tiny_train("r.json", "--maxiter", "1")) == 2
        assert "r.json: another training run is writing it" in capsys.readouterr().err
        assert snapshot(workdir) == before
    os.remove("r.json.lock")
    assert main(_tiny_train("r.json", "--maxiter", "1")) == 0
    assert Path("r.json").exists() and not Path("r.json.lock").exists()


def test_two_concurrent_training_processes_never_both_save(tmp_path):
    """Two processes started together on one --out (the case that used to lose the first model, both saying
    "saved"): one saves, the other is refused by name (by the lock, or by the saved model if it came late)."""
    out = str(tmp_path / "r.json")
    cmd = [sys.executable, "-m", "fem_crossdiff.cli", *_tiny_train(out, "--maxiter", "30", "--patch", "32")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    refused = [err for rc, err in results if rc == 2][0]
    assert "another training run is writing it" in refused or "r.json: exists; choose another --out" in refused
    from fem_crossdiff.model import load_model
    assert load_model(out).trained


def test_evaluate_and_validate_refuse_with_one_line(workdir, capsys):
    for args, message in ((["evaluate", "--sigma", "42"], "no learned model is shipped for noise level sigma 42"),
                          (["validate", "--model", "none.json"], "none.json: no such model file"),
                          (["validate", "--model", "folder.json"], "folder.json: is a directory")):
        before = snapshot(workdir)
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert snapshot(workdir) == before


def test_a_problem_too_large_for_this_machine_is_refused_with_the_estimate(workdir, capsys, monkeypatch):
    """Memory is estimated before the mesh is built: a 256² PNG on the mesh refined three times (4 million
    vertices; large images go tile by tile, a refined mesh does not) is refused on an 8 GiB machine with the
    figures."""
    import imageio.v3 as iio
    from fem_crossdiff.fem import arrays
    iio.imwrite("big.png", (255 * np.random.default_rng(0).random((256, 256))).astype(np.uint8))
    monkeypatch.setattr(arrays, "available_memory", lambda: 8 * 2 ** 30)        # an 8 GiB machine
    before = snapshot(workdir)
    assert main(["denoise", "big.png", "o.png", "--quiet", "--model", "heat", "--refine", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fem-crossdiff denoise: error: "), err
    assert "256×256 pixels on the mesh refined 3 time(s)" in err[0] and "needs about" in err[0], err
    assert "8.0 GiB available" in err[0]
    assert snapshot(workdir) == before
