"""demos/learn_your_data.py (issue 23, item 5) runs in its fast mode from a clean folder, on its own pictures and on a
folder the user gives: it trains, writes the curve and the figure, and prints the comparison with the shipped model.
(demos/train_memory.py, the memory measurement, runs at a tiny size too.)"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

DEMOS = Path(__file__).resolve().parent.parent / "demos"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _run(cwd, *args, demo="learn_your_data.py"):
    proc = subprocess.run([sys.executable, str(DEMOS / demo), *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _table(out):
    """{image: (noisy, shipped, learned)} of the demo's PSNR table."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0].endswith(".png"):
            rows[parts[0]] = tuple(map(float, parts[1:]))
    return rows


def test_the_demo_trains_on_its_own_pictures_and_compares_with_the_shipped_model(tmp_path):
    out = _run(tmp_path, "--quick")
    folder = tmp_path / "out" / "learn_your_data"
    for name in ("model.json", "model.json.curve.csv", "model.json.curve.png", "held_out.png"):
        assert (folder / name).exists(), name
    rows = _table(out)
    assert len(rows) == 2                                          # a quarter of its 6 pictures, held out
    assert all(ship > noisy and new > noisy for noisy, ship, new in rows.values())
    assert "4 to train on, 2 held out" in out


def test_the_demo_takes_the_users_folder(tmp_path):
    import imageio.v3 as iio
    import skimage.data
    img, rng = skimage.data.camera(), np.random.default_rng(0)
    os.makedirs(tmp_path / "mine")
    for k in range(4):
        r, c = rng.integers(0, 400, 2)
        iio.imwrite(tmp_path / "mine" / f"scan{k}.png", img[r:r + 40, c:c + 40])
    out = _run(tmp_path, "--quick", "--images", "mine", "--sigma", "15")
    rows = _table(out)
    assert len(rows) == 1 and list(rows)[0].startswith("scan")       # one of four held out
    assert "σ = 15" in out
    assert sorted(os.listdir(tmp_path / "mine")) == [f"scan{k}.png" for k in range(4)]   # the user's folder kept


def test_the_memory_measurement_runs_at_a_tiny_size(tmp_path):
    out = _run(tmp_path, "--count", "6", "--size", "40", "--folder", str(tmp_path / "imgs"), demo="train_memory.py")
    assert "6 images of 40²" in out and "peak resident memory" in out
    assert len(os.listdir(tmp_path / "imgs" / "6x40")) == 6
