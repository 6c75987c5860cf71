"""The fast semi-implicit path (fastassembly) reproduces the UFL path: same matrix, same evolution, same errors."""
import numpy as np
import pytest
from petsc4py import PETSc

import firedrake as fd
from fem_crossdiff.fast import FastSemiImplicitSolver, SlowPathWarning
from fem_crossdiff.fem import image_mesh, image_to_function
from fem_crossdiff.fem.functions import dof_coordinates
from fem_crossdiff.model import MODELS, CrossDiffusionModel, Influence, make_model
from fem_crossdiff.fem import Evolution, EvolutionError

TIGHT = {"ksp_rtol": 1e-12, "ksp_atol": 1e-15}


def _rbf_v(stages=2, equal=False):
    """Identical RBF influences of v (as in the brief for learned models); w22 = w11 or not."""
    g = Influence("rbf", "v", floor=0.02, centres=5, span=0.02)
    w = [1.0, 0.5, 0.0, 0.5, 1.0]
    stage = dict(d11=1.0, d22=0.8, rho=0.1, beta=-0.1, lam=0.0, mu=0.0, w11=w,
                 w22=w if equal else [0.8, 0.6, 0.1, 0.4, 1.2])
    return CrossDiffusionModel("rbf-v", g11=g, g22=g, stages=[stage] * stages, time=2.0, steps=4)


def _learned(stages=2):
    """The learned-model template (RBF influences), its stages made different from each other."""
    try:
        from fem_crossdiff.learning import learned_template
        model = learned_template(stages=stages)
    except ImportError:
        model = _rbf_v(stages)
    rng = np.random.default_rng(7)
    out = []
    for k, st in enumerate(model.stages):
        st = dict(st, beta=st["beta"] + 0.05 * k, lam=0.1 * k, mu=0.2 * k)
        for name in ("w11", "w22"):
            st[name] = (np.asarray(st[name]) * rng.uniform(0.5, 1.5, np.size(st[name]))).tolist()
        out.append(st)
    return model.with_stages(out)


def _unequal_rates():
    """Identical rational influences whose rates k11 != k22 (the off-diagonal is then sqrt(g11 g22))."""
    g = Influence("rational", "v")
    return CrossDiffusionModel("unequal", g11=g, g22=g, time=2.0, steps=4,
                               stages=[dict(d11=1.0, d22=0.6, rho=0.2, beta=0.05, lam=0.3, mu=0.1,
                                            k11=0.02, k22=0.05)])


def _gradient_rbf():
    """An RBF influence of |grad u| and an exponential one of v (both gradient and value paths)."""
    return CrossDiffusionModel("grad-rbf", g11=Influence("rbf", "grad_u", floor=0.05, centres=4, span=0.5),
                               g22=Influence("exponential", "v"), time=2.0, steps=4,
                               stages=[dict(d11=1.0, d22=0.7, rho=0.3, beta=0.1, lam=0.2, mu=0.3,
                                            w11=[0.1, 0.5, 0.2, 0.3], k22=0.05)])


def _modulated():
    """The learned template with the factor h11(v) of the u-diffusivity, its weights nonzero."""
    from fem_crossdiff.learning import with_modulation
    model = with_modulation(_learned(), 5)
    return model.with_stages([dict(st, w11h=[0.3 * (k + 1), 0.0, 1.0, 0.2, 0.5])
                              for k, st in enumerate(model.stages)])


def _reacting():
    """The modulated template with the reaction psi(v) in the u-equation, its signed weights nonzero."""
    from fem_crossdiff.learning import with_psi
    model = with_psi(_modulated(), 5, span=0.05)
    return model.with_stages([dict(st, wpsi=[0.4, -0.3 * (k + 1), 0.0, 0.5, -1.0])
                              for k, st in enumerate(model.stages)])


MODEL_CASES = {**{name: (lambda name=name: make_model(name)) for name in MODELS},
               "learned": _learned, "modulated": _modulated, "rbf-v": _rbf_v, "rbf-v-equal": lambda: _rbf_v(equal=True),
               "unequal": _unequal_rates, "grad-rbf": _gradient_rbf, "reacting": _reacting}


