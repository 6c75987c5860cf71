"""Outputs are checked before any work, written atomically, and never replace a file unless asked.

:func:`check_outputs` refuses, before anything is computed, an output whose suffix cannot be written, whose
directory is missing or not writable, that is a directory, that names an input (through any symlink), that
names another output of the same command, or that exists (unless ``force``). :func:`atomic_write` then writes
to a temporary file beside the target and moves it into place: with ``replace=False`` by a hard link, which
fails if the name has appeared meanwhile (another process, another run), so nothing that exists is replaced;
with ``replace=True`` by a rename over it. A reader never sees a half-written file.
"""
import os
import tempfile

from .errors import InputError

__all__ = ["atomic_write", "check_outputs", "same_file"]


def same_file(a, b):
    """True when the paths ``a`` and ``b`` name the same file (symlinks and ``..`` resolved; either may not exist)."""
    return os.path.realpath(os.fspath(a)) == os.path.realpath(os.fspath(b))


def check_outputs(outputs, inputs=(), force=False, suffixes=None):
    """Refuse unusable output paths before any work (see the module docstring); ``suffixes``: the writable ones."""
    outputs, inputs = [os.fspath(p) for p in outputs if p is not None], [os.fspath(p) for p in inputs]
    for i, path in enumerate(outputs):
        if os.path.isdir(path):
            raise InputError(f"{path}: is a directory, expected a file name")
        suffix = os.path.splitext(path)[1].lower()
        if suffixes is not None and suffix not in suffixes:
            raise InputError(f"{path}: cannot write '{suffix}' files; use {', '.join(suffixes)}")
        for source in inputs:
            if same_file(path, source):
                raise InputError(f"{path}: output would overwrite the input {source}; choose another name")
        for other in outputs[:i]:
            if same_file(path, other):
                raise InputError(f"{path}: given twice as an output (also {other}); choose another name")
        if os.path.lexists(path) and not force:
            raise InputError(f"{path}: exists; pass --force to replace it")
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise InputError(f"{path}: directory {directory} does not exist")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise InputError(f"{path}: directory {directory} is not writable")


def atomic_write(path, write, suffix="", replace=False):
    """Call ``write(tmp_path)`` and move the result to ``path``: an existing file is never half-written, and
    unless ``replace`` never replaced at all (raises :class:`InputError` if ``path`` exists by then).

    The new file gets the usual permissions (0666 masked by the umask), not ``mkstemp``'s private 0600.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(suffix=suffix, dir=directory, prefix=".tmp-")
    except OSError as e:
        raise InputError(f"{path}: cannot write in {directory} ({e.strerror})") from None
    os.close(fd)
    try:
        try:
            write(tmp)
        except OSError as e:
            raise InputError(f"{path}: writing failed ({e.strerror or e}); nothing was changed") from None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if replace:
            if os.path.isdir(path):
                raise InputError(f"{path}: is a directory, expected a file name")
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _link_new(tmp, path):
    """Give ``tmp`` the name ``path`` only if no such name exists (hard link; exclusive create where the file
    system has no hard links)."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise InputError(f"{path}: exists (it appeared while this command ran); it was not replaced") from None
    except OSError:
        pass                                         # no hard links here: claim the name, then rename onto it
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        raise InputError(f"{path}: exists (it appeared while this command ran); it was not replaced") from None
    os.replace(tmp, path)
