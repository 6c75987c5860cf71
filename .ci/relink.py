"""Point the run paths of this venv's compiled extensions at this venv.

pip caches the wheels it builds (petsc4py, Firedrake's Cython modules, PyOP2, tinyasm...), and their ELF RUNPATH
records the site-packages of the venv they were first built in (and pip's temporary build environment). Installed
from the cache into another checkout's venv, they would load PETSc and libfiredrake_rtree from the *first* venv,
and break when that checkout is deleted. This rewrites every such entry to this venv's site-packages (patchelf),
and drops build-environment entries.
"""
import glob
import os
import re
import subprocess
import sys
import sysconfig

SITE = sysconfig.get_paths()["platlib"]
PATCHELF = os.path.join(os.path.dirname(sys.executable), "patchelf")
SITE_PACKAGES = re.compile(r"/lib/python\d+\.\d+/site-packages/(.*)$")


def run_path(so):
    out = subprocess.run([PATCHELF, "--print-rpath", so], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def local(entry):
    """This venv's counterpart of a run-path entry, or None to drop it."""
    if "pip-build-env" in entry:
        return None
    m = SITE_PACKAGES.search(entry)
    return os.path.join(SITE, m.group(1)) if m else entry


def main():
    changed = 0
    for so in glob.glob(os.path.join(SITE, "**", "*.so*"), recursive=True):
        old = run_path(so)
        if not old:
            continue
        entries = old.split(":")
        new = []
        for e in map(local, entries):
            if e is not None and e not in new:
                new.append(e)
        if new != entries:
            subprocess.run([PATCHELF, "--set-rpath", ":".join(new), so], check=True)
            changed += 1
    print(f"relinked {changed} extension module(s) to {SITE}")


if __name__ == "__main__":
    main()