def _random_state(ev, rng):
    data = ev.w_old.dat.data
    data[:, 0] = rng.random(len(data))
    data[:, 1] = 0.05 * rng.standard_normal(len(data))


def _csr(mat):
    if mat.getType() != "seqaij":
        mat = mat.convert("aij", PETSc.Mat())  # a new matrix: convert() without a target works in place
    return mat.getValuesCSR()


def _assert_same_matrix(ev, fast, rng):
    _random_state(ev, rng)
    for k in range(len(ev.discrete.params)):
        ufl_matrix = fd.assemble(ev.semi_implicit_forms(k)[0], mat_type="aij").petscmat
        I, J, V = _csr(ufl_matrix)
        I2, J2, V2 = _csr(fast.assemble(ev.w_old.dat.data_ro, k, float(ev.dt)))
        np.testing.assert_array_equal(I, I2)
        np.testing.assert_array_equal(J, J2)
        assert np.abs(V - V2).max() < 1e-12 * np.abs(V).max(), (ev.model.name, k)


@pytest.mark.parametrize("refine", [0, 1])
@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_fast_matrix_equals_the_ufl_matrix(name, refine, rng):
    ev = Evolution(MODEL_CASES[name](), image_mesh((9, 13), refine))
    fast = FastSemiImplicitSolver(ev.discrete, ev.W, dof_coordinates(ev.V))
    assert fast.matrix.kind == "baij"
    _assert_same_matrix(ev, fast, rng)


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_compiled_gather_equals_the_numpy_products(name, rng):
    """The C kernel (steps 2-4 of the fill in one pass) gives the numpy products' block values to round-off,
    for every layout of coefficient fields (1-3 variable fields, unit stiffness and/or mass)."""
    from fem_crossdiff.fast.assembler import SemiImplicitAssembler
    ev = Evolution(MODEL_CASES[name](), image_mesh((9, 13), 1))
    fast = FastSemiImplicitSolver(ev.discrete, ev.W, dof_coordinates(ev.V))
    compiled = fast.assembler
    assert compiled.gather is not None               # a C compiler is there: Firedrake needs one
    reference = SemiImplicitAssembler(ev.discrete, fast.q1, compiled=False)
    _random_state(ev, rng)
    w = ev.w_old.dat.data_ro
    for k in range(len(ev.discrete.params)):
        got = compiled.fill(np.full((fast.q1.nnz, 4), np.nan), w, k, 0.3)
        want = reference.fill(np.empty((fast.q1.nnz, 4)), w, k, 0.3)
        assert np.abs(got - want).max() <= 1e-14 * np.abs(want).max(), (name, k)


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_transposed_fill_is_the_transpose_of_the_ufl_matrix(name, rng):
    """A^T (the adjoint's matrix) is A's fill with each 2×2 block of the combination transposed."""
    ev = Evolution(MODEL_CASES[name](), image_mesh((9, 13), 1))
    fast = FastSemiImplicitSolver(ev.discrete, ev.W, dof_coordinates(ev.V))
    _random_state(ev, rng)
    for k in range(len(ev.discrete.params)):
        ufl_matrix = fd.assemble(ev.semi_implicit_forms(k)[0], mat_type="aij").petscmat
        I, J, V = _csr(ufl_matrix.transpose(PETSc.Mat()))
        I2, J2, V2 = _csr(fast.assemble(ev.w_old.dat.data_ro, k, float(ev.dt), transpose=True))
        np.testing.assert_array_equal(J, J2)
        assert np.abs(V - V2).max() < 1e-12 * np.abs(V).max(), (name, k)
        if name == "learned":                         # β != 0: A is not symmetric, so the flag matters
            A = _csr(fast.assemble(ev.w_old.dat.data_ro, k, float(ev.dt)))[2]
            assert np.abs(V2 - A).max() > 1e-6 * np.abs(V).max()


