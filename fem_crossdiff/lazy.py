"""Lazy re-exports for a package's ``__init__``: names are imported from their modules on first use.

Importing ``fem_crossdiff.learning.parametrisation`` runs ``fem_crossdiff/learning/__init__.py`` first; if that
re-exported eagerly, it would import Firedrake (and start PETSc) for a numpy-only module. So the packages whose
modules need Firedrake or PETSc re-export lazily, and ``fem-crossdiff models`` or ``--help`` stay fast.
"""
import importlib

__all__ = ["attach"]


def attach(package, names):
    """``(__getattr__, __dir__, __all__)`` for ``package`` re-exporting ``names`` ({name: submodule})."""
    def __getattr__(name):
        if name in names:
            value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
            globals_of_package = importlib.import_module(package).__dict__
            globals_of_package[name] = value                     # resolved once
            return value
        raise AttributeError(f"module '{package}' has no attribute '{name}'")

    def __dir__():
        return sorted(names)

    return __getattr__, __dir__, sorted(names)
