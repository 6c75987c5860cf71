"""``denoise`` on many files, in parallel and at the limits: no output is ever an input, two inputs never share an
output (refused before any work, in one line naming them), a file given twice is restored once, a missing --out-dir
is created only once the command is accepted, options without effect are refused, ``refine`` and ``steps`` are
bounded in the library, memory counts the whole image, and under ``mpiexec`` a failure on one rank never leaves the
other waiting (every subprocess has a timeout: a hang fails the test)."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fem_crossdiff as fc
from fem_crossdiff.cli import main
from test_hostile_input import snapshot

#: Seconds any MPI run of these tests may take: a run that hangs fails instead of hanging the suite.
TIMEOUT = 120


def _png(path, seed=0, shape=(20, 24)):
    import imageio.v3 as iio
    rng = np.random.default_rng(seed)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, (128 + 20 * rng.standard_normal(shape)).clip(0, 255).astype(np.uint8))


def _refused(capsys, args, message):
    """``denoise ARGS`` exits 2 with one line holding ``message``; returns that line."""
    assert main(["denoise", *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fem-crossdiff denoise: error: "), err
    assert message in err[0], err
    return err[0]


@pytest.fixture
def batch(tmp_path, monkeypatch):
    """E: x.png and x.bmp (whose result would be x.png); F: x.png and x.tif; a/x.png and b/x.png; x.PNG beside x.png
    (c/), X.png beside x.png (d/); y.jpg beside y.png (g/); D, empty."""
    import tifffile
    monkeypatch.chdir(tmp_path)
    for p in ("E/x.png", "E/x.bmp", "F/x.png", "a/x.png", "b/x.png", "c/x.PNG", "c/x.png", "d/X.png", "d/x.png",
              "g/y.png", "g/y.jpg"):
        _png(p, seed=len(p) + ord(p[0]))
    os.mkdir("D")                                                         # an empty output folder
    tifffile.imwrite("F/x.tif", (255 * np.random.default_rng(5).random((20, 24))).astype(np.uint8))
    return tmp_path


# -- item 1: an output is never an input, with or without --force, also across the batch -----------------------------

@pytest.mark.parametrize("args", [
    ["E", "--out-dir", "E", "--force"],                                   # x.bmp's result would replace E/x.png
    ["F/x.png", "F/x.tif", "--out-dir", "F", "--format", "tif", "--force"],   # x.png's result would replace F/x.tif
    ["F/x.png", "F/x.tif", "--out-dir", "F/../F", "--format", "tif"],
    ["F/x.tif", "a/x.png", "--out-dir", "F", "--format", "tif", "--force"],   # a/x.png's would replace F/x.tif
])
def test_an_output_that_is_any_input_refuses_the_whole_batch(batch, capsys, args):
    before = snapshot(batch)
    line = _refused(capsys, args, "output would overwrite the input")
    assert "pass --force" not in line
    assert snapshot(batch) == before


def test_without_force_the_advice_to_force_is_given_only_when_forcing_loses_nothing(batch, capsys):
    """``E --out-dir E``: x.bmp's result would be E/x.png, an input: refused as such (it used to say "pass --force",
    advice to lose it). Where forcing replaces only an earlier result, the advice stays, and --force does just that."""
    before = snapshot(batch)
    line = _refused(capsys, ["E", "--out-dir", "E"], "output would overwrite the input")
    assert "pass --force" not in line and snapshot(batch) == before
    os.mkdir("out")
    _png("out/x.png")
    before = snapshot(batch)
    assert main(["denoise", "E/x.png", "--out-dir", "out", "--quiet", "--model", "heat"]) == 1       # one failed
    assert "out/x.png: exists; pass --force to replace it" in capsys.readouterr().err
    assert snapshot(batch) == before
    assert main(["denoise", "E/x.png", "--out-dir", "out", "--force", "--quiet", "--model", "heat"]) == 0
    assert snapshot(batch)["out/x.png"] != before["out/x.png"]                 # only the earlier result replaced
    assert {k: v for k, v in snapshot(batch).items() if k != "out/x.png"} == {
        k: v for k, v in before.items() if k != "out/x.png"}


# -- item 2: output-name collisions are refused before any work, naming the inputs -----------------------------------

@pytest.mark.parametrize("args, message", [
    (["a/x.png", "b/x.png", "--out-dir", "D", "--force"], "D/x.png: would be the result of each of a/x.png, b/x.png"),
    (["a", "b", "--out-dir", "D"], "D/x.png: would be the result of each of a/x.png, b/x.png"),
    (["g/y.png", "g/y.jpg", "--out-dir", "D", "--format", "png", "--force"], "drop --format"),
    (["E", "--out-dir", "D"], "D/x.png: would be the result of each of E/x.bmp, E/x.png"),
    (["c", "--out-dir", "D"], "would be the result of each of c/x.PNG, c/x.png"),
    (["d", "--out-dir", "D", "--force"], "names equal but for case are one file on some file systems"),
])
def test_two_inputs_with_one_output_name_are_refused_before_any_work(batch, capsys, args, message):
    before = snapshot(batch)
    line = _refused(capsys, args, message)
    assert "separate runs" in line
    assert snapshot(batch) == before and os.listdir("D") == []               # nothing written


def test_the_same_file_given_twice_is_restored_once(batch, capsys):
    """Another spelling, a symlinked folder and a hard link name one file: one job, one result."""
    os.symlink("a", "link")
    os.link("a/x.png", "hard.png")
    os.mkdir("H")
    assert main(["denoise", "a/x.png", "./a/x.png", "a/../a/x.png", "link/x.png", "--out-dir", "D", "--quiet",
                 "--model", "heat", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 image(s) restored" in out and os.listdir("D") == ["x.png"]
    assert main(["denoise", "a/x.png", "hard.png", "--out-dir", "H", "--quiet", "--model", "heat"]) == 0
    assert "1 of 1 image(s) restored" in capsys.readouterr().out and os.listdir("H") == ["x.png"]


# -- item 13: a missing --out-dir is created, after every other check -------------------------------------------------

def test_the_readme_batch_creates_its_output_directory(batch, capsys):
    """``denoise shots/ 'more/*.tif' --out-dir clean/``: clean/ (and a missing parent) made, every file restored."""
    import tifffile
    _png("shots/s1.png", 1)
    _png("shots/s2.png", 2)
    os.mkdir("more")
    tifffile.imwrite("more/m1.tif", (255 * np.random.default_rng(3).random((20, 24))).astype(np.uint8))
    assert main(["denoise", "shots/", "more/*.tif", "--out-dir", "clean/", "--sigma", "20", "--quiet"]) == 0
    assert sorted(os.listdir("clean")) == ["m1.tif", "s1.png", "s2.png"]
    assert main(["denoise", "shots/s1.png", "--out-dir", "new/deeper", "--quiet", "--sigma", "20"]) == 0
    assert os.listdir("new/deeper") == ["s1.png"]
    capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["a/x.png", "b/x.png", "--out-dir", "clean"], "would be the result of each of"),
    (["a/x.png", "--out-dir", "clean", "--noise", "speckle", "--sigma", "25"], "--noise speckle it has no effect"),
    (["a/x.png", "--out-dir", "clean", "--model", "none.json"], "none.json: no such model file"),
    (["a/x.png", "--out-dir", "a/x.png/clean"], "a/x.png is not a directory"),
    (["a/x.png", "--out-dir", "a/x.png"], "--out-dir a/x.png: is a file, expected a directory"),
    (["nothing/*.png", "--out-dir", "clean"], "'nothing/*.png': matches no file"),
])
def test_a_refused_batch_creates_no_output_directory(batch, capsys, args, message):
    before = snapshot(batch)
    _refused(capsys, args, message)
    assert snapshot(batch) == before and not os.path.exists("clean")


# -- item 12: options without effect; a user's model file imported only once the outputs are accepted -----------------

@pytest.mark.parametrize("args, message", [
    (["--noise", "speckle", "--sigma", "25"], "--sigma 25 is the level of Gaussian noise; with --noise speckle it has "
                                              "no effect (drop one)"),
    (["--model", "heat", "--noise", "speckle"], "--noise speckle chooses the learned model; with --model it has no "
                                                "effect (drop one)"),
    (["--model", "heat", "--noise", "gaussian"], "--noise gaussian chooses the learned model"),
    (["--format", "tif"], "--format tif names the results' format with --out-dir"),
])
def test_an_option_without_effect_is_refused_by_name(batch, capsys, args, message):
    before = snapshot(batch)
    _refused(capsys, ["a/x.png", "o.png", *args], message)
    assert snapshot(batch) == before


def test_a_user_model_file_is_not_imported_before_an_existing_output_is_refused(batch, capsys):
    Path("mine.py").write_text("from pathlib import Path\nPath('imported').write_text('yes')\n"
                               "from fem_crossdiff.model import UFLModel\n\n\nclass Mine(UFLModel):\n    pass\n")
    _png("exists.png")
    _refused(capsys, ["a/x.png", "exists.png", "--model", "mine.py:Mine"], "exists.png: exists; pass --force")
    _refused(capsys, ["a", "b", "--out-dir", "D", "--model", "mine.py:Mine"], "would be the result of each of")
    assert not os.path.exists("imported")


# -- item 10: refine, item 8: steps and memory, in the library (the command line inherits them) -----------------------

@pytest.mark.parametrize("refine", [-1, 1.5, True, float("nan")])
def test_refine_is_refused_by_name_in_the_library(refine):
    noisy = np.random.default_rng(0).random((12, 14))
    for model in (fc.load_model(fc.shipped_model(25)), "heat"):            # the split fast path and the FEM path
        with pytest.raises(fc.InputError, match="refine must be a non-negative integer, got"):
            fc.denoise(noisy, model, refine=refine)


def test_refine_minus_one_on_the_command_line_with_the_learned_default(batch, capsys):
    before = snapshot(batch)
    _refused(capsys, ["a/x.png", "o.png", "--refine", "-1"], "refine must be a non-negative integer, got -1")
    _refused(capsys, ["a/x.png", "o.png", "--sigma", "25", "--refine", "-1"], "refine must be a non-negative integer")
    assert snapshot(batch) == before


def test_steps_beyond_the_bound_are_refused_at_once(batch):
    """``--steps 1000000000`` used to run for ever (here: past a timeout that fails the test); now one line, in the
    library (the split fast path and the finite-element path alike)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "fem_crossdiff.cli", "denoise", "a/x.png", "o.png", "--steps",
                               "1000000000"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("--steps 1000000000 ran on")
    assert proc.returncode == 2 and "error: steps 1000000000: at most" in proc.stderr, proc.stderr
    assert not os.path.exists("o.png")
    noisy = np.random.default_rng(0).random((12, 14))
    for model in ("heat", fc.load_model(fc.shipped_model(25))):
        with pytest.raises(fc.InputError, match=f"steps {10 ** 9}: at most"):
            fc.denoise(noisy, model, steps=10 ** 9)