@pytest.mark.parametrize("refine", [0, 1])
@pytest.mark.parametrize("name", ["learned", "modulated", "reacting"])
def test_c_step_derivatives_equal_firedrake_assembly(name, refine, rng):
    """The C pass of fastadjoint gives -dF/dw^n[λ] and -dF/dP[λ] of a step as Firedrake assembles them."""
    from fem_crossdiff.fast.adjoint import FastStepAdjoint
    from fem_crossdiff.fem.taping import StepForms
    ev = Evolution(MODEL_CASES[name](), image_mesh((9, 13), refine))
    fast = FastSemiImplicitSolver(ev.discrete, ev.W, dof_coordinates(ev.V))
    fm = StepForms(ev)
    kernel = FastStepAdjoint.create(fast.q1, ev.model)
    assert kernel is not None
    for k in range(len(ev.discrete.params)):
        for f in (fm.w_old, fm.w_new, fm.adj):
            f.dat.data[:, 0] = rng.random(f.dat.data.shape[0])
            f.dat.data[:, 1] = 0.05 * rng.standard_normal(f.dat.data.shape[0])
        fm.f.dat.data[:] = rng.random(fm.f.dat.data.shape[0])
        fm.P.dat.data[:] = ev.discrete.stage_functions[k].dat.data_ro
        want_P = fm.minus_dF[2].assemble().dat.data_ro.sum(axis=0)
        want_w = fm.minus_dF[0].assemble().dat.data_ro
        stage = ev.discrete.get_stages()[k]
        wbar, grad = kernel(fm.w_old.dat.data_ro, fm.w_new.dat.data_ro, fm.adj.dat.data_ro, fm.f.dat.data_ro,
                            stage, float(ev.dt))
        assert np.abs(grad - want_P).max() <= 1e-12 * np.abs(want_P).max(), (name, k)
        assert np.abs(wbar - want_w).max() <= 1e-12 * np.abs(want_w).max(), (name, k)


@pytest.mark.parametrize("name", ["perona-malik", "grad-rbf", "rbf-v", "heat"])
def test_c_step_derivatives_decline_other_models(name):
    """Models other than the learned structure keep Firedrake's assembly of the derivative forms."""
    from fem_crossdiff.fast.adjoint import FastStepAdjoint
    ev = Evolution(MODEL_CASES[name](), image_mesh((5, 6)))
    fast = FastSemiImplicitSolver(ev.discrete, ev.W, dof_coordinates(ev.V))
    assert FastStepAdjoint.create(fast.q1, ev.model) is None


def test_compiled_gather_refuses_a_wrongly_shaped_value_array():
    ev = Evolution(make_model("perona-malik"), image_mesh((5, 6)))
    fast = FastSemiImplicitSolver(ev.discrete, ev.W, dof_coordinates(ev.V))
    with pytest.raises(ValueError, match="C-contiguous float64 \\(nnz, 4\\)"):
        fast.assembler.fill(np.empty((fast.q1.nnz, 4), order="F"), ev.w_old.dat.data_ro, 0, 0.1)


def test_aij_fallback_matrix_equals_the_ufl_matrix(rng):
    ev = Evolution(_learned(), image_mesh((9, 13)))
    fast = FastSemiImplicitSolver(ev.discrete, ev.W, dof_coordinates(ev.V), prefer_baij=False)
    assert fast.matrix.kind == "aij"
    _assert_same_matrix(ev, fast, rng)


def test_changed_parameters_change_the_fast_matrix(rng):
    """Parameters are read at every assembly: set_stages (k11 != k22 now) is seen, as by the UFL form."""
    model = make_model("nonlinear-cross")
    ev = Evolution(model, image_mesh((9, 13)))
    fast = FastSemiImplicitSolver(ev.discrete, ev.W, dof_coordinates(ev.V))
    ev.discrete.set_stages([dict(model.stages[0], k22=0.01, lam=0.4, d22=0.8)])
    _assert_same_matrix(ev, fast, rng)


def _run(model, img, **kw):
    ev = Evolution(model, image_mesh(img.shape), **kw)
    w = ev.run(image_to_function(img, ev.V))
    return ev, w.dat.data_ro.copy()


