"""The command line ``fem-crossdiff {models, denoise, train, evaluate, validate, bench, adjoint-study,
refinement-study}``: one module per command, each with its parser (``add_parser``) and handler (``run``) over
library calls; nothing in the library imports this package. Every command also runs under ``mpiexec``.

Errors: the project's own :class:`~fem_crossdiff.errors.InputError` (bad file, value, option or model) is printed
as one line naming the problem, exit status 2; an interrupt exits with 130; anything else is a bug and shows its
traceback. ``denoise`` on several images reports a failing file and carries on: its exit status is the number of
files that failed (0 when none). ``models`` and ``--help`` never import Firedrake.
"""
import argparse
import os
import shlex
import sys
import warnings

from . import bench, denoise, evaluate, models, studies, train
from .common import rank0

__all__ = ["main", "build_parser"]

COMMANDS = (models, denoise, train, evaluate, bench, studies)


def build_parser():
    p = argparse.ArgumentParser(prog="fem-crossdiff",
                                description="fem_crossdiff: learned cross-diffusion image restoration with Firedrake.")
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
    try:
        if args.firedrake:
            from .common import start_firedrake
            start_firedrake()
        status = args.func(args)
    except InputError as e:
        if rank0():
            print(f"fem-crossdiff {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if rank0():
            print(f"fem-crossdiff {args.command}: interrupted", file=sys.stderr)
        return 130
    return status or 0

