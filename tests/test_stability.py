"""Stability as a constraint (issue 23, item 2): ``train --stability augmented-lagrangian`` keeps the ellipticity
certificate >= eps with multipliers (fem_crossdiff/learning/stability.py): the smooth certificate is a lower bound
of the true one with the exact gradient, the augmented Lagrangian's gradient has Taylor rate 2, runs end feasible
and certified (from a feasible or an infeasible start), bad options are refused by one line; and early stopping
(``--patience``) on validation for both optimisers."""
import json
import os

import numpy as np
import pytest

from fem_crossdiff.cli import main
from test_hostile_input import snapshot

TINY = ["--patch", "16", "--per-image", "1", "--stages", "2", "--steps", "2", "--centres", "3", "--modulation", "3"]


def _folder(folder, n=4, size=40, seed=0):
    """``n`` 8-bit PNG crops ``size``² of camera (textured: there is something to learn)."""
    import imageio.v3 as iio
    import skimage.data
    img, rng = skimage.data.camera(), np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for k in range(n):
        r, c = rng.integers(0, img.shape[0] - size, 2)
        iio.imwrite(os.path.join(folder, f"img{k}.png"), img[r:r + size, c:c + size])
    return folder


def _template(stages=2, **stage):
    """The default template (3 centres, h11 of 3 centres) with ``stage`` values set in every stage."""
    from fem_crossdiff.learning.parametrisation import learned_template, with_modulation
    m = with_modulation(learned_template(stages=stages, centres=3, steps=2), 3)
    return m.with_stages([dict(st, **stage) for st in m.stages]) if stage else m


def _points():
    """Models to check the smooth certificate at: the template, the shipped σ = 25 model (stages at the box's
    corners), and random points of the box."""
    from fem_crossdiff.learned import blind_model
    from fem_crossdiff.learning.parametrisation import bounds, pack, unpack
    out = [_template(), blind_model(25)]
    rng = np.random.default_rng(3)
    for _ in range(3):
        m = _template()
        lo, hi = np.array(bounds(m)).T
        x = pack(m) + (hi - lo) * 0.02 * rng.standard_normal(len(lo))
        out.append(m.with_stages(unpack(m, np.clip(x, lo, hi))))
    return out


def test_the_smooth_certificate_is_a_lower_bound_of_the_true_one_with_its_exact_gradient():
    from fem_crossdiff.learning.parametrisation import pack
    from fem_crossdiff.learning.stability import DELTA, TAU, SmoothCertificate
    for model in _points():
        sc = SmoothCertificate(model)
        x = pack(model)
        c, G = sc.values_and_gradients(x)
        true = [model.replace(stages=[st]).certificate() for st in model.stages]
        assert np.all(c <= np.array(true) + 1e-15)                       # conservative: h >= 0 certifies
        assert np.all(c >= np.array(true) * 0.9 - DELTA - 10 * TAU)     # and close
        # central differences of every coordinate (numpy) against the analytic gradient
        h = 1e-7 * np.maximum(np.abs(x), 1.0)
        fd = np.stack([(sc.values_and_gradients(x + h[i] * np.eye(len(x))[i])[0]
                        - sc.values_and_gradients(x - h[i] * np.eye(len(x))[i])[0]) / (2 * h[i])
                       for i in range(len(x))], axis=1)
        assert np.allclose(G, fd, rtol=1e-5, atol=1e-8 * np.abs(G).max())


def test_the_augmented_lagrangian_gradient_has_taylor_rate_2():
    """L(p) = J(p)/J0 + penalty(p) on a tiny patch, at a point where one stage violates the constraint (its
    penalty active, with a multiplier) and one does not: the Taylor remainder falls by ~4 when h halves."""
    from fem_crossdiff.learning.parametrisation import pack
    from fem_crossdiff.learning.split_loss import SplitDatasetLoss
    from fem_crossdiff.learning.stability import AugmentedLagrangian, SmoothCertificate
    import skimage.data
    model = _template().replace(scheme="split")
    model = model.with_stages([dict(model.stages[0], rho=0.97, d11=0.3), dict(model.stages[1], rho=0.2)])
    img = skimage.data.camera()[200:240, 200:240] / 255.0
    rng = np.random.default_rng(0)
    clean = [img[:12, :12], img[20:32, 10:22]]
    pairs = [(c, np.clip(c + 0.1 * rng.standard_normal(c.shape), 0, 1)) for c in clean]
    loss = SplitDatasetLoss(model, pairs)
    x = pack(model)
    al = AugmentedLagrangian(SmoothCertificate(model), 0.01, mu=[0.3, 0.0], r=20.0)
    h_now = al.constraints(x)[0]
    assert h_now[0] < 0 < h_now[1]                 # one stage violates its constraint, one does not
    J0 = loss.loss(x)

    def L(p):
        J, g = loss.loss_and_gradient(p)
        P, dP = al.penalty(p)
        return J / J0 + P, g / J0 + dP

    L0, g0 = L(x)
    dx = rng.standard_normal(x.size) * np.maximum(np.abs(x), 0.1) * 1e-2
    steps = [1.0, 0.5, 0.25, 0.125]
    rem = [abs(L(x + h * dx)[0] - L0 - h * g0 @ dx) for h in steps]
    rates = [np.log2(a / b) for a, b in zip(rem, rem[1:])]
    assert min(rates) > 1.8, (rem, rates)