@pytest.mark.parametrize("name", ["nonlinear-complex", "perona-malik", "learned", "reacting", "rbf-v", "heat"])
def test_fast_and_ufl_paths_give_the_same_evolution(name, rng):
    img = 0.5 + 0.3 * (np.arange(24)[None, :] > 11) + 0.05 * rng.standard_normal((20, 24))
    model = MODEL_CASES[name]()
    ev_fast, fast = _run(model, img, solver_parameters=TIGHT)
    ev_ufl, ref = _run(model, img, solver_parameters=TIGHT, fast=False)
    assert ev_fast.fast is not None and ev_ufl.fast is None
    assert np.abs(fast - ref).max() < 1e-8
    assert np.abs(fast[:, 0] - ev_fast.f.dat.data_ro).max() > 1e-3  # the image did change
    # default tolerances: still well inside what the 1-rank vs 2-rank test allows
    _, fast_default = _run(model, img)
    assert np.abs(fast_default - ref).max() < 1e-7


def test_annotated_steps_are_one_block_each_and_match_the_generic_ufl_tape(noisy_small):
    """Taped semi-implicit steps run the fast path under one SemiImplicitStepBlock each; with
    ``step_block=False`` pyadjoint's generic blocks record the UFL solves. Same states either way."""
    from firedrake.adjoint import continue_annotation, get_working_tape, pause_annotation
    from fem_crossdiff.fem.taping import SemiImplicitStepBlock
    _, noisy = noisy_small
    model = make_model("nonlinear-cross", steps=3)
    states, blocks = {}, {}
    for step_block in (True, False):
        ev = Evolution(model, image_mesh(noisy.shape), solver_parameters=TIGHT, step_block=step_block)
        f = image_to_function(noisy, ev.V)
        continue_annotation()
        try:
            states[step_block] = ev.run(f).dat.data_ro.copy()
            blocks[step_block] = sum(isinstance(b, SemiImplicitStepBlock) for b in get_working_tape().get_blocks())
        finally:
            pause_annotation()
            get_working_tape().clear_tape()
        assert (ev.fast is not None) == step_block        # the generic tape needs the UFL solvers
    assert blocks == {True: 3, False: 0}
    assert np.abs(states[True] - states[False]).max() < 1e-8


def test_linear_model_keeps_its_matrix_until_parameters_change(noisy_small):
    _, noisy = noisy_small
    model = make_model("linear-cross", steps=3)
    ev, first = _run(model, noisy, solver_parameters=TIGHT)
    key = ev.fast._key
    second = ev.run(image_to_function(noisy, ev.V)).dat.data_ro.copy()
    assert ev.fast._key == key and np.array_equal(first, second)
    changed = [dict(model.stages[0], d22=0.3, lam=0.5)]
    ev.discrete.set_stages(changed)
    third = ev.run(image_to_function(noisy, ev.V)).dat.data_ro.copy()
    assert ev.fast._key != key
    _, ref = _run(model.with_stages(changed), noisy, solver_parameters=TIGHT, fast=False)
    assert np.abs(third - ref).max() < 1e-9


@pytest.mark.parametrize("fast", [True, False])
def test_a_diverged_iterative_step_is_solved_directly_with_a_warning_on_both_paths(noisy_small, fast):
    """An iterative solve that fails (here: one unpreconditioned iteration) is redone by LU, said once; the result is
    the tight solve's. Success therefore does not hang on the preconditioner (nor on the number of ranks)."""
    _, noisy = noisy_small
    model = make_model("nonlinear-complex", steps=2)
    ev = Evolution(model, image_mesh(noisy.shape), fast=fast,
                   solver_parameters={"ksp_max_it": 1, "pc_type": "none", "ksp_rtol": 1e-12})
    with pytest.warns(SlowPathWarning, match="iterative solve of step 1 did not converge .* solved directly"):
        w = ev.run(image_to_function(noisy, ev.V)).dat.data_ro.copy()
    assert (ev.fast is not None) == fast
    _, ref = _run(model, noisy, solver_parameters=TIGHT, fast=False)
    assert np.abs(w - ref).max() < 1e-9


def test_non_square_cells_fall_back_to_the_ufl_path(noisy_small):
    _, noisy = noisy_small
    mesh = image_mesh(noisy.shape)
    mesh.coordinates.dat.data[:, 0] *= 1.5  # rectangles: the fast path does not apply
    ev = Evolution(make_model("nonlinear-cross", steps=2), mesh)
    with pytest.warns(SlowPathWarning, match="fast path does not apply .*not a uniform grid"):
        w = ev.run(image_to_function(noisy, ev.V))
    assert ev.fast is None
    assert np.all(np.isfinite(w.dat.data_ro))


