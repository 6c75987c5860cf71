"""Atomic file writing: write to a temporary file beside the target, then rename over it."""
import os
import tempfile


def atomic_write(path, write, suffix=""):
    """Call ``write(tmp_path)`` and rename the result to ``path``: an existing file is never half-written.

    The new file gets the usual permissions (0666 masked by the umask), not ``mkstemp``'s private 0600.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=directory, prefix=".tmp-")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
