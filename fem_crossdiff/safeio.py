"""Outputs are checked before any work, written atomically, and never replace a file unless asked.

:func:`check_outputs` refuses, before anything is computed, an output whose suffix cannot be written, whose
directory is missing (or, for a directory the command creates, cannot be created) or not writable, that is a
directory, that names an input (through any symlink, hard link or a case-insensitive file system), that names
another output of the same command, or that exists (unless ``force``). The checks run over *every* output in that
order, so the advice "pass --force" is given only when every output is neither an input nor another output: passing
it can then replace nothing but earlier results. Two outputs are one when their directories are one and their names
are equal but for case (:func:`name_key`): on a case-insensitive file system (macOS, Windows) they are one file, and
a command must not mean different things on different file systems.

:func:`atomic_write` then writes to a temporary file beside the target and moves it into place: with
``replace=False`` by a hard link, which fails if the name has appeared meanwhile (another process, another run), so
nothing that exists is replaced; with ``replace=True`` by a rename over it. A reader never sees a half-written file.
"""
import os
import tempfile

from .errors import InputError

__all__ = ["atomic_write", "check_outputs", "check_not_inputs", "file_key", "name_key", "same_file", "unique_files"]


def same_file(a, b):
    """True when the paths ``a`` and ``b`` name the same file: symlinks and ``..`` resolved, or, when both exist, the
    same file on disk (a hard link, a name differing in case on a case-insensitive file system)."""
    a, b = os.fspath(a), os.fspath(b)
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:                                  # either does not exist (or cannot be reached): not one file
        return False


def file_key(path):
    """A key equal for every path of one existing file (its device and inode: any symlink, hard link or spelling),
    else for paths equal once resolved."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(os.fspath(path)))


def unique_files(paths, key=None):
    """``paths`` in order, each file once however it is named (:func:`file_key`; ``key``: another key for items that
    are not paths)."""
    seen, once = set(), []
    for p in paths:
        k = file_key(p) if key is None else key(p)
        if k not in seen:
            seen.add(k)
            once.append(p)
    return once


def name_key(path):
    """A key equal for two output paths that are, or on some file system would be, one file: the same directory
    (:func:`file_key`) and names equal but for case (``str.casefold``)."""
    path = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(path)
    return file_key(directory), name.casefold()


def _keys(path):
    """The keys under which ``path`` is one file with another (:func:`same_file`, in sets: linear, not quadratic, in
    the number of files of a batch)."""
    resolved = ("path", os.path.realpath(path))
    key = file_key(path) if os.path.lexists(path) else resolved
    return {key, resolved}


def check_not_inputs(outputs, inputs):
    """Refuse an output that is any of the inputs (:func:`same_file`), whether or not replacing is allowed."""
    known = {}
    for source in inputs:
        for key in _keys(os.fspath(source)):
            known.setdefault(key, source)
    for path in outputs:
        for key in _keys(os.fspath(path)):
            if key in known:
                raise InputError(f"{path}: output would overwrite the input {known[key]}; choose another name")


def check_outputs(outputs, inputs=(), force=False, suffixes=None, create_dirs=False):
    """Refuse unusable output paths before any work (see the module docstring); ``suffixes``: the writable ones;
    ``create_dirs``: a missing directory is one the caller creates (refused only if it cannot be created: its nearest
    existing ancestor is not a writable directory)."""
    outputs, inputs = [os.fspath(p) for p in outputs if p is not None], [os.fspath(p) for p in inputs]
    for path in outputs:
        if os.path.isdir(path):
            raise InputError(f"{path}: is a directory, expected a file name")
        suffix = os.path.splitext(path)[1].lower()
        if suffixes is not None and suffix not in suffixes:
            raise InputError(f"{path}: cannot write '{suffix}' files; use {', '.join(suffixes)}")
    check_not_inputs(outputs, inputs)                # with or without force: an input is never replaced
    seen = {}
    for i, path in enumerate(outputs):
        first = seen.setdefault(name_key(path), i)
        if first != i:
            raise InputError(f"{path}: given twice as an output (also {outputs[first]}); choose another name")
    for path in outputs:
        _check_directory(path, create_dirs)
    if not force:                                    # last: --force could now only replace earlier results
        for path in outputs:
            if os.path.lexists(path):
                raise InputError(f"{path}: exists; pass --force to replace it")


def _check_directory(path, create):
    """Refuse an output whose directory is missing (unless ``create`` and it can be created) or not writable."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        if not create:
            raise InputError(f"{path}: directory {directory} does not exist")
        parent = directory
        while not os.path.lexists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise InputError(f"{path}: cannot create directory {directory}: {parent} is not a directory")
        directory = parent
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
