"""Known behaviour of the named models: conservation, stability, Gilboa's limits, independent references."""
import json

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import firedrake as fd
from fem_crossdiff.fem import function_to_image, image_mesh, image_to_function
from fem_crossdiff.fem import Evolution
from fem_crossdiff.model import (MODELS, CrossDiffusionModel, Influence, ModelError, make_model, load_model,
                                  save_model)

FAST = {"ksp_rtol": 1e-12, "ksp_atol": 1e-14}


def _evolve(img, model, mesh=None, **kw):
    ev = Evolution(model, mesh or image_mesh(img.shape), solver_parameters=FAST, **kw)
    f = image_to_function(img, ev.V)
    return ev, f, ev.run(f)


@pytest.mark.parametrize("name", list(MODELS))
def test_average_grey_value_is_conserved_without_reaction(name, noisy_small):
    _, noisy = noisy_small
    ev, f, w = _evolve(noisy, make_model(name, steps=6))
    before, after = fd.assemble(f * fd.dx), fd.assemble(w[0] * fd.dx)
    assert abs(after - before) < 1e-9 * abs(before)
    # ...and the image did change (the test is not vacuous)
    assert fd.norm(w[0] - f) > 1e-3 * fd.norm(f)


def test_fidelity_reaction_pulls_u_toward_f(noisy_small):
    """R = (λ(f - u), 0): the larger λ, the closer u(T) stays to the data f."""
    _, noisy = noisy_small
    dist = []
    for lam in (0.0, 0.5, 5.0):
        ev, f, w = _evolve(noisy, make_model("heat", lam=lam, steps=4))
        dist.append(fd.norm(w[0] - f))
    assert dist[0] > dist[1] > dist[2] > 0


@pytest.mark.parametrize("name", list(MODELS))
def test_elliptic_models_are_energy_stable_over_long_times(name, noisy_small):
    """Semi-implicit Euler with D uniformly positive definite: ||w^{n+1}||_L2 <= ||w^n||_L2 at every step."""
    _, noisy = noisy_small
    model = make_model(name, time=400.0, steps=40)
    ev = Evolution(model, image_mesh(noisy.shape), solver_parameters=FAST)
    ev.set_initial(image_to_function(noisy, ev.V))
    norms = [fd.norm(ev.w_old)]
    for n in range(ev.steps):
        ev.step(n)
        norms.append(fd.norm(ev.w_old))
    assert np.all(np.diff(norms) <= 1e-10 * norms[0])
    assert np.isfinite(norms[-1])
    # u tends to its mean: the image flattens out, it does not blow up
    u = function_to_image(fd.Function(ev.V).interpolate(ev.w[0]))
    assert u.max() - u.min() < noisy.max() - noisy.min()


def _q1_matrices(H, W):
    """Independent Q1 mass and stiffness on the pixel grid (unit spacing) as Kronecker products of 1-D ones."""
    def one_d(n):
        m = sp.diags([np.full(n - 1, 1 / 6), np.r_[1 / 3, np.full(n - 2, 2 / 3), 1 / 3], np.full(n - 1, 1 / 6)],
                     [-1, 0, 1])
        k = sp.diags([np.full(n - 1, -1.0), np.r_[1.0, np.full(n - 2, 2.0), 1.0], np.full(n - 1, -1.0)], [-1, 0, 1])
        return m.tocsr(), k.tocsr()
    mx, kx = one_d(W)
    my, ky = one_d(H)
    return sp.kron(my, mx).tocsc(), (sp.kron(ky, mx) + sp.kron(my, kx)).tocsc()


def test_linear_complex_equals_complex_valued_diffusion(noisy_small):
    """Gilboa: u + i v solves I_t = e^{iθ} ΔI; compare with a complex implicit Euler built without Firedrake."""
    _, noisy = noisy_small
    theta, T, N = 0.3, 3.0, 6
    model = make_model("linear-complex", theta=theta, time=T, steps=N)
    ev, f, w = _evolve(noisy, model)
    u = function_to_image(fd.Function(ev.V).interpolate(w[0]))
    v = function_to_image(fd.Function(ev.V).interpolate(w[1]))
    H, W = noisy.shape
    M, K = _q1_matrices(H, W)
    A = (M + (T / N) * np.exp(1j * theta) * K).tocsc()
    I = noisy[::-1].reshape(-1).astype(complex)  # grid order: y (from the bottom) slow, x fast
    lu = spla.splu(A)
    for _ in range(N):
        I = lu.solve(M @ I)
    ref = I.reshape(H, W)[::-1]
    assert np.max(np.abs(u - ref.real)) < 1e-9
    assert np.max(np.abs(v - ref.imag)) < 1e-9
    assert np.max(np.abs(v)) > 1e-3  # v is really non-trivial


