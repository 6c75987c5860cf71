"""What every command shares: rank-0 output, a progress bar, option types, and starting Firedrake late (so that
``fem-crossdiff models`` and ``--help`` never pay for it)."""
import argparse
import os
import sys
import time

__all__ = ["rank0", "say", "ProgressBar", "param_option", "checkpoints_option", "start_firedrake"]

#: Environment variables in which MPI launchers give a process its rank (before MPI is initialised).
_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")


def rank0():
    """True on rank 0 of ``MPI.COMM_WORLD`` (read from the launcher's environment while MPI is not started)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None:
        return mpi.COMM_WORLD.rank == 0
    return all(os.environ.get(v, "0") == "0" for v in _RANK_VARIABLES)


def say(*args, **kwargs):
    """print on rank 0 only."""
    if rank0():
        print(*args, **kwargs, flush=True)


def start_firedrake():
    """Import Firedrake (which starts PETSc) with our own arguments hidden from PETSc: PETSc options go in the
    environment (``PETSC_OPTIONS="-ksp_monitor"``), never on the ``fem-crossdiff`` command line."""
    saved, sys.argv = sys.argv, sys.argv[:1]
    try:
        import firedrake  # noqa: F401
    finally:
        sys.argv = saved


class ProgressBar:
    """``[#####.....] 5/10 steps 0.4 s`` on stderr (rank 0 only, redrawn in place on a terminal)."""

    def __init__(self, label, width=30):
        self.label, self.width, self.t0 = label, width, time.perf_counter()
        self.tty = sys.stderr.isatty()

    def __call__(self, n, total):
        if not rank0() or (not self.tty and n != total):
            return
        done = int(self.width * n / total)
        bar = "#" * done + "." * (self.width - done)
        end = "\n" if n == total else ""
        sys.stderr.write(f"\r{self.label} [{bar}] {n}/{total} steps {time.perf_counter() - self.t0:.1f} s{end}")
        sys.stderr.flush()


def param_option(text):
    """``--param KEY=VALUE``: a model parameter and its number."""
    key, sep, val = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got '{text}'")
    try:
        return key, float(val)
    except ValueError:
        raise argparse.ArgumentTypeError(f"parameter {key}: '{val}' is not a number") from None


def checkpoints_option(text):
    """``--checkpoints`` value: ``tape`` (None), ``all`` or a snapshot count K >= 1."""
    if text in ("tape", "all"):
        return None if text == "tape" else text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"'{text}': expected tape, all or a number of snapshots >= 1")