def test_the_memory_check_counts_the_whole_image_not_one_window(monkeypatch):
    """A machine whose memory holds one window's solve but not the whole image's arrays beside it: refused before
    any window is solved, with the whole image's size (it used to run on, into the out-of-memory killer)."""
    from fem_crossdiff.fem import arrays
    model = fc.load_model(fc.shipped_model(25))
    noisy = np.clip(0.5 + 0.1 * np.random.default_rng(0).standard_normal((300, 300)), 0, 1)
    window = arrays.memory_estimate((100, 100), 0, model, split=True)          # at least one 100-px window's
    whole = 3 * noisy.nbytes                                                  # at least the image, u and v
    monkeypatch.setattr(arrays, "available_memory", lambda: (window + 0.5 * whole) / 0.9)
    with pytest.raises(fc.InputError, match=r"image of 300×300 pixels: needs about .* GiB per rank"):
        fc.denoise(noisy, model, tile=100)
    monkeypatch.setattr(arrays, "available_memory", lambda: (window + 10 * whole) / 0.9)
    assert fc.denoise(noisy, model, tile=100).shape == noisy.shape           # enough for both: it runs


def test_a_huge_file_is_refused_from_its_header_before_decoding(batch, capsys, monkeypatch):
    """A 3000×4000 TIFF (12 MP, 0.5 GiB of arrays) on a machine with 0.25 GiB free: refused by name before its pixels
    are read, nothing written."""
    import tifffile
    from fem_crossdiff.fem import arrays
    tifffile.imwrite("huge.tif", np.zeros((3000, 4000), np.uint8))
    monkeypatch.setattr(arrays, "available_memory", lambda: 2 ** 28)
    read = []
    monkeypatch.setattr("fem_crossdiff.imaging.files.read_image", lambda *a, **k: read.append(a) or 1 / 0)
    before = snapshot(batch)
    _refused(capsys, ["huge.tif", "o.tif"], "huge.tif: an image of 3000×4000 pixels needs about")
    assert not read and snapshot(batch) == before