def test_the_outer_update_raises_multipliers_on_violation_and_the_penalty_when_infeasibility_stays():
    from fem_crossdiff.learning.parametrisation import pack
    from fem_crossdiff.learning.stability import AL_START, AugmentedLagrangian, SmoothCertificate
    model = _template(rho=0.99)                     # every stage infeasible for eps = 0.01
    x = pack(model)
    al = AugmentedLagrangian(SmoothCertificate(model), 0.01)
    h, _ = al.constraints(x)
    assert np.all(h < 0)
    info = al.update(x)
    assert np.allclose(info["mu"], -AL_START["r"] * h) and info["r"] == AL_START["r"]     # first round: no history
    info = al.update(x)                            # the same point: infeasibility did not halve
    assert info["r"] == AL_START["r"] * AL_START["growth"]
    state = json.loads(json.dumps(al.state()))    # plain data, restored as it was
    again = AugmentedLagrangian(SmoothCertificate(model), 0.01).load(state, "test")
    assert np.array_equal(again.mu, al.mu) and again.r == al.r and again.rounds == 2
    with pytest.raises(Exception, match="no readable augmented-Lagrangian state"):
        AugmentedLagrangian(SmoothCertificate(model), 0.01).load(dict(state, mu=[-1.0, 0.0]), "test")


def test_the_final_projection_backtracks_to_a_certified_point():
    from fem_crossdiff.learning.parametrisation import pack, unpack
    from fem_crossdiff.learning.stability import anchor, feasible_point
    model = _template()
    eps = 0.01

    def certified(x):
        return model.with_stages(unpack(model, x)).certificate() >= eps

    bad = pack(_template(rho=0.995, d11=0.2))
    assert not certified(bad)
    a = anchor(model, bad)
    assert certified(a)
    x, t = feasible_point(bad, a, certified)
    assert 0 < t < 1 and certified(x)
    assert not certified(a + min(1.0, t + 1e-6) * (bad - a))          # the largest fraction (to bisection)
    same, one = feasible_point(a, pack(model), certified)
    assert one == 1.0 and np.array_equal(same, a)


def _al_run(tmp_path, *extra):
    os.chdir(tmp_path)
    _folder("data")
    return main(["train", "--out", "M.json", "--images", "data", *TINY, "--stability", "augmented-lagrangian",
                 *extra])


@pytest.mark.parametrize("optimiser", [["--maxiter", "25"], ["--optimiser", "adam", "--epochs", "3", "--batch", "2",
                                                             "--val-fraction", "0.25"]], ids=["lbfgsb", "adam"])
def test_an_infeasible_start_ends_feasible_and_certified_with_the_multipliers_recorded(tmp_path, monkeypatch,
                                                                                      capsys, optimiser):
    from fem_crossdiff.model import load_model, save_model
    monkeypatch.chdir(tmp_path)
    start = _template(rho=0.99, d11=0.5)
    eps = 0.005
    assert start.certificate() < eps
    save_model(start, str(tmp_path / "start.json"))
    assert _al_run(tmp_path, "--init", "start.json", "--stability-eps", str(eps), *optimiser) == 0
    out = capsys.readouterr().out
    assert "AL round 1 after" in out and "max mu" in out
    model = load_model("M.json")                   # check_elliptic on loading
    p = model.provenance
    assert model.certificate() >= eps and model.check_elliptic() >= eps
    st = p["stability"]
    assert st["name"] == "augmented-lagrangian" and st["eps"] == eps and st["rounds"] >= 1
    assert len(st["mu"]) == 2 and min(st["mu"]) >= 0 and st["r"] > 0 and st["certificate"] >= eps
    assert p["settings"]["stability"] == {"name": "augmented-lagrangian", "eps": eps}
    history = json.loads(open("M.json.checkpoint").read())["history"] if os.path.exists("M.json.checkpoint") \
        else None
    assert history is None or all("mu" in e and "r" in e for e in history)
    assert p["final_loss"] < p["initial_loss"]


