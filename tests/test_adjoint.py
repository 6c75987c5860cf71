"""Discrete (pyadjoint) vs continuous (hand-derived) adjoint vs finite differences of the learning functional."""
import numpy as np
import pytest
import ufl

import firedrake as fd
from fem_crossdiff.studies.continuous_adjoint import (GradientProblem, continuous_gradient, discrete_gradient,
                                                      fd_gradient, relative_gap)
from fem_crossdiff.learning import pack
from fem_crossdiff.studies.tables import eoc
from fem_crossdiff.studies import study_model, study_pair


@pytest.fixture(scope="module")
def pair():
    return study_pair("coins", size=10)


@pytest.fixture(scope="module")
def model():
    return study_model("learned-v", centres=3)


def _gaps(model, pair, levels, **kw):
    out = []
    for refine, steps in levels:
        gp = GradientProblem(model, *pair, refine=refine, steps=steps, **kw)
        _, gd = gp.discrete_gradient()
        _, gc = gp.continuous_gradient()
        out.append((gd, gc, relative_gap(gc, gd)))
    return out


def test_pyadjoint_gradient_matches_finite_differences(model, pair):
    gp = GradientProblem(model, *pair, steps=4)
    J, gd = gp.discrete_gradient()
    gf = gp.fd_gradient(eps=1e-5)
    assert gd.shape == pack(model).shape
    # to FD's error: the adjoint's transposed solves are direct too (with GMRES's default tolerance: 1.6e-6)
    assert relative_gap(gf, gd) < 1e-8, (gd, gf)
    big = np.abs(gd) > 1e-3 * np.abs(gd).max()
    np.testing.assert_allclose(gf[big], gd[big], rtol=1e-4)
    assert np.isclose(J, gp.loss())


def test_discrete_gradient_agrees_with_pyadjoints_generic_blocks(model, pair):
    """The study's discrete gradient (one fem_crossdiff block per step, direct solves) equals the gradient pyadjoint
    derives itself from its generic solve blocks (learning.dataset_reduced_functional, iterative solves): two
    derivations of the same discrete adjoint."""
    from fem_crossdiff.learning import dataset_reduced_functional
    rf, loss = dataset_reduced_functional(model, [pair])
    J0 = float(rf.functional)
    g0 = loss.ev.discrete.gradient_vector(rf.derivative())
    gp = GradientProblem(model, *pair)
    J, g = gp.discrete_gradient()
    assert abs(J - J0) < 1e-7 * J0
    assert relative_gap(g, g0) < 1e-6


@pytest.mark.parametrize("name, entry", [("learned-modulated", "w11h"), ("learned-reacting", "wpsi")])
def test_modulated_and_reacting_gradients_discrete_matches_differences_continuous_is_close(name, entry, pair):
    """With the factor h11(v) (and the reaction psi(v)): pyadjoint's gradient equals finite differences; the
    continuous adjoint's gap to it, the w11h (wpsi) entries alone included, shrinks at first order in tau."""
    model = study_model(name, centres=3)
    gp = GradientProblem(model, *pair, steps=4)
    _, gd = gp.discrete_gradient()
    gf = gp.fd_gradient(eps=1e-6)
    assert relative_gap(gf, gd) < 1e-5, (gd, gf)
    h = [i for i, n in enumerate(n for st in model.stages for n in model.parameter_names
                                 for _ in range(np.size(st[n]))) if n == entry]
    assert len(h) == 6 and np.abs(gd[h]).max() > 1e-3 * np.abs(gd).max()
    levels = _gaps(model, pair, [(0, 8), (0, 16), (0, 32)])
    for sel in (slice(None), h):
        gaps = np.array([relative_gap(gc[sel], gd[sel]) for gd, gc, _ in levels])
        assert abs(eoc(gaps)[-1] - 1) < 0.15, (sel, gaps)