# -- item 7: under mpiexec, a failure on one rank never leaves the other waiting --------------------------------------

def _mpiexec(n, *args, timeout=TIMEOUT, cwd=None):
    """``python ARGS`` on ``n`` ranks (as the ``mpirun`` fixture, but any exit status is returned and a run longer
    than ``timeout`` seconds fails the test: it would hang)."""
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("mpiexec not found")
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMP_NUM_THREADS": "1"}
    try:
        return subprocess.run([mpiexec, "-n", str(n), "--oversubscribe", sys.executable, *map(str, args)], env=env,
                              cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run on {n} rank(s) hung (no end within {timeout} s)")


#: A driver: the command line, where reading the file ``bug.npy`` raises an internal error (a bug, not bad input).
BUGGY_READ = """
import sys
import fem_crossdiff.imaging.files as files
from fem_crossdiff.cli import main
read = files.read_image
def buggy(path, *args, **kwargs):
    if str(path).endswith("bug.npy"):
        raise RuntimeError("injected bug reading " + str(path))
    return read(path, *args, **kwargs)
files.read_image = buggy
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parallel
def test_a_bug_on_one_rank_of_a_batch_ends_the_run_with_one_ranks_status(tmp_path):
    """Files dealt over 2 ranks in sorted order (rank 0: a0, c2, e4; rank 1: b1, an unreadable file, then d3_bug,
    an internal error): both ranks stop, the traceback is shown once, the exit status is one rank's (1), rank 0's
    files are restored, the unreadable one is named."""
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a0", "c2", "d3_bug", "e4"):
        np.save(tmp_path / "in" / f"{name}.npy", 0.5 + 0.05 * rng.standard_normal((16, 18)))
    (tmp_path / "in" / "b1.png").write_text("not an image")
    script = tmp_path / "buggy.py"
    script.write_text(BUGGY_READ)
    status = {}
    for n in (1, 2):
        (tmp_path / f"out{n}").mkdir()
        proc = _mpiexec(n, script, "denoise", tmp_path / "in", "--out-dir", tmp_path / f"out{n}", "--sigma", "25",
                        "--quiet")
        status[n] = proc.returncode
        assert "RuntimeError: injected bug reading" in proc.stderr, proc.stderr[-3000:]
        assert proc.stderr.count("Traceback") == 1, proc.stderr[-3000:]
        assert "b1.png: cannot be read as an image" in proc.stderr
    assert status[2] == status[1] == 1
    assert "3 of 5 image(s) restored" in proc.stdout and "rank 1 stopped by an internal error at" in proc.stdout
    assert sorted(os.listdir(tmp_path / "out2")) == ["a0.npy", "c2.npy", "e4.npy"]
    assert sorted(os.listdir(tmp_path / "out1")) == ["a0.npy", "c2.npy"]        # one rank: stopped at d3_bug


#: A driver: a tiled denoise whose windows dealt to one rank fail (bad input there: the state "explodes"; or a bug).
FAILING_WINDOW = """
import sys
import numpy as np
import fem_crossdiff as fc
from fem_crossdiff.fast.split import SplitScheme
from fem_crossdiff.fem import arrays
from mpi4py import MPI
kind = sys.argv[1]
solve = SplitScheme.denoise
def exploding(self, f, callback=None):
    if f.max() > 0.99:                                      # only the window with the bright corner
        if kind == "bug":
            raise ZeroDivisionError("injected bug in a window")
        raise fc.ModelError("model 'learned': the state became non-finite (injected)")
    return solve(self, f, callback)
SplitScheme.denoise = exploding
img = np.full((60, 130), 0.5)
img[-5:, -5:] = 1.0                                         # in the second of two windows only
if sys.argv[2] == "cli":
    arrays.SPLIT_TILE, arrays.SPLIT_TILE_ABOVE = 100, 100      # the command line's own tiling, at a toy size
    np.save("in.npy", img)
    from fem_crossdiff.cli import main
    sys.exit(main(["denoise", "in.npy", "out.npy", "--sigma", "25", "--quiet"]))
try:
    fc.denoise(img, fc.load_model(fc.shipped_model(25)), tile=100)
    sys.stdout.write(f"{MPI.COMM_WORLD.rank} returned\\n")
except Exception as e:                                      # one write: the ranks' lines do not interleave
    sys.stdout.write(f"{MPI.COMM_WORLD.rank} {type(e).__name__} {e}\\n")
sys.stdout.flush()
"""


@pytest.mark.parallel
def test_a_window_failing_on_one_rank_stops_every_rank(tmp_path):
    """Two windows dealt to two ranks; the second fails. Bad input there: every rank raises the same one-line error
    (the command line: exit status 2 and the message once, from rank 0). A bug there: that rank its own error, the
    other a RankFailure naming it. Nobody waits in the gathering Allreduce."""
    script = tmp_path / "window.py"
    script.write_text(FAILING_WINDOW)
    proc = _mpiexec(2, script, "input", "library", cwd=tmp_path)
    lines = sorted(proc.stdout.splitlines())
    assert len(lines) == 2 and lines[0].startswith("0 InputError") and lines[1].startswith("1 ModelError"), lines
    assert all("the state became non-finite (injected)" in line for line in lines)
    proc = _mpiexec(2, script, "bug", "library", cwd=tmp_path)
    lines = sorted(proc.stdout.splitlines())
    assert lines == ["0 RankFailure rank 1 failed: ZeroDivisionError: injected bug in a window",
                     "1 ZeroDivisionError injected bug in a window"], lines
    for n in (1, 2):
        proc = _mpiexec(n, script, "input", "cli", cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr[-3000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("fem-crossdiff")]
        assert errors == ["fem-crossdiff denoise: error: model 'learned': the state became non-finite (injected)"]
        assert not (tmp_path / "out.npy").exists()
    proc = _mpiexec(2, script, "bug", "cli", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.count("Traceback") == 1, proc.stderr[-3000:]
    assert "ZeroDivisionError: injected bug in a window" in proc.stderr and "RankFailure" not in proc.stderr


#: A driver: an error on rank 1 where no agreement foresaw it, while rank 0 waits in a collective rank 1 never joins.
UNFORESEEN = """
import sys
import fem_crossdiff.cli as cli
import fem_crossdiff.cli.denoise as command
from fem_crossdiff.errors import InputError
from mpi4py import MPI
cli.PEER_TIMEOUT = 2.0
def run(args):
    if MPI.COMM_WORLD.rank == 1:
        raise InputError("only rank 1 failed")
    MPI.COMM_WORLD.bcast(None, root=1)                     # rank 0 waits for rank 1 for ever
    return 0
command.run = run
sys.exit(cli.main(["denoise", "in.png", "out.png"]))
"""


@pytest.mark.parallel
def test_a_rank_failing_alone_where_nobody_agrees_ends_the_run_instead_of_hanging(tmp_path):
    script = tmp_path / "alone.py"
    script.write_text(UNFORESEEN)
    proc = _mpiexec(2, script, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "fem-crossdiff denoise: error: only rank 1 failed" in proc.stderr


@pytest.mark.parallel
def test_ctrl_c_under_mpiexec_stops_every_rank_with_the_message(tmp_path):
    """SIGINT to ``mpiexec`` during a batch whose rank 0 has finished its files and waits in MPI for rank 1 (Open MPI
    passes Ctrl-C on as SIGTERM; a rank blocked in MPI never returns to Python): the run ends at once, "interrupted"
    is said once, no traceback, no temporary file is left. (``mpirun`` itself exits with Open MPI's own status for a
    job it stopped on a signal; each rank exits with 130.)"""
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("mpiexec not found")
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("a0", 16), ("a1", 400), ("a2", 16)):          # rank 0: a0, a2 (quick); rank 1: a1 (long)
        np.save(tmp_path / "in" / f"{name}.npy", np.clip(0.5 + 0.1 * rng.standard_normal((size, size)), 0, 1))
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([mpiexec, "-n", "2", "--oversubscribe", sys.executable, "-m", "fem_crossdiff.cli",
                             "denoise", tmp_path / "in", "--out-dir", tmp_path / "out", "--sigma", "25",
                             "--steps", "5000", "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]   # rank 0's two files: it now waits for rank 1
        assert all(" -> " in line for line in lines), lines + [proc.stderr.read()]
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the interrupted run did not end")
    assert proc.returncode != 0
    assert err.count("fem-crossdiff denoise: interrupted") == 1, err
    assert "Traceback" not in err and "image(s) restored" not in out, err
    assert sorted(os.listdir(tmp_path / "out")) == ["a0.npy", "a2.npy"]    # no a1.npy, no temporary file
