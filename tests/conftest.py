import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import sys

_argv, sys.argv = sys.argv, sys.argv[:1]  # PETSc (started by Firedrake) must not parse pytest's options
import firedrake  # noqa: E402,F401
sys.argv = _argv

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def small_image():
    """A 24×31 (non-square) piecewise-smooth test image with an edge, values in [0, 1]."""
    H, W = 24, 31
    y, x = np.mgrid[0:H, 0:W]
    img = 0.3 + 0.4 * (x > 14) + 0.1 * np.sin(0.4 * y) * np.cos(0.3 * x)
    return img


@pytest.fixture
def noisy_small(small_image):
    from fem_crossdiff.imaging.noise import gaussian_noise
    return small_image, gaussian_noise(small_image, 0.08, seed=3)


@pytest.fixture
def mpirun():
    """``mpirun(n, *args)``: run ``python *args`` on ``n`` MPI ranks; skips when there is no ``mpiexec``."""
    import shutil
    import subprocess
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("mpiexec not found")
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMP_NUM_THREADS": "1"}

    def run(n, *args):
        proc = subprocess.run([mpiexec, "-n", str(n), "--oversubscribe", sys.executable, *map(str, args)],
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    return run
