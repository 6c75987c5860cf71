"""User models in UFL, with any number of components, through every part of the framework: the same results as the
built-in family where they coincide, conservation and energy decay for n = 3, certificates, model files, Taylor
tests, training from the command line, several ranks, the studies."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import firedrake as fd

from fem_crossdiff.cli import main
from fem_crossdiff.errors import ModelError
from fem_crossdiff.fem import Evolution, image_mesh, image_to_function
from fem_crossdiff.learning import DatasetLoss, pack, training_pairs, unpack
from fem_crossdiff.model import load_definition, load_model, make_model, save_model

HERE = Path(__file__).resolve().parent
DEFS = HERE / "user_models.py"
TIGHT = {"ksp_rtol": 1e-12, "ksp_atol": 1e-15, "snes_rtol": 1e-12, "snes_atol": 1e-14}


def user(name, **params):
    return make_model(f"{DEFS}:{name}", **params)


def builtin_nonlinear_cross(**horizon):
    return make_model("nonlinear-cross", d11=1.0, d12=-0.2, d21=0.3, d22=0.6, k=0.05, lam=0.1, mu=0.2, **horizon)


@pytest.fixture(scope="module")
def pairs():
    return training_pairs(["brick", "text"], 25, patch=14, per_image=1, seed=1)


@pytest.mark.parametrize("scheme", ["semi-implicit", "implicit", "crank-nicolson"])
def test_a_user_model_identical_to_a_builtin_one_gives_the_same_evolution(scheme, noisy_small):
    """NonlinearCross written in UFL by a user (UFL path) = the built-in nonlinear-cross (fast path where it
    applies), every scheme, to solver tolerance."""
    _, noisy = noisy_small
    mesh = image_mesh(noisy.shape)
    states = []
    for model in (user("NonlinearCross"), builtin_nonlinear_cross(time=1.0, steps=6)):
        ev = Evolution(model, mesh, scheme=scheme, solver_parameters=TIGHT)
        states.append(ev.run(image_to_function(noisy, ev.V)).dat.data_ro.copy())
        assert (ev.fast is not None) == (scheme == "semi-implicit" and model.name == "nonlinear-cross")
    assert np.abs(states[0][:, 1]).max() > 1e-3                                   # v is really excited
    assert np.abs(states[0] - states[1]).max() < 1e-10


def test_a_user_model_identical_to_a_builtin_one_gives_the_same_gradient(pairs):
    """dJ/dp of the UFL user model (Firedrake's derivative forms) = that of the built-in one by the fast path and
    its C adjoint, through the chain rule between the parametrisations (d12 = ρ√(d11 d22) + β, d21 = … − β)."""
    ours, theirs = user("NonlinearCross"), builtin_nonlinear_cross(time=1.0, steps=6)
    solver = {"ksp_rtol": 1e-12}
    _, g = DatasetLoss(ours, pairs, checkpoints="all", solver_parameters=solver).loss_and_gradient(pack(ours))
    builtin = DatasetLoss(theirs, pairs, checkpoints="all", solver_parameters=solver)
    _, h = builtin.loss_and_gradient(pack(theirs))
    assert builtin.ev.fast is not None
    G, H = dict(zip(ours.parameter_names, g)), dict(zip(theirs.parameter_names, h))
    p = theirs.stages[0]
    r = np.sqrt(p["d11"] * p["d22"])
    expected = {"lam": G["lam"], "mu": G["mu"], "k11": G["k"] * 0.5, "k22": G["k"] * 0.5,   # k = k11 = k22
                "beta": G["d12"] - G["d21"], "rho": r * (G["d12"] + G["d21"]),
                "d11": G["d11"] + p["rho"] * r / (2 * p["d11"]) * (G["d12"] + G["d21"]),
                "d22": G["d22"] + p["rho"] * r / (2 * p["d22"]) * (G["d12"] + G["d21"])}
    # the built-in's k11 and k22 are two parameters; their sum is the user's dJ/dk
    assert np.isclose(H["k11"] + H["k22"], G["k"], rtol=1e-8)
    for name in ("lam", "mu", "beta", "rho", "d11", "d22"):
        assert np.isclose(H[name], expected[name], rtol=1e-8, atol=1e-14), name


def test_a_three_component_model_conserves_the_mean_of_u_and_its_energy_decays(noisy_small):
    """Without reaction the u-equation is a divergence with a no-flux boundary: ∫u is conserved exactly; the
    semi-implicit step with a positive definite symmetric part of D never increases ∫|w|²."""
    _, noisy = noisy_small
    model = user("TwoScales", lam=0.0)
    ev = Evolution(model, image_mesh(noisy.shape), solver_parameters={"ksp_rtol": 1e-12})
    f = image_to_function(noisy, ev.V)
    mass0 = fd.assemble(f * fd.dx)
    energies = []
    ev.run(f, callback=lambda n, steps: energies.append(fd.assemble(fd.inner(ev.w, ev.w) * fd.dx)))
    assert ev.W.value_size == 3 and np.abs(ev.w.dat.data_ro[:, 1:]).max() > 1e-3
    assert abs(fd.assemble(ev.w[0] * fd.dx) - mass0) < 1e-10 * abs(mass0)
    energies = [fd.assemble(fd.inner(f, f) * fd.dx)] + energies
    assert all(b <= a * (1 + 1e-12) for a, b in zip(energies, energies[1:]))


def test_a_model_whose_certificate_fails_is_refused_before_any_solve(noisy_small):
    _, noisy = noisy_small
    mesh = image_mesh(noisy.shape)
    with pytest.raises(ModelError, match="'NotElliptic' is not uniformly elliptic: .* eigenvalue -0.1"):
        Evolution(user("NotElliptic"), mesh)
    with pytest.raises(ModelError, match="'Overclaims': its ellipticity bound 7.74597 is not a lower bound"):
        Evolution(user("Overclaims"), mesh)
    assert Evolution(user("TwoScales"), mesh).model.certificate() == pytest.approx(0.05)


def test_a_model_file_records_its_definition_and_is_refused_without_it(tmp_path, noisy_small):
    """Saved next to a copy of its definition: the file names it relative to itself, loads and denoises alike;
    with the definition gone, loading is refused by name."""
    shutil.copy(DEFS, tmp_path / "defs.py")
    model = load_definition(f"{tmp_path / 'defs.py'}:TwoScales")(lam=0.1)
    save_model(model, tmp_path / "m.json")
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["definition"] == "defs.py:TwoScales" and saved["components"] == 3
    again = load_model(tmp_path / "m.json")
    assert again.stages == model.stages and type(again).__name__ == "TwoScales"
    _, noisy = noisy_small
    assert np.array_equal(fc_denoise(noisy, again), fc_denoise(noisy, model))
    (tmp_path / "defs.py").rename(tmp_path / "moved.py")
    with pytest.raises(ModelError, match=r"m.json: made from the definition 'defs.py:TwoScales', which cannot be "
                                         r"loaded \(model definition .*no such file"):
        load_model(tmp_path / "m.json")


def fc_denoise(img, model):
    from fem_crossdiff.fem import denoise
    return denoise(img, model)


def test_taylor_remainder_is_second_order_for_every_parameter_of_a_three_component_model(pairs):
    model = user("TwoScales")
    loss = DatasetLoss(model, pairs[:1], checkpoints="all")
    x = pack(model)
    J0, g = loss.loss_and_gradient(x)
    rates = {}
    for i, name in enumerate(model.parameter_names * len(model.stages)):
        e = np.zeros_like(x)
        e[i] = 1.0
        hs = 1e-2 * max(1.0, abs(x[i])) * 0.5 ** np.arange(3)
        r = [abs(loss.loss(x + h * e) - J0 - h * g[i]) for h in hs]
        rates[f"{name}[{i // len(model.parameter_names)}]"] = np.log2(r[1] / r[2])
    assert min(rates.values()) > 1.8, rates


def test_cli_denoises_and_trains_a_user_model_and_the_trained_file_serves_again(tmp_path, capsys):
    np.save(tmp_path / "in.npy", training_pairs(["brick"], 25, patch=16, per_image=1, seed=3)[0][1])
    spec = f"{DEFS}:TwoScales"
    assert main(["denoise", str(tmp_path / "in.npy"), str(tmp_path / "o.npy"), "--model", spec, "--param", "lam=0.1",
                 "--edges", str(tmp_path / "v.npy"), "--quiet"]) == 0
    assert np.load(tmp_path / "o.npy").shape == (16, 16) and np.load(tmp_path / "v.npy").max() == 1.0
    out = str(tmp_path / "m.json")
    args = ["train", "--out", out, "--model", spec, "--images", "brick", "--patch", "12", "--per-image", "1"]
    assert main([*args, "--maxiter", "2"]) == 0
    saved = json.loads(Path(out).read_text())
    assert saved["definition"].endswith("user_models.py:TwoScales") and saved["provenance"]["iterations"] >= 1
    assert saved["provenance"]["final_loss"] <= saved["provenance"]["initial_loss"]
    Path(out).unlink()                                                        # as if interrupted before saving
    assert main([*args, "--maxiter", "3", "--resume"]) == 0                   # continues from OUT.checkpoint
    assert main(["denoise", str(tmp_path / "in.npy"), str(tmp_path / "o2.npy"), "--model", out, "--quiet"]) == 0
    assert main(["train", "--out", str(tmp_path / "x.json"), "--model", f"{DEFS}:NotElliptic"]) == 2
    assert "'NotElliptic': its box admits models that are not uniformly elliptic" in capsys.readouterr().err


@pytest.mark.parallel
def test_two_ranks_give_the_same_user_model_loss_and_gradient(tmp_path, mpirun):
    script = tmp_path / "run.py"
    script.write_text(
        "import json, sys\n"
        "from mpi4py import MPI\n"
        "from fem_crossdiff.model import make_model\n"
        "from fem_crossdiff.learning import DatasetLoss, pack, training_pairs\n"
        f"m = make_model({str(DEFS) + ':TwoScales'!r})\n"
        "pairs = training_pairs(['brick', 'text'], 25, patch=14, per_image=1, seed=1)\n"
        "J, g = DatasetLoss(m, pairs, checkpoints='all').loss_and_gradient(pack(m))\n"
        "if MPI.COMM_WORLD.rank == 0:\n"
        "    json.dump({'J': J, 'g': list(g)}, open(sys.argv[1], 'w'))\n")
    results = []
    for n in (1, 2):
        mpirun(n, script, tmp_path / f"r{n}.json")
        results.append(json.loads((tmp_path / f"r{n}.json").read_text()))
    assert np.isclose(results[0]["J"], results[1]["J"], rtol=1e-12)
    assert np.allclose(results[0]["g"], results[1]["g"], rtol=1e-6, atol=1e-15)


def test_studies_take_a_user_model_refinement_and_adjoint_gradients(pairs):
    """The refinement study's functional convergence and the adjoint study's three gradients on a 3-component
    user model: the discrete gradient equals finite differences; the continuous adjoint (derived by UFL) is close
    and its gap shrinks with τ."""
    from fem_crossdiff.studies.continuous_adjoint import GradientProblem, relative_gap
    from fem_crossdiff.studies.manufactured import functional_convergence
    model = user("TwoScales", lam=0.1)
    clean, noisy = pairs[0]
    fc_ = functional_convergence(model, clean, noisy, direction="h", levels=2, steps=4)
    assert np.log2(fc_["dJ"][0] / fc_["dJ"][1]) > 1.5, fc_["dJ"]                 # J converges in h
    gaps = []
    for steps in (4, 8):
        gp = GradientProblem(model, clean, noisy, steps=steps)
        _, gd = gp.discrete_gradient()
        _, gc = gp.continuous_gradient()
        if steps == 4:
            gf = gp.fd_gradient(eps=1e-6)
            assert relative_gap(gd, gf) < 1e-6
        gaps.append(relative_gap(gc, gd))
    assert gaps[0] < 0.5 and gaps[1] < 0.7 * gaps[0], gaps


def test_parameters_of_a_user_model_are_refused_outside_their_box():
    with pytest.raises(ModelError, match="parameter a1=9 lies outside its box \\[0.05, 5\\]"):
        user("TwoScales", a1=9.0)
    with pytest.raises(ModelError, match="has no parameter 'zeta'"):
        user("TwoScales", zeta=1.0)
    model = user("TwoScales")
    assert unpack(model, pack(model)) == model.stages


def test_an_installed_package_registers_a_model_by_name(tmp_path, monkeypatch, noisy_small):
    """A package's entry point in the group fem_crossdiff.models makes its model a name for make_model, denoise and
    --model, with no edit inside fem_crossdiff."""
    (tmp_path / "scales_pkg.py").write_text(DEFS.read_text())
    info = tmp_path / "scales_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: scales-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[fem_crossdiff.models]\ntwo-scales = scales_pkg:TwoScales\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = make_model("two-scales", lam=0.2)
    assert type(model).__name__ == "TwoScales" and model.stages[0]["lam"] == 0.2
    _, noisy = noisy_small
    assert fc_denoise(noisy, model).shape == noisy.shape
    with pytest.raises(ModelError, match="unknown model 'three-scales'"):
        make_model("three-scales")