def test_small_theta_limit_of_linear_complex_is_t_laplacian_of_heat(noisy_small):
    """v/θ → t Δu_heat as θ → 0 (Gilboa). For implicit Euler the discrete limit is z = -t (M + τK)^{-1} K u_heat,
    a smoothed t Δ_h u_heat; the gap closes like θ²."""
    _, noisy = noisy_small
    T, N = 2.0, 4
    mesh = image_mesh(noisy.shape)
    ev_h, f, w_h = _evolve(noisy, make_model("heat", time=T, steps=N), mesh)
    u_heat = fd.Function(ev_h.V).interpolate(w_h[0])
    z, phi = fd.TrialFunction(ev_h.V), fd.TestFunction(ev_h.V)
    tau = T / N
    ref = fd.Function(ev_h.V)
    fd.solve((z * phi + tau * fd.inner(fd.grad(z), fd.grad(phi))) * fd.dx
             == -T * fd.inner(fd.grad(u_heat), fd.grad(phi)) * fd.dx, ref, solver_parameters={"ksp_rtol": 1e-13})
    errors = []
    for theta in (0.2, 0.1, 0.05):
        _, _, w = _evolve(noisy, make_model("linear-complex", theta=theta, time=T, steps=N), mesh)
        errors.append(fd.norm(w[1] / theta - ref) / fd.norm(ref))
    rates = np.log2(np.array(errors[:-1]) / errors[1:])
    assert errors[-1] < 2e-3
    assert np.all(rates > 1.8), (errors, rates)


def test_non_elliptic_parameters_are_refused():
    with pytest.raises(ModelError, match="d11=-1 and d22=1 must be > 0"):
        make_model("linear-cross", d11=-1.0)
    with pytest.raises(ModelError, match=r"\(d12 \+ d21\)\^2 = 16 must be < 4 d11 d22 = 4"):
        make_model("linear-cross", d12=2.0, d21=2.0)
    with pytest.raises(ModelError, match="theta=2 must lie in"):
        make_model("linear-complex", theta=2.0)
    with pytest.raises(ModelError, match="k11=-0.1 must be > 0"):
        make_model("perona-malik", k=-0.1)
    with pytest.raises(ModelError, match="time must be a positive"):
        make_model("heat", time=-1.0)


def test_unknown_model_and_parameter_are_refused():
    with pytest.raises(ModelError, match="unknown model 'tv'; expected one of heat, perona-malik"):
        make_model("tv")
    with pytest.raises(ModelError, match="model 'heat' has no parameter 'theta'"):
        make_model("heat", theta=0.1)


@pytest.mark.parametrize("name", list(MODELS) + ["sigma15", "sigma25"])
def test_every_builtin_certificate_is_a_lower_bound_of_the_framework_s_sampled_check(name):
    """The framework's numerical check (λ_min of D's symmetric part at sampled states, with D from the forms the
    solver assembles) cross-checks every built-in model's analytic certificate."""
    from fem_crossdiff.fem.certify import sampled_ellipticity
    from fem_crossdiff.learned import shipped_model
    model = load_model(shipped_model(int(name[5:]))) if name.startswith("sigma") else make_model(name)
    alpha = model.certificate()
    assert alpha > 0
    assert sampled_ellipticity(model) >= alpha * (1 - 1e-12)


