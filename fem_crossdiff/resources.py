"""What a run costs: peak memory of this process (and the maximum over an MPI communicator's ranks)."""
import resource
import sys

__all__ = ["peak_memory_mb"]


def peak_memory_mb(comm=None):
    """Peak resident memory of this process in MiB (``getrusage``), the maximum over ``comm``'s ranks if given."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss      # KiB on Linux (bytes on macOS)
    mb = kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024
    if comm is None:
        return mb
    from mpi4py import MPI
    return comm.allreduce(mb, op=MPI.MAX)
