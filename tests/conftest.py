import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import sys

import numpy as np
import pytest


def pytest_configure(config):
    """Start Firedrake (hence PETSc and MPI) before any test module is imported, with pytest's options hidden from
    PETSc; but not in pytest-xdist's controller, which runs no test: MPI started there (as a singleton) would leave
    its PMIx/Open MPI variables in every worker's environment, and an ``mpiexec`` started by a test would take
    itself for a rank of that singleton and fail without a word."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import firedrake  # noqa: F401
    finally:
        sys.argv = argv


#: Variables an MPI launcher or a singleton MPI process sets for its ranks; none may reach a fresh ``mpiexec``.
MPI_RUNTIME_PREFIXES = ("OMPI_MCA_", "OMPI_COMM_", "OMPI_APP_", "OMPI_ARGV", "OMPI_COMMAND", "PMIX_", "ORTE_", "OPAL_")


def mpi_environment():
    """This process's environment for a child ``mpiexec``: the launcher's own variables removed, root allowed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(MPI_RUNTIME_PREFIXES)}
    return {**env, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMP_NUM_THREADS": "1"}


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
    env = mpi_environment()

    def run(n, *args):
        # stdin closed: mpiexec forwards its standard input to rank 0, and under pytest-xdist that is the channel
        # between the worker and the controller (mpiexec would read it and fail, silently, exit status 1)
        proc = subprocess.run([mpiexec, "-n", str(n), "--oversubscribe", sys.executable, *map(str, args)],
                              env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    return run