@pytest.mark.parametrize("centres", [1, 2, 7, 20, 25])
def test_rbf_recurrence_equals_the_direct_sum(centres, rng):
    from fem_crossdiff.fast.assembler import rbf
    g = Influence("rbf", "v", floor=0.02, centres=centres, span=0.05)
    s = np.concatenate([0.1 * rng.standard_normal(1000), [0.0, 10.0, -10.0, 1e3, -1e3, 1e6]])
    w = rng.random(centres)
    ref = g.evaluate(s, w)
    assert np.abs(rbf(g, s.copy(), w) - ref).max() < 1e-13 * ref.max()


def test_equal_influences_with_equal_parameters_need_one_field():
    from fem_crossdiff.fast.assembler import layout, off_diagonal_mode
    fields = lambda m: layout(off_diagonal_mode(m, 0), m, m.stages[0]).var  # noqa: E731
    assert fields(_rbf_v(equal=True)) == ("g11",)
    assert fields(_rbf_v()) == ("g11", "g22", "off")
    assert fields(make_model("nonlinear-complex")) == ("g11",)
    assert fields(make_model("perona-malik")) == ("g11", "off")
    assert fields(make_model("heat")) == ()



def test_a_kernel_that_cannot_be_compiled_says_so_once_and_the_numpy_path_serves(monkeypatch, tmp_path):
    """No C compiler (or a broken one): a SlowPathWarning naming the kernel, None for the caller (whose numpy or
    Firedrake path then runs, tested equal elsewhere)."""
    import ctypes
    from fem_crossdiff.fast.compile import compile_kernel

    monkeypatch.setenv("CC", "no-such-compiler-here")
    monkeypatch.setenv("FEM_CROSSDIFF_CACHE", str(tmp_path))          # an empty cache: it must compile
    with pytest.warns(SlowPathWarning, match=r"gather.c could not be compiled \((FileNotFoundError|RuntimeError)"):
        assert compile_kernel("gather.c", "fem_crossdiff_gather", [ctypes.c_int32], NVAR=93, NCONST=1) is None
    assert list(tmp_path.iterdir()) == []                              # nothing half-built is left behind


def test_fast_and_firedrake_paths_solve_with_the_same_krylov_method_and_tolerance(noisy_small):
    """One set of defaults (fem.solvers.LINEAR_SOLVER) for both paths: same Krylov method, preconditioner and
    tolerances, so a result does not depend on which path ran."""
    _, noisy = noisy_small
    model = make_model("nonlinear-cross", steps=2)
    fast, _ = _run(model, noisy)
    slow, _ = _run(model, noisy, fast=False)
    ksp_fast = fast.fast.ksp
    ksp_slow = slow._solvers[0].snes.ksp                    # Firedrake's solver of stage 0
    assert ksp_fast.getType() == ksp_slow.getType() == "fgmres"
    assert ksp_fast.getTolerances()[:2] == ksp_slow.getTolerances()[:2] == (1e-6, 1e-14)
    assert ksp_fast.getPC().getType() == ksp_slow.getPC().getType() == "bjacobi"


def test_a_failed_fast_transposed_solve_falls_back_with_a_warning_and_the_same_gradient(monkeypatch):
    from fem_crossdiff.fast.solver import FastSemiImplicitSolver as Solver
    from fem_crossdiff.learning import DatasetLoss, learned_template, pack, training_pairs
    model = learned_template(stages=1, centres=3, steps=3)
    pairs = training_pairs(["brick"], 25, patch=12, per_image=1, seed=1)
    x = pack(model)
    g_fast = DatasetLoss(model, pairs, checkpoints="all").loss_and_gradient(x)[1]
    monkeypatch.setattr(Solver, "solve_transpose", lambda self, *args, **kwargs: -3)    # DIVERGED_ITS
    with pytest.warns(SlowPathWarning, match="transposed solve did not converge"):
        g_slow = DatasetLoss(model, pairs, checkpoints="all").loss_and_gradient(x)[1]
    assert np.max(np.abs(g_fast - g_slow)) < 1e-8 * np.max(np.abs(g_fast))
