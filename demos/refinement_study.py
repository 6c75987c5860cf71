# %% [markdown]
# # Mesh and time refinement
#
# Every refinement level discretises **one** continuum problem: the rectangle $[0, W-1]\times[0, H-1]$ (pixel
# units) and the image as its bilinear interpolant, on the structured quadrilateral mesh with $2^r$ cells per
# pixel gap (`images.image_mesh(shape, r)`, Q1 elements). With errors $e_k$ at sizes halved each level, the
# observed order is $\mathrm{EOC}_k = \log_2(e_{k-1}/e_k)$; self-convergence uses $e_k = \|w_k - w_{k+1}\|$.
#
# 1. **Manufactured solution** on $[0,4]^2$: $u^* = e^{-t/2}(\frac12 + \frac14\cos\frac{\pi x}{4}\cos\frac{\pi y}{4})$,
#    $v^* = \frac15\sin t\,\cos\frac{\pi x}{4}\cos\frac{\pi y}{2}$ (Neumann-compatible), the source computed by UFL,
#    for the nonlinear cross-diffusion model with reaction. Expected: $O(h^2)$ in $L^2$, $O(h)$ in the $H^1$
#    seminorm; $O(\tau)$ for semi-implicit and implicit Euler, $O(\tau^2)$ for Crank–Nicolson.
# 2. **A real image** (a crop of `coins`): self-convergence in $h$ and in τ.
# 3. **The learning functional** $J$ and its gradient $\nabla J$ (pyadjoint): self-convergence in $h$ and τ.
# 4. **An unstructured mesh**: a disc-shaped region of interest of `coins`, meshed with gmsh
#    (`meshes/roi_disc.msh`) and refined uniformly.
#
# Run: `python demos/refinement_study.py [--quick]` (or `fem-crossdiff refinement-study`).

# %%
import argparse
import os
import sys
import time

_argv, sys.argv = sys.argv, sys.argv[:1]   # PETSc must not read this script's options
import firedrake  # noqa: E402,F401
sys.argv = _argv

from fem_crossdiff.studies import plot_refinement_study, refinement_study, roi_denoise  # noqa: E402

parser = argparse.ArgumentParser(description="errors and observed orders under mesh and time refinement")
parser.add_argument("--quick", action="store_true",
                    help="fewer levels (about 30 s; a minute on a first run, which compiles)")
parser.add_argument("--out", default="out/demos", help="folder of the figures (default %(default)s)")
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)

# %% [markdown]
# ## Sections 1–3: tables
#
# For the first-order schemes the $h$-study refines τ as $h^2$ (so the $O(\tau)$ error never masks the $O(h^2)$
# one), Crank–Nicolson as $h$. On the real image the $h$-study keeps τ fixed (8 steps): the fully discrete
# problem at fixed τ converges in $h$ to the time-discrete one. Expect a warning sign for Crank–Nicolson there:
# it is A- but not L-stable, so with τ fixed and $h\to 0$ the stiff, unresolved components of the
# non-smooth data are not damped ($r(\tau\lambda)\to -1$) and its $h$-self-convergence is slow and erratic —
# the reason the learning code uses semi-implicit Euler.

# %%
t0 = time.perf_counter()
series = refinement_study(quick=args.quick)
png = plot_refinement_study(series, os.path.join(args.out, "refinement_study.png"))
print(f"\nwrote {png} ({time.perf_counter() - t0:.0f} s)")

# %% [markdown]
# ## Section 4: a region of interest on an unstructured gmsh mesh
#
# `meshes/make_meshes.py` meshes the disc of radius 36 pixels centred on one coin with gmsh (all
# quadrilaterals, size 1.5 pixels). Firedrake reads it with `Mesh("meshes/roi_disc.msh")`; the Q1 space,
# the forms and the time stepping of `Evolution` are unchanged (it only needs `mesh.image_shape` to place the
# image), the noisy picture enters as its bilinear interpolant at the vertices, and the circle gets the same
# natural no-flux condition as the rectangle's sides. `firedrake.MeshHierarchy` refines it uniformly; PSNR is
# measured at the pixel centres inside the disc by point evaluation, and compared with the same model on the
# whole picture.

# %%
roi_denoise(out=args.out, compare_full=not args.quick)