def test_module_functions_share_the_pack_layout(model, pair):
    g1 = continuous_gradient(model, *pair, steps=4)
    g2 = discrete_gradient(model, *pair, steps=4)
    g3 = fd_gradient(model, *pair, steps=4)
    assert g1.shape == g2.shape == g3.shape == pack(model).shape
    assert relative_gap(g3, g2) < 1e-5
    assert relative_gap(g1, g2) < 0.5


def test_gap_shrinks_first_order_in_dt(model, pair):
    """Semi-implicit state, implicit-Euler adjoint: gap = C tau + o(tau), EOC -> 1."""
    gaps = np.array([g for *_, g in _gaps(model, pair, [(0, 4), (0, 8), (0, 16), (0, 32)])])
    rates = eoc(gaps)
    assert np.all(np.diff(gaps) < 0), gaps
    assert abs(rates[-1] - 1) < 0.1, (gaps, rates)


def test_gap_in_h_settles_and_vanishes_under_joint_refinement(model, pair):
    """Fixed tau: the gap tends to a non-zero limit (Galerkin commutes with the adjoint), settling at O(h^2);
    tau and h halved together: the gap vanishes at EOC 1."""
    fixed = _gaps(model, pair, [(0, 8), (1, 8), (2, 8)])
    e = [gc - gd for gd, gc, _ in fixed]
    gaps = np.array([g for *_, g in fixed])
    assert np.all(np.abs(gaps / gaps[-1] - 1) < 0.05), gaps            # h barely matters at fixed tau
    settle = [np.linalg.norm(e[0] - e[1]), np.linalg.norm(e[1] - e[2])]
    assert eoc(settle)[0] > 1.6, settle
    joint = np.array([g for *_, g in _gaps(model, pair, [(0, 4), (1, 8), (2, 16)])])
    rates = eoc(joint)
    assert np.all(rates > 0.85) and np.all(rates < 1.2), (joint, rates)


def test_crank_nicolson_gap_is_second_order(model, pair):
    gaps = np.array([g for *_, g in _gaps(model, pair, [(0, 8), (0, 16), (0, 32)], scheme="crank-nicolson",
                                           adjoint_theta=0.5, state_term="implicit")])
    rates = eoc(gaps)
    assert abs(rates[-1] - 2) < 0.2, (gaps, rates)


def test_perona_malik_type_divergence_term(pair):
    """g11(|grad u|) (the learned template): the extra divergence term of the adjoint is right — at fixed h the
    gap still vanishes at first order in tau."""
    m = study_model("learned", centres=3)
    gaps = np.array([g for *_, g in _gaps(m, pair, [(0, 8), (0, 16), (0, 32)])])
    rates = eoc(gaps)
    assert gaps[-1] < 0.1 and abs(rates[-1] - 1) < 0.15, (gaps, rates)


def test_single_stage_named_model(pair):
    """nonlinear-cross (one stage, identical influence functions of v, k11 = k22)."""
    m = study_model("nonlinear-cross")
    gaps = np.array([g for *_, g in _gaps(m, pair, [(0, 8), (0, 16), (0, 32)])])
    assert abs(eoc(gaps)[-1] - 1) < 0.15, gaps


@pytest.mark.slow
def test_full_adjoint_study(tmp_path):
    from fem_crossdiff.studies import run_adjoint_study
    res = run_adjoint_study("learned-v", size=32, out=str(tmp_path), log=lambda *a: None)
    assert abs(eoc([x["gap"] for x in res["dt"]])[-1] - 1) < 0.1
    assert abs(eoc([x["gap"] for x in res["cn"]])[-1] - 2) < 0.2
    assert abs(eoc([x["gap"] for x in res["joint"]])[-1] - 1) < 0.15
    assert all(x["gap_fd"] < 1e-6 for x in res["dt"] if x["gap_fd"] is not None)
    assert (tmp_path / "adjoint_study_learned-v.png").exists()