def test_the_sampled_quadratic_form_is_the_minimum_of_xi_d_xi(rng):
    """λ_min of the symmetric part is the minimum of ξᵀDξ/|ξ|² (random ξ never go below it, and come close); the
    certificate of nonlinear-cross is tight to within a factor 2.5, so a doubled claim would be caught."""
    from fem_crossdiff.fem import DiscreteModel, pixel_space
    from fem_crossdiff.fem.certify import sampled_ellipticity
    model = make_model("nonlinear-cross", k=0.05)
    sampled = sampled_ellipticity(model, points=12)
    assert model.certificate() <= sampled < 2.5 * model.certificate()
    mesh = fd.RectangleMesh(4, 4, 4.0, 4.0, quadrilateral=True)
    w = fd.Function(pixel_space(mesh, 2))
    w.dat.data[:, 1] = rng.uniform(-1, 1, len(w.dat.data))
    D = fd.Function(fd.TensorFunctionSpace(mesh, "DQ", 1)).interpolate(DiscreteModel(model, mesh).D(w, 0))
    D = D.dat.data_ro.reshape(-1, 2, 2)
    xi = rng.standard_normal((len(D), 2000, 2, 2))                           # ξ_i ∈ R², i = 1, 2
    quad = np.einsum("nij,nkid,nkjd->nk", D, xi, xi) / np.einsum("nkid,nkid->nk", xi, xi)
    lam = np.linalg.eigvalsh(0.5 * (D + D.transpose(0, 2, 1))).min(axis=1)
    assert np.all(quad.min(axis=1) >= lam - 1e-14) and np.all(quad.min(axis=1) <= lam + 0.05 * np.abs(lam) + 1e-6)


def test_h11_on_a_constant_base_makes_d_state_dependent_on_every_path(noisy_small):
    """D = M·h11(v) with g11 = g22 = 1: the matrix changes with v, so no path may reuse the first step's matrix.
    Reference: every step a fresh Evolution (its matrix assembled from that step's state)."""
    model = CrossDiffusionModel("h11-only", h11=Influence("rbf", "v", floor=1.0, centres=3, span=0.05),
                                stages=[dict(d11=1.0, d22=0.5, rho=0.0, beta=-0.3, lam=0.0, mu=0.0,
                                             w11h=[3.0, 0.5, 3.0])], time=2.0, steps=4)
    _, noisy = noisy_small
    mesh = image_mesh(noisy.shape)
    ref = None
    for n in range(model.steps):
        one = Evolution(model, mesh, time=model.time / model.steps, steps=1,
                        solver_parameters={"ksp_rtol": 1e-12}, fast=False)
        one.set_initial(image_to_function(noisy, one.V))
        if ref is not None:
            one.w_old.assign(ref)
        one.step(0)
        ref = fd.Function(one.W).assign(one.w)
    assert np.abs(ref.dat.data_ro[:, 1]).max() > 0.02                      # v moved: h11(v) is not constant
    for fast in (True, False):
        ev = Evolution(model, mesh, solver_parameters={"ksp_rtol": 1e-12}, fast=fast)
        w = ev.run(image_to_function(noisy, ev.V))
        assert (ev.fast is not None) == fast
        assert np.abs(w.dat.data_ro - ref.dat.data_ro).max() < 1e-9
    assert model.state_dependent and not make_model("linear-cross").state_dependent


def test_influence_functions_serialise_after_their_centres_were_read():
    """to_dict() holds the defining fields only: an influence whose cached centres were read rebuilds, and a
    model gains h11 or psi after its RBF centres were used."""
    from fem_crossdiff.learning import learned_template, with_modulation, with_psi
    g = Influence("rbf", "v", floor=0.02, centres=5, span=0.05)
    assert g.centre_values[0] == -0.05
    assert Influence(**g.to_dict()) == g
    model = learned_template(stages=1, centres=4)
    model.g22.centre_values, model.g11.centre_values                       # noqa: B018 (cached on first read)
    grown = with_psi(with_modulation(model, 3), 3)
    grown.h11.centre_values, grown.psi.centre_values                       # noqa: B018
    again = with_psi(with_modulation(grown.replace(h11={"kind": "one"}, psi=None,
                                                    stages=[{k: v for k, v in st.items() if k not in ("w11h", "wpsi")}
                                                            for st in grown.stages]), 3), 3)
    assert again == grown


