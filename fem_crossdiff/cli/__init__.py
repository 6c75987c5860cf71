"""The command line ``fem-crossdiff {models, denoise, train, evaluate, validate, bench, adjoint-study,
refinement-study}``: one module per command, each with its parser (``add_parser``) and handler (``run``) over
library calls; nothing in the library imports this package. Every command also runs under ``mpiexec``.

Errors: the project's own :class:`~fem_crossdiff.errors.InputError` (bad file, value, option or model) is printed
as one line naming the problem, exit status 2; an interrupt exits with 130; anything else is a bug and shows its
traceback. ``denoise`` on several images reports a failing file and carries on: its exit status is the number of
files that failed (0 when none). ``models`` and ``--help`` never import Firedrake.

Under ``mpiexec`` a failure on one rank never leaves the others waiting, and the run ends as one rank's would:
- Where ranks share out work (files, windows), they agree on any failure before the next collective (the library's
  own business: :mod:`fem_crossdiff.fem.arrays`, ``denoise``'s batch).
- At the end, the ranks agree on the outcome (:func:`_agree_on_exit`): rank 0 prints the error of the first rank
  that failed (one line, or a bug's traceback, whichever rank it happened on) and every rank exits with its status.
  A rank that failed while the others do not come to the end within :data:`PEER_TIMEOUT` seconds (they wait in a
  collective it will never reach: a case no agreement foresaw) prints its error itself and ends the run
  (``MPI_Abort`` with its status) rather than hang.
- Ctrl-C: ``mpiexec`` passes it on to the ranks (Open MPI as SIGTERM, one second before SIGKILL; others as SIGINT).
  Each rank stops as on an interrupt (temporary files removed) and exits with 130, rank 0 saying "interrupted". A
  rank blocked inside MPI never returns to Python: a watcher thread says it for it after :data:`INTERRUPT_GRACE`
  seconds, and the launcher ends it (its other ranks have gone). (Open MPI's ``mpirun`` exits with its own status 1,
  as for any job it stops on a signal: the ranks' 130 does not reach its caller.)
"""
import argparse
import os
import shlex
import signal
import socket
import sys
import threading
import time
import traceback
import warnings

from . import bench, denoise, evaluate, models, restore, studies, train
from ..resources import launched_by_mpi, mpi_world
from .common import rank0

__all__ = ["main", "build_parser", "version"]

COMMANDS = (models, denoise, restore, train, evaluate, bench, studies)

#: Seconds a rank that failed waits at the end for the other ranks (which may fail alike a little later, or finish)
#: before it ends the run itself (``MPI_Abort``): a rank failing alone never leaves the others hanging.
PEER_TIMEOUT = 30.0
#: Seconds the main thread has, once Ctrl-C reaches this rank, to stop by its own KeyboardInterrupt (and say so)
#: before the watcher says it instead (Open MPI sends SIGKILL one second after SIGTERM).
INTERRUPT_GRACE = 0.5
_INTERRUPT = {"lock": threading.Lock(), "said": False, "watching": False}


def version():
    """The installed package's version (``importlib.metadata``: no import of Firedrake), or "unknown" when the
    source runs uninstalled."""
    from importlib.metadata import PackageNotFoundError, version as installed
    try:
        return installed("fem_crossdiff")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser():
    p = argparse.ArgumentParser(prog="fem-crossdiff",
                                description="fem_crossdiff: learned cross-diffusion image restoration with Firedrake.")
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings (a slower path, a fallback) as one line on stderr, rank 0 only; the deprecation notices of
    libraries are for their developers, not for a user of this command."""
    if rank0() and not issubclass(category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
        text = " ".join(str(message).removeprefix("fem_crossdiff: ").split())
        print(f"fem-crossdiff: note: {text}", file=sys.stderr)


def main(argv=None):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = "fem-crossdiff " + shlex.join(argv)  # recorded in the provenance of outputs
    from ..errors import InputError
    warnings.showwarning = _one_line_warning
    if launched_by_mpi():
        _watch_interrupts(args.command)
    report, primary = None, True
    try:
        try:
            if args.firedrake:
                from .common import start_firedrake
                start_firedrake()
            status = args.func(args) or 0
        except InputError as e:
            status, report = 2, f"fem-crossdiff {args.command}: error: {e}"
        except Exception as e:
            if mpi_world() is None:                     # one process: the traceback as Python shows it
                raise
            status, report, primary = 1, traceback.format_exc().rstrip(), not getattr(e, "secondary", False)
        status, report = _agree_on_exit(status, report, primary)
    except KeyboardInterrupt:
        _say_interrupted(args.command)
        return 130
    if report is not None and rank0():
        print(report, file=sys.stderr, flush=True)
    return status


def _agree_on_exit(status, report, primary):
    """The run's ``(status, report)``, the same on every rank: that of the first rank whose failure is its own
    (``primary``; not a :class:`~fem_crossdiff.fem.arrays.RankFailure` caused by another's), else the common status.

    Every rank comes here at the end (a non-blocking barrier, then an ``allgather``). A rank that failed gives the
    others :data:`PEER_TIMEOUT` seconds to come; if they do not, they are waiting where it will never be: it prints
    its report itself and ends the run with its status (``MPI_Abort``)."""
    comm = mpi_world()
    if comm is None:
        return status, report
    request = comm.Ibarrier()
    deadline = time.monotonic() + PEER_TIMEOUT
    while not request.Test():
        if report is not None and time.monotonic() > deadline:
            print(report, file=sys.stderr, flush=True)
            comm.Abort(status)
        time.sleep(0.005)
    outcomes = comm.allgather((status, report, primary))
    failed = [o for o in outcomes if o[1] is not None]
    if not failed:
        return max(o[0] for o in outcomes), None
    first = next((o for o in failed if o[2]), failed[0])
    return first[0], first[1]


def _say_interrupted(command):
    """Say, once per process and on rank 0, that the command was interrupted."""
    with _INTERRUPT["lock"]:
        said, _INTERRUPT["said"] = _INTERRUPT["said"], True
    if not said and rank0():
        print(f"fem-crossdiff {command}: interrupted", file=sys.stderr, flush=True)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _watch_interrupts(command):
    """Under ``mpiexec``: SIGTERM (how Open MPI passes Ctrl-C on) interrupts as SIGINT does, and a watcher thread,
    woken by either, says "interrupted" if the main thread has not within :data:`INTERRUPT_GRACE` seconds (blocked
    inside an MPI call, it never returns to Python; the launcher ends it)."""
    if _INTERRUPT["watching"] or threading.current_thread() is not threading.main_thread():
        return
    _INTERRUPT["watching"] = True
    signal.signal(signal.SIGTERM, _raise_interrupt)
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    _INTERRUPT["sockets"] = (reader, writer)         # kept open for the life of the process
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def watch():
        while True:
            got = reader.recv(1)
            if got and got[0] in (signal.SIGINT, signal.SIGTERM):
                time.sleep(INTERRUPT_GRACE)
                _say_interrupted(command)

    threading.Thread(target=watch, name="fem-crossdiff interrupt watcher", daemon=True).start()

