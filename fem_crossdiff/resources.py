"""What a run costs and where it runs: peak memory of this process (and the maximum over an MPI communicator's
ranks); whether this process is one of several MPI ranks (:func:`mpi_world`), told without starting MPI for a process
started alone.

The peak is the high-water mark of this process's own resident memory, ``VmHWM`` of ``/proc/self/status`` on Linux.
Not ``getrusage``'s ``ru_maxrss`` there: a process started by ``subprocess`` (vfork and exec) inherits in it the
high-water mark of the process that started it, so a small benchmark case started by a large process would report
the large one's peak (a 11 MiB child of a 480 MiB parent reports 480 MiB). Either is a high-water mark: read in a
process, it covers everything that process did so far (imports included), nothing it does later; a benchmark that
wants the peak of one piece of work runs that work alone in a process of its own and reads the peak at its end.
"""
import os
import resource
import sys

__all__ = ["peak_memory_mb", "launched_by_mpi", "mpi_world"]

#: Environment variables by which MPI launchers tell a process it is one of several (before MPI is started).
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")


def launched_by_mpi():
    """True when an MPI launcher started this process (read from its environment: MPI need not be started)."""
    return any(v in os.environ for v in LAUNCHER_VARIABLES)


def mpi_world():
    """``COMM_WORLD`` when this process is one of several MPI ranks, else None (a process started alone does not
    start MPI for it: the split scheme's start-up stays without)."""
    if "mpi4py.MPI" not in sys.modules and not launched_by_mpi():
        return None
    from mpi4py import MPI
    return MPI.COMM_WORLD if MPI.COMM_WORLD.size > 1 else None


def _high_water_kib():
    """``VmHWM`` of this process in KiB, or None where ``/proc`` does not have it."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_memory_mb(comm=None):
    """Peak resident memory of this process in MiB (``VmHWM``, else ``getrusage``), the maximum over ``comm``'s
    ranks if given."""
    kib = _high_water_kib()
    if kib is not None:
        mb = kib / 1024
    else:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss      # KiB on Linux, bytes on macOS
        mb = maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024
    if comm is None:
        return mb
    from mpi4py import MPI
    return comm.allreduce(mb, op=MPI.MAX)
