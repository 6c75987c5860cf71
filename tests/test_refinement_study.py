"""Refinement study: orders in h and dt (MMS, real image, learning functional), tables, the gmsh ROI mesh."""
import os

import numpy as np
import pytest

import firedrake as fd
from fem_crossdiff.studies.tables import eoc, format_table
from fem_crossdiff.studies.manufactured import ( functional_convergence, mms_model, space_convergence,
                                      time_self_convergence_image)
from fem_crossdiff.studies import MESHES, study_model, study_pair


def test_eoc_and_table():
    assert np.allclose(eoc([1.0, 0.25, 0.0625]), [2.0, 2.0])
    t = format_table(["a", "b"], [[1, 0.5], ["x", None]], [None, ".2f"])
    assert "0.50" in t and "-" in t.splitlines()[-1]


@pytest.mark.parametrize("scheme", ["semi-implicit", "implicit", "split"])
def test_mms_space_order_of_first_order_schemes(scheme):
    """tau ~ h^2 so that the O(tau) error does not hide the O(h^2) L2 error."""
    e = space_convergence(mms_model("nonlinear-cross"), scheme, levels=3, steps0=2)
    assert abs(eoc(e)[-1] - 2) < 0.2, (e, eoc(e))


def test_mms_h1_seminorm_is_first_order():
    e = space_convergence(mms_model("nonlinear-cross"), "crank-nicolson", levels=3, norm="H1")
    assert abs(eoc(e)[-1] - 1) < 0.15, (e, eoc(e))


@pytest.mark.parametrize("scheme, order", [("semi-implicit", 1), ("crank-nicolson", 2), ("split", 1)])
def test_time_self_convergence_on_a_real_image(scheme, order):
    clean, _ = study_pair("coins", size=10)
    model = study_model("nonlinear-cross", time=1.0)
    d = time_self_convergence_image(clean, model, scheme, levels=3, steps0=8)
    assert abs(eoc(d)[-1] - order) < 0.2, (d, eoc(d))


def test_learning_functional_and_gradient_converge():
    """|J_k - J_k+1| and ||g_k - g_k+1|| shrink at O(tau) in time and O(h^2) in space."""
    m = study_model("learned-v", centres=3)
    clean, noisy = study_pair("coins", size=10)
    ft = functional_convergence(m, clean, noisy, "dt", levels=3, steps=4)
    assert abs(eoc(ft["dJ"])[-1] - 1) < 0.2 and abs(eoc(ft["dg"])[-1] - 1) < 0.2, ft
    fh = functional_convergence(m, clean, noisy, "h", levels=2, steps=4)
    assert eoc(fh["dJ"])[-1] > 1.6 and eoc(fh["dg"])[-1] > 1.6, fh


def _roi_available():
    return os.path.exists(os.path.join(MESHES, "roi_disc.msh"))


@pytest.mark.skipif(not _roi_available(), reason="meshes/roi_disc.msh not present")
def test_model_runs_on_the_gmsh_roi_mesh():
    """The unstructured all-quad disc: Evolution works unchanged; mass is conserved, the noise is smoothed."""
    from fem_crossdiff.imaging.data import load
    from fem_crossdiff.fem import image_to_function
    from fem_crossdiff.model import make_model
    from fem_crossdiff.imaging.noise import gaussian_noise
    from fem_crossdiff.studies import roi_mesh
    from fem_crossdiff.fem import Evolution
    mesh = roi_mesh()
    assert mesh.ufl_cell().cellname == "quadrilateral"
    clean = load("coins")
    noisy = gaussian_noise(clean, 25 / 255, seed=0)
    ev = Evolution(make_model("perona-malik", steps=8), mesh)
    f, c = image_to_function(noisy, ev.V), image_to_function(clean, ev.V)
    w = ev.run(f)
    area = fd.assemble(fd.Constant(1.0) * fd.dx(domain=mesh))
    assert abs(area - np.pi * 36 ** 2) < 0.01 * area
    assert abs(fd.assemble(w[0] * fd.dx) - fd.assemble(f * fd.dx)) < 1e-8 * area
    grad = lambda u: fd.assemble(fd.inner(fd.grad(u), fd.grad(u)) * fd.dx) ** 0.5  # noqa: E731
    assert grad(w[0]) < 0.6 * grad(f)
    assert np.isfinite(fd.norm(w)) and grad(c) < grad(f)


@pytest.mark.skipif(not _roi_available(), reason="meshes/roi_disc.msh not present")
def test_roi_denoise_on_a_refined_hierarchy(tmp_path):
    from fem_crossdiff.studies import roi_denoise
    res = roi_denoise("perona-malik", levels=1, out=str(tmp_path), compare_full=False, log=lambda *a: None)
    assert all(lv["psnr"] > res["psnr_noisy"] + 1 for lv in res["levels"])
    assert (tmp_path / "roi_denoise.png").exists()


def test_make_meshes_script_regenerates_the_roi_mesh(tmp_path):
    pytest.importorskip("gmsh")
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_meshes", os.path.join(MESHES, "make_meshes.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = mod.make_roi_disc(str(tmp_path / "disc.msh"), size=4.0)
    mesh = fd.Mesh(path)
    assert mesh.ufl_cell().cellname == "quadrilateral" and mesh.num_cells() > 100


@pytest.mark.slow
def test_full_refinement_study(tmp_path):
    from fem_crossdiff.studies import plot_refinement_study, refinement_study
    series = refinement_study(log=lambda *a: None)
    for name, s in series.items():
        if name.startswith("MMS") or name.startswith("J") or name.startswith("dJ") or \
                name in ("image h, semi-implicit", "image h, implicit", "image tau, semi-implicit"):
            assert abs(eoc(s["errors"])[-1] - s["order"]) < 0.3, (name, s)
    assert os.path.exists(plot_refinement_study(series, str(tmp_path / "r.png")))
