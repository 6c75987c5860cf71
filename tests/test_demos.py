"""Every demo runs, at its small size, from a clean folder (what a user does first); a demo not listed here fails."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

DEMOS = Path(__file__).resolve().parent.parent / "demos"

#: demo -> (arguments for a small run, slow); the slow ones run with `make test-slow`.
RUNS = {"denoise_classic.py": (["--quick"], False),
        "learn_small.py": ([], False),
        "where_errors_are.py": (["--quick"], False),
        "tune_classic.py": (["--quick", "--out", "tuned.json"], False),
        "custom_model.py": (["--quick"], False),
        "refinement_study.py": (["--quick"], False),
        "adjoint_study.py": (["--quick"], True),
        "third_component.py": (["--quick"], True),
        "photographs.py": (["--quick"], False),
        "restoration.py": (["--quick"], False),
        # each also run by tests/test_learn_your_data.py in the default suite
        "learn_your_data.py": (["--quick"], True),
        "train_memory.py": (["--count", "6", "--size", "40", "--folder", "imgs"], True)}


def test_every_demo_is_listed():
    assert sorted(p.name for p in DEMOS.glob("*.py")) == sorted(RUNS)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if slow else n
                                  for n, (_, slow) in RUNS.items()])
def test_demo_runs_at_its_small_size(name, tmp_path):
    args, _ = RUNS[name]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(DEMOS / name), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), "a demo prints a summary"
    assert list(tmp_path.rglob("*.png")) or name == "tune_classic.py", "a demo writes its figures"