def test_model_json_round_trip_and_tampering(tmp_path):
    model = make_model("nonlinear-cross", d21=0.2)
    save_model(model, tmp_path / "m.json")
    again = load_model(tmp_path / "m.json")
    assert again == model
    text = (tmp_path / "m.json").read_text().replace('"rho": ', '"rho": 1', 1)
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(ModelError, match="bad.json: its contents do not match the digest"):
        load_model(tmp_path / "bad.json")
    d = json.loads(text)
    del d["digest"]                                                     # written by hand: no digest, still checked
    (tmp_path / "hand.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match="not uniformly elliptic"):
        load_model(tmp_path / "hand.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ModelError, match="junk.json: not a valid model JSON"):
        load_model(tmp_path / "junk.json")


def test_a_model_file_with_a_stage_removed_is_refused_although_its_certificate_still_holds(tmp_path):
    """Removing a stage of a shipped model (one where the certificate's minimum is not) keeps the stored certificate
    right but changes the model: the digest refuses it."""
    from fem_crossdiff.learned import shipped_model
    d = json.loads(open(shipped_model(25)).read())
    model = load_model(shipped_model(25))
    alphas = [model.with_stages([st]).certificate() for st in model.stages]
    keep = int(np.argmin(alphas))
    d["stages"] = [st for k, st in enumerate(d["stages"]) if k == keep or k != (keep + 1) % len(alphas)]
    stripped = dict(d)
    del stripped["digest"]
    assert np.isclose(CrossDiffusionModel.from_dict(stripped).certificate(), d["certificate"])
    (tmp_path / "cut.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match="cut.json: its contents do not match the digest"):
        load_model(tmp_path / "cut.json")


def _with_psi(model, weights, span=0.05):
    from fem_crossdiff.learning import with_psi
    model = with_psi(model, len(weights), span)
    return model.with_stages([dict(st, wpsi=list(weights)) for st in model.stages])


@pytest.mark.parametrize("fast", [True, False])
def test_reaction_psi_adds_its_mass_exactly(fast, noisy_small):
    """With v ≡ 0 (no coupling) and λ = 0, d/dt ∫u = ∫ψ(0) = ψ(0)|Ω|: the grey mass grows by T ψ(0) |Ω| exactly
    (Neumann: diffusion conserves mass), on the fast and the UFL path alike."""
    _, noisy = noisy_small
    model = _with_psi(make_model("perona-malik", time=0.5, steps=5), [0.2, -0.1, 0.3, 0.05, 0.1])
    psi0 = float(model.psi.evaluate(np.array(0.0), model.stages[0]["wpsi"]))
    ev, f, w = _evolve(noisy, model, fast=fast)
    assert (ev.fast is not None) == fast
    area = fd.assemble(fd.Constant(1.0) * fd.dx(domain=ev.mesh))
    gained = fd.assemble(w[0] * fd.dx) - fd.assemble(f * fd.dx)
    assert abs(psi0) > 0.05 and abs(gained - 0.5 * psi0 * area) < 1e-10 * area
    assert np.abs(w.dat.data_ro[:, 1]).max() == 0.0


def test_psi_model_round_trip_and_bad_psi_refused(tmp_path):
    from fem_crossdiff.model import CrossDiffusionModel, Influence
    model = _with_psi(make_model("nonlinear-cross"), [0.1, -0.2, 0.3])
    save_model(model, tmp_path / "psi.json")
    assert load_model(tmp_path / "psi.json") == model
    d = model.to_dict()
    del d["certificate"], d["digest"]
    with pytest.raises(ModelError, match="psi must be an rbf influence of v with floor 0"):
        CrossDiffusionModel.from_dict(dict(d, psi=dict(d["psi"], floor=0.1)))
    with pytest.raises(ModelError, match="psi must be an rbf influence of v with floor 0"):
        CrossDiffusionModel.from_dict(dict(d, psi=dict(d["psi"], variable="grad_u")))
    with pytest.raises(ModelError, match="stage 0: wpsi must have 3 weights"):
        CrossDiffusionModel.from_dict(dict(d, stages=[dict(d["stages"][0], wpsi=[0.1, 0.2])]))
    with pytest.raises(ModelError, match="unknown parameters \\['wpsi'\\]"):
        CrossDiffusionModel.from_dict(dict(d, psi=None))
    with pytest.raises(ModelError, match="rbf influence g11 needs a floor > 0"):
        CrossDiffusionModel("bad", g11=Influence("rbf", "v", floor=0.0, centres=3), stages=[dict(
            d11=1.0, d22=1.0, rho=0.0, beta=0.0, lam=0.0, mu=0.0, w11=[1.0, 1.0, 1.0])])


def test_denoise_reuses_no_evolution_of_another_model_structure(noisy_small):
    """denoise() caches compiled evolutions by model structure: the same model with and without psi, in turn."""
    from fem_crossdiff.fem import denoise
    _, noisy = noisy_small
    plain = make_model("nonlinear-cross", time=0.5, steps=3)
    psi = _with_psi(plain, [0.3, -0.2, 0.4])
    first, with_psi, again = denoise(noisy, plain), denoise(noisy, psi), denoise(noisy, plain)
    assert np.array_equal(first, again) and np.abs(with_psi - first).max() > 1e-3