def test_a_feasible_start_with_the_default_eps_ends_feasible(tmp_path, monkeypatch):
    from fem_crossdiff.learning.stability import BOX_MARGIN
    from fem_crossdiff.model import load_model
    monkeypatch.chdir(tmp_path)
    assert _al_run(tmp_path, "--maxiter", "5") == 0
    model = load_model("M.json")
    assert model.provenance["stability"]["eps"] == BOX_MARGIN and model.certificate() >= BOX_MARGIN


BAD = [
    (["--stability", "augmented-lagrangian", "--stability-eps", "0"], "--stability-eps 0.0: expected a certificate "
                                                                      "margin 0 < EPS <= 0.02"),
    (["--stability", "augmented-lagrangian", "--stability-eps", "0.5"], "--stability-eps 0.5: expected"),
    (["--stability", "augmented-lagrangian", "--stability-eps", "nan"], "--stability-eps nan: expected"),
    (["--stability-eps", "0.001"], "--stability-eps 0.001: the margin of --stability augmented-lagrangian"),
    (["--stability", "augmented-lagrangian", "--colour"], "--stability augmented-lagrangian: needs the built-in "
                                                          "family's certificate"),
    (["--stability", "augmented-lagrangian", "--model", "tests/user_models.py:NonlinearCross"],
     "--stability augmented-lagrangian: needs the built-in family's certificate (differentiable); the user model"),
    (["--patience", "2"], "--patience 2: stops when the validation loss stops improving; give validation images"),
    (["--patience", "0", "--val-fraction", "0.5"], "--patience 0: expected an integer >= 1"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[m.split(":")[0][:40] for _, m in BAD])
def test_bad_stability_and_patience_options_are_refused_by_one_line(tmp_path, monkeypatch, capsys, args, message):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args = [a.replace("tests/", os.path.join(root, "tests") + "/") for a in args]
    monkeypatch.chdir(tmp_path)
    _folder("data", n=2)
    before = snapshot(tmp_path)
    assert main(["train", "--out", "m.json", "--images", "data", *TINY, *args]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fem-crossdiff train: error: "), err
    assert message in err[0], err[0]
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("optimiser, unit", [(["--maxiter", "30"], "iteration"),
                                             (["--optimiser", "adam", "--epochs", "8", "--lr", "1",
                                               "--lr-schedule", "constant", "--batch", "2"], "epoch")],
                         ids=["lbfgsb", "adam"])
def test_patience_stops_when_validation_stops_improving(tmp_path, monkeypatch, capsys, optimiser, unit):
    from fem_crossdiff.model import load_model
    monkeypatch.chdir(tmp_path)
    _folder("data")
    assert main(["train", "--out", "M.json", "--images", "data", *TINY, "--stages", "1", "--modulation", "0",
                 "--val-fraction", "0.25", "--patience", "2", *optimiser]) == 0
    p = load_model("M.json").provenance
    out = capsys.readouterr().out
    stop = p["stopped_early_at"]
    assert p["patience"] == 2
    assert stop is not None and stop == p["best_iteration"] + 2 == p["iterations"]       # no iterate after it
    assert f"early stop at {unit} {stop}: the validation loss has not improved for 2 {unit}s" in out
    assert sum(line.startswith(f"{'it ' if unit == 'iteration' else 'epoch '}") for line in out.splitlines()) == stop


def test_a_resumed_augmented_lagrangian_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    """The multipliers and penalty are in the resume file (after each epoch's outer update): 2 epochs then 2 more
    take the same steps as 4 at once (constant step size), from an infeasible start where they matter."""
    from fem_crossdiff.model import load_model, save_model
    monkeypatch.chdir(tmp_path)
    _folder("data")
    save_model(_template(rho=0.99, d11=0.5), "start.json")
    common = ["train", "--images", "data", *TINY, "--init", "start.json", "--stability", "augmented-lagrangian",
              "--stability-eps", "0.005", "--optimiser", "adam", "--batch", "2", "--lr-schedule", "constant"]
    assert main([*common, "--out", "A.json", "--epochs", "4"]) == 0
    assert main([*common, "--out", "B.json", "--epochs", "2"]) == 0
    os.rename("B.json", "B2.json")
    os.rename("B.json.curve.png", "B2.curve.png")
    assert main([*common, "--out", "B.json", "--epochs", "4", "--resume"]) == 0
    a, b = load_model("A.json"), load_model("B.json")
    assert a.provenance["stability"]["rounds"] == b.provenance["stability"]["rounds"] == 4
    assert max(a.provenance["stability"]["mu"]) > 0                      # the multipliers took part
    assert a.provenance["stability"]["mu"] == pytest.approx(b.provenance["stability"]["mu"], rel=1e-10, abs=1e-13)
    for sa, sb in zip(a.stages, b.stages):
        for k in sa:
            assert np.allclose(sa[k], sb[k], rtol=1e-10, atol=1e-13), k
