"""The fast path's C kernels (``*.c`` beside this module), compiled once by PyOP2's compiler (cached on disk) and
called through ctypes. A kernel that cannot be built here leaves its caller on a slower path, and says so once."""
import ctypes
import functools
import os
import warnings

__all__ = ["compile_kernel", "pointer", "SlowPathWarning"]

HERE = os.path.dirname(os.path.abspath(__file__))


class SlowPathWarning(UserWarning):
    """A faster path does not apply here and a slower one (same results, same solver options) runs instead."""


def compile_kernel(source, symbol, argtypes, **defines):
    """The C function ``symbol`` of the file ``source`` (in this folder), with ``#define NAME value`` for each of
    ``defines`` put before it, as a ctypes function with ``argtypes``; None (warned once per kernel) if it cannot
    be built here (no compiler, or PyOP2 changed)."""
    with open(os.path.join(HERE, source)) as fh:
        code = "".join(f"#define {name} {value}\n" for name, value in defines.items()) + fh.read()
    return _load(code, symbol, tuple(argtypes), source)


@functools.lru_cache(maxsize=None)
def _load(code, symbol, argtypes, source):
    from mpi4py import MPI
    try:
        from pyop2.compilation import load
        fn = getattr(load(code, "c", comm=MPI.COMM_SELF), symbol)
    except Exception as e:                       # any failure to build: the callers keep a slower path
        warnings.warn(f"fem_crossdiff: the C kernel {source} could not be compiled ({type(e).__name__}: "
                      f"{str(e)[:200]}); using the slower numpy/Firedrake path instead", SlowPathWarning,
                      stacklevel=3)
        return None
    fn.argtypes, fn.restype = list(argtypes), None
    return fn


def pointer(a, ctype=ctypes.c_double):
    """A ctypes pointer to the data of the contiguous array ``a``."""
    return a.ctypes.data_as(ctypes.POINTER(ctype))
