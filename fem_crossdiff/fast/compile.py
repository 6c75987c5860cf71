"""The fast path's C kernels (``*.c`` beside this module), compiled once by the system's C compiler into a cache
on disk and called through ctypes. No Firedrake is needed (the split scheme's fast path runs without it). A kernel
that cannot be built here leaves its caller on a slower path, and says so once.

The compiler is ``$CC`` (default ``cc``), flags :data:`CFLAGS`; the cache is ``$FEM_CROSSDIFF_CACHE`` (default
``~/.cache/fem_crossdiff/kernels``), one shared object per source text, compiler, flags and processor, written to a temporary
name and renamed into place, so concurrent processes (MPI ranks) never load a half-written file.
"""
import ctypes
import functools
import hashlib
import os
import shlex
import subprocess
import tempfile
import warnings

__all__ = ["compile_kernel", "pointer", "SlowPathWarning", "CFLAGS", "cache_folder"]

HERE = os.path.dirname(os.path.abspath(__file__))
#: Compiler flags of every kernel (PyOP2's optimisation flags; the cache key holds this processor's model and flags,
#: so a cache shared by several machines never serves one another's ``-march=native`` code).
CFLAGS = ("-O3", "-march=native", "-ffast-math", "-fPIC", "-shared", "-std=c99")


@functools.lru_cache(maxsize=None)
def _cpu():
    """This processor's model name and feature flags (``/proc/cpuinfo``), or the platform's name."""
    import platform
    try:
        with open("/proc/cpuinfo") as fh:
            lines = [ln.strip() for ln in fh if ln.startswith(("model name", "flags"))]
        return "\n".join(sorted(set(lines))) or platform.machine()
    except OSError:
        return platform.machine()


class SlowPathWarning(UserWarning):
    """A faster path does not apply here and a slower one (same results, same solver options) runs instead."""


def cache_folder():
    """Where compiled kernels are kept."""
    return os.environ.get("FEM_CROSSDIFF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fem_crossdiff",
                                                                 "kernels")


def compile_kernel(source, symbol, argtypes, **defines):
    """The C function ``symbol`` of the file ``source`` (in this folder), with ``#define NAME value`` for each of
    ``defines`` put before it, as a ctypes function with ``argtypes``; None (warned once per kernel) if it cannot
    be built here (no compiler, or it fails)."""
    with open(os.path.join(HERE, source)) as fh:
        code = "".join(f"#define {name} {value}\n" for name, value in defines.items()) + fh.read()
    return _load(code, symbol, tuple(argtypes), source)


def _build(code):
    """Path of the shared object of ``code``, compiled now unless cached."""
    cc = shlex.split(os.environ.get("CC") or "cc")
    key = hashlib.sha256("\0".join([code, *cc, *CFLAGS, _cpu()]).encode()).hexdigest()[:32]
    folder = cache_folder()
    so = os.path.join(folder, f"{key}.so")
    if os.path.exists(so):
        return so
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src, out = os.path.join(tmp, "kernel.c"), os.path.join(tmp, "kernel.so")
        with open(src, "w") as fh:
            fh.write(code)
        done = subprocess.run([*cc, *CFLAGS, src, "-o", out, "-lm"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cc)} failed: {done.stderr.strip()[:300]}")
        os.replace(out, so)
    return so


@functools.lru_cache(maxsize=None)
def _load(code, symbol, argtypes, source):
    try:
        fn = getattr(ctypes.CDLL(_build(code)), symbol)
    except Exception as e:                       # any failure to build or load: the callers keep a slower path
        warnings.warn(f"fem_crossdiff: the C kernel {source} could not be compiled ({type(e).__name__}: "
                      f"{str(e)[:200]}); using the slower numpy path instead", SlowPathWarning, stacklevel=3)
        return None
    fn.argtypes, fn.restype = list(argtypes), None
    return fn


def pointer(a, ctype=ctypes.c_double):
    """A ctypes pointer to the data of the C-contiguous array ``a`` (anything else is a bug of the caller: a kernel
    would read it in the wrong order)."""
    if not a.flags.c_contiguous:
        raise ValueError(f"array of shape {a.shape} and strides {a.strides} is not C-contiguous")
    return a.ctypes.data_as(ctypes.POINTER(ctype))
