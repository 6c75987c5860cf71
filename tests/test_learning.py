"""Learning: exact adjoint gradients (Taylor tests), elliptic iterates, training lowers the loss, model files."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from fem_crossdiff.learning import (BOUNDS, DatasetLoss, bounds, dataset_reduced_functional, learned_template,
                                    pack, train, training_pairs, unpack, with_psi)
from fem_crossdiff.model import CrossDiffusionModel, ModelError, load_model, save_model


@pytest.fixture(scope="module")
def tiny():
    """A 2-stage learnable model (with the factor h11(v) and the reaction psi(v)) and two 20×20 training pairs (from
    non-test images)."""
    model = with_psi(learned_template(stages=2, centres=5, time=3.0, steps=4, modulation=3), 3)
    # move away from the symmetric initial guess so that every parameter block matters
    x = pack(model)
    x += 0.05 * np.random.default_rng(0).random(x.size)
    stages = [dict(st, wpsi=(0.02 * np.random.default_rng(k).standard_normal(3)).tolist())   # signed, small
              for k, st in enumerate(unpack(model, x))]
    model = model.with_stages(stages)
    return model, training_pairs(["brick", "text"], 25, patch=20, per_image=1, seed=1)


def _remainders(fun, grad, x, direction, h0=1e-2):
    hs = h0 * 0.5 ** np.arange(4)
    J0 = fun(x)
    return np.array([abs(fun(x + h * direction) - J0 - h * grad @ direction) for h in hs])


BLOCKS = {"matrix": ("d11", "d22", "rho", "beta"), "reaction": ("lam", "mu"), "g11": ("w11",), "g22": ("w22",),
          "h11": ("w11h",), "psi": ("wpsi",)}


def test_pixel_misfit_is_the_mean_squared_pixel_error_and_L2_discounts_fine_scales(tiny):
    """J ("pixels") = trapezoid-weighted mean of (u(T) - c)² over the pixels; "L2" sees a checkerboard at 1/9."""
    from fem_crossdiff.fem import function_to_image, image_to_function
    model, pairs = tiny
    loss = DatasetLoss(model, pairs[:1], misfit="pixels")
    J = loss.loss(pack(model))
    clean = pairs[0][0]
    u = function_to_image(loss.ev.w.sub(0))
    w = np.ones_like(clean)
    w[[0, -1], :] *= 0.5
    w[:, [0, -1]] *= 0.5
    assert np.isclose(J, np.sum(w * (u - clean) ** 2) / w.sum(), rtol=1e-12)
    checker = 0.5 + 0.5 * (np.indices(clean.shape).sum(axis=0) % 2)
    l2 = DatasetLoss(model, pairs[:1])                                 # the default
    ratios = []
    for data in (loss, l2):
        data.ev.w.sub(0).assign(image_to_function(checker, data.ev.V))
        ratios.append(float(data.misfit(image_to_function(np.full_like(checker, 0.75), data.ev.V))))
    assert np.isclose(ratios[0], 1 / 16, rtol=1e-12) and np.isclose(ratios[1] / ratios[0], 1 / 9, rtol=1e-12)
    with pytest.raises(ValueError, match="misfit must be one of"):
        DatasetLoss(model, pairs[:1], misfit="l1")


@pytest.mark.parametrize("block", list(BLOCKS))
def test_taylor_remainder_is_second_order_for_every_control_block(tiny, block):
    model, pairs = tiny
    loss = DatasetLoss(model, pairs)
    x = pack(model)
    J, g = loss.loss_and_gradient(x)
    assert np.isclose(J, loss.loss(x), rtol=1e-12)
    names = [n for st in model.stages for n in model.parameter_names for _ in range(np.size(st[n]))]
    direction = np.array([1.0 if n in BLOCKS[block] else 0.0 for n in names])
    direction *= np.random.default_rng(2).uniform(0.5, 1.0, x.size)
    r = _remainders(loss.loss, g, x, direction)
    rates = np.log2(r[:-1] / r[1:])
    assert np.all(rates > 1.9), (r, rates)


@pytest.mark.parametrize("misfit", ["pixels", "L2"])
def test_taylor_remainder_is_second_order_for_the_mean_psnr_objective(tiny, misfit):
    """J = mean of 10 log10(misfit_i): its gradient (chain rule on each image's adjoint) is exact, and -J is the
    mean PSNR of the patches."""
    model, pairs = tiny
    loss = DatasetLoss(model, pairs, misfit=misfit, objective="psnr")
    x = pack(model)
    J, g = loss.loss_and_gradient(x)
    singles = [DatasetLoss(model, [p], misfit=misfit).loss(x) for p in pairs]
    assert np.isclose(J, np.mean(10 * np.log10(singles)), rtol=1e-10) and loss.psnr(J) == -J
    direction = np.random.default_rng(3).uniform(0.5, 1.0, x.size)
    r = _remainders(loss.loss, g, x, direction, h0=1e-3)
    rates = np.log2(r[:-1] / r[1:])
    assert np.all(rates > 1.9), (r, rates)
    with pytest.raises(ValueError, match="objective must be one of"):
        DatasetLoss(model, pairs[:1], objective="ssim")


def test_pyadjoint_taylor_test_on_the_multi_image_multi_stage_functional(tiny):
    from firedrake.adjoint import taylor_to_dict
    import firedrake as fd
    model, pairs = tiny
    rf, loss = dataset_reduced_functional(model, pairs)
    controls = loss.ev.discrete.controls()
    rng = np.random.default_rng(3)
    hs = []
    for c in controls:
        h = fd.Function(c.function_space())
        h.dat.data[:] = rng.uniform(-1, 1, c.dat.data.shape[1])[None, :] * 0.1
        hs.append(h)
    J_rf = rf([fd.Function(c) for c in controls])
    g_rf = loss.ev.discrete.gradient_vector(rf.derivative())
    result = taylor_to_dict(rf, [fd.Function(c) for c in controls], hs)
    assert min(result["R1"]["Rate"]) > 1.9, result["R1"]
    # the per-image tapes used in training give the same value and gradient (this clears the working tape)
    J, g = DatasetLoss(model, pairs).loss_and_gradient(pack(model))
    assert np.isclose(J, J_rf, rtol=1e-12)
    assert np.allclose(g, g_rf, rtol=1e-6, atol=1e-14)  # both exact up to the linear solver tolerance (1e-8)


def test_step_block_tape_replays_and_passes_pyadjoint_taylor_test(tiny):
    """The one-block-per-step tape (fem_crossdiff.fem.taping) replays at new parameters to the forward loss there,
    passes pyadjoint's own Taylor test, and gives the generic solve blocks' gradient."""
    import firedrake as fd
    from firedrake.adjoint import (Control, ReducedFunctional, continue_annotation, get_working_tape,
                                   pause_annotation, taylor_test)
    from fem_crossdiff.fem.taping import SemiImplicitStepBlock
    model, pairs = tiny
    loss = DatasetLoss(model, pairs[:1])
    tape = get_working_tape()
    tape.clear_tape()
    controls = loss.ev.discrete.controls()
    continue_annotation()
    try:
        clean, noisy = loss.data[0]
        loss.ev.run(noisy)
        J = loss.misfit(clean)
    finally:
        pause_annotation()
    steps = [b for b in tape.get_blocks() if isinstance(b, SemiImplicitStepBlock)]
    assert len(steps) == model.steps
    rf = ReducedFunctional(J, [Control(c) for c in controls])
    rng = np.random.default_rng(5)
    x1 = pack(model) * (1 + 0.1 * rng.random(pack(model).size))
    m1 = [fd.Function(c) for c in controls]
    for m, chunk in zip(m1, np.split(x1, len(m1))):
        m.dat.data[:] = chunk[None, :]
    assert np.isclose(rf(m1), loss.loss(x1), rtol=1e-9)             # replay through recompute_component
    hs = [fd.Function(c) for c in controls]
    for h in hs:
        h.dat.data[:] = rng.uniform(-1, 1, h.dat.data.shape[1])[None, :] * 0.1
    assert taylor_test(rf, m1, hs) > 1.9
    tape.clear_tape()
    with_blocks = DatasetLoss(model, pairs[:1])
    g_block = with_blocks.loss_and_gradient(x1)[1]
    fast = with_blocks.ev.fast                      # the adjoint used the fast path's matrix and C derivatives
    assert fast.transposed_solves == model.steps and fast.step_adjoint().calls == model.steps
    g_generic = DatasetLoss(model, pairs[:1], step_block=False).loss_and_gradient(x1)[1]
    assert np.allclose(g_block, g_generic, rtol=1e-7, atol=1e-14)


@pytest.mark.parametrize("checkpoints", ["all", 1, 2])
def test_reverse_sweep_over_checkpoints_gives_the_tape_gradient_in_bounded_memory(tiny, checkpoints):
    """The checkpoint_schedules-driven sweep (binomial schedule for K snapshots) reproduces the taped gradient;
    it holds at most K + 2 states (K snapshots, the step's two) and recomputes steps only when K < steps."""
    model, pairs = tiny
    x = pack(model)
    J1, g1 = DatasetLoss(model, pairs).loss_and_gradient(x)
    loss = DatasetLoss(model, pairs, checkpoints=checkpoints)
    J2, g2 = loss.loss_and_gradient(x)
    assert abs(J1 - J2) < 1e-14 * J1
    assert np.max(np.abs(g1 - g2)) < 1e-10 * np.max(np.abs(g1))
    info, steps = loss.sweep_info, model.steps
    if checkpoints == "all":
        assert info == dict(recomputed_steps=0, states_held=steps + 1)
    else:
        assert info["states_held"] <= checkpoints + 2 and info["recomputed_steps"] > 0, info


def test_reverse_sweep_with_and_without_kept_coefficient_fields_gives_the_same_gradient(tiny, monkeypatch):
    """A^T is refilled from the forward's kept Gauss-point fields (the last KEEP_FIELDS steps) or from the state:
    same gradient; the C derivative pass and the fast path's A^T serve every step."""
    from fem_crossdiff.learning import sweep as checkpointing
    model, pairs = tiny
    x = pack(model)
    full = DatasetLoss(model, pairs[:1], checkpoints="all")
    g_kept = full.loss_and_gradient(x)[1]
    assert full.ev.fast.step_adjoint().calls == model.steps
    monkeypatch.setattr(checkpointing, "KEEP_FIELDS", 1)
    g_one = DatasetLoss(model, pairs[:1], checkpoints="all").loss_and_gradient(x)[1]
    g_tape = DatasetLoss(model, pairs[:1]).loss_and_gradient(x)[1]
    assert np.max(np.abs(g_kept - g_one)) < 1e-12 * np.max(np.abs(g_kept))
    assert np.max(np.abs(g_kept - g_tape)) < 1e-10 * np.max(np.abs(g_kept))


def test_without_a_c_compiler_the_derivative_forms_fall_back_to_firedrake(tiny, monkeypatch):
    """No compiled derivative pass (no compiler): Firedrake assembles the forms, same gradient, tape and sweep."""
    from fem_crossdiff.fast import adjoint as fastadjoint
    model, pairs = tiny
    x = pack(model)
    g_c = DatasetLoss(model, pairs[:1], checkpoints="all").loss_and_gradient(x)[1]
    monkeypatch.setattr(fastadjoint, "step_adjoint_kernel", lambda: None)
    for checkpoints in (None, "all"):
        loss = DatasetLoss(model, pairs[:1], checkpoints=checkpoints)
        g = loss.loss_and_gradient(x)[1]
        assert loss.ev.fast.step_adjoint() is None
        assert np.max(np.abs(g - g_c)) < 1e-10 * np.max(np.abs(g_c))


def test_reverse_sweep_passes_a_taylor_test_and_refuses_bad_checkpoint_counts(tiny):
    model, pairs = tiny
    loss = DatasetLoss(model, pairs, checkpoints=2)
    x = pack(model)
    _, g = loss.loss_and_gradient(x)
    direction = np.random.default_rng(5).uniform(0.5, 1.0, x.size)
    r = _remainders(loss.loss, g, x, direction)
    assert np.all(np.log2(r[:-1] / r[1:]) > 1.9), r
    for bad in (0, -1, 2.5, "some", True):
        with pytest.raises(ValueError, match="checkpoints must be"):
            DatasetLoss(model, pairs, checkpoints=bad)
    with pytest.raises(ValueError, match="semi-implicit scheme"):
        DatasetLoss(model, pairs, checkpoints=2, scheme="implicit").loss_and_gradient(x)


def test_multiresolution_loss_averages_the_levels_with_an_exact_gradient(tiny):
    """Training on the pixel mesh and the mesh refined once: J is the mean of the levels' losses (which
    differ: the refined evolution is another discretisation), and its gradient passes a Taylor test."""
    from fem_crossdiff.learning import MultiResolutionLoss
    model, pairs = tiny
    x = pack(model)
    levels = [DatasetLoss(model, pairs, refine=r) for r in (0, 1)]
    loss = MultiResolutionLoss(levels)
    J, g = loss.loss_and_gradient(x)
    J0, J1 = (one.loss(x) for one in levels)
    assert np.isclose(J, (J0 + J1) / 2, rtol=1e-12) and abs(J0 - J1) > 1e-3 * J0
    direction = np.random.default_rng(6).uniform(0.5, 1.0, x.size)
    r = _remainders(loss.loss, g, x, direction)
    assert np.all(np.log2(r[:-1] / r[1:]) > 1.9), r
    with pytest.raises(ValueError, match="distinct refinement levels"):
        train("x.json", refine=[0, 0], log=lambda *a, **k: None)


def test_every_point_inside_the_bounds_is_elliptic(tiny):
    model, _ = tiny
    box = np.array(bounds(model))
    rng = np.random.default_rng(4)
    for _ in range(50):
        x = rng.uniform(box[:, 0], box[:, 1])
        at_lower, at_upper = rng.random(x.size) < 0.3, rng.random(x.size) < 0.3
        x[at_lower], x[at_upper] = box[at_lower, 0], box[at_upper, 1]  # corners of the box too
        m = model.with_stages(unpack(model, x))  # validates, raises if not elliptic
        assert m.certificate() >= (1 - BOUNDS["rho"][1]) * BOUNDS["d11"][0] * model.g11.floor - 1e-15


@pytest.mark.parametrize("scheme, rescale", [("split", False), ("semi-implicit", False), ("split", True)])
def test_tiny_training_lowers_the_loss_keeps_iterates_in_bounds_and_generalises(tmp_path, tiny, monkeypatch, scheme,
                                                                               rescale):
    """For the default scheme of a new model (split: its fast loss) and for the semi-implicit one (the reverse
    sweep of the finite-element path); and with ``rescale`` (L-BFGS-B on the parameters divided by their sizes:
    the loss still sees every iterate inside the box of the parameters themselves)."""
    from fem_crossdiff.learning import loss as learning, split_loss
    seen = []
    loss_class = split_loss.SplitDatasetLoss if scheme == "split" else learning.DatasetLoss
    original = loss_class.loss_and_gradient
    monkeypatch.setattr(loss_class, "loss_and_gradient",
                        lambda self, x: (seen.append(np.array(x)), original(self, x))[1])
    out = str(tmp_path / "m.json")
    model, history = train(out, images=["brick", "text"], patch=20, per_image=1, stages=2, steps=4, time_=3.0,
                           centres=5, maxiter=4, log=lambda *a, **k: None,
                           scheme=None if scheme == "split" else scheme, rescale=rescale)
    assert model.scheme == scheme and model.provenance["settings"].get("rescale", False) == rescale
    box = np.array(bounds(model))
    assert seen and all(np.all((box[:, 0] <= x) & (x <= box[:, 1])) for x in seen)
    losses = [model.provenance["initial_loss"]] + [h["loss"] for h in history]
    assert np.all(np.diff(losses) <= 0), losses  # accepted L-BFGS-B iterates never increase J
    assert model.provenance["final_loss"] < 0.99 * model.provenance["initial_loss"]
    # held-out patches (other images, other noise) improve too
    held = training_pairs(["clock", "chelsea"], 25, patch=20, per_image=1, seed=7)
    start = learned_template(stages=2, centres=5, time=3.0, steps=4).replace(scheme=scheme)
    before = DatasetLoss(start, held).loss(pack(start))
    after = DatasetLoss(model, held).loss(pack(model))
    assert after < before


def test_save_load_denoise_round_trip_is_identical(tmp_path, tiny):
    from fem_crossdiff.fem import denoise
    model, pairs = tiny
    save_model(model, tmp_path / "m.json")
    again = load_model(tmp_path / "m.json")
    noisy = pairs[0][1]
    assert np.array_equal(denoise(noisy, model), denoise(noisy, again))
    assert np.array_equal(denoise(noisy, str(tmp_path / "m.json")), denoise(noisy, model))


def test_non_elliptic_or_corrupt_learned_files_are_refused(tmp_path, tiny):
    """Files written by hand (no digest) are still validated: bounds, certificate."""
    model, _ = tiny
    d = model.to_dict()
    del d["digest"]
    d["stages"][0]["w11"][0] = -1.0
    (tmp_path / "neg.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match="w11 weights must be >= 0"):
        load_model(tmp_path / "neg.json")
    d = model.to_dict()
    del d["digest"]
    d["stages"][1]["d22"] = 0.0
    (tmp_path / "d22.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match="d22=0 must be > 0"):
        load_model(tmp_path / "d22.json")
    d = model.to_dict()
    del d["digest"]
    d["certificate"] *= 2
    (tmp_path / "cert.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match="does not match the parameters"):
        load_model(tmp_path / "cert.json")


def test_adding_psi_to_a_trained_model_starts_where_it_was_and_learns_signed_weights(tmp_path):
    """train(init=..., psi=N): psi = 0 at first (same loss as the init model), then the signed weights move and the
    loss drops; the saved model records the option and keeps its psi when continued."""
    kwargs = dict(images=["brick", "text"], patch=16, per_image=1, log=lambda *a, **k: None)
    first, _ = train(str(tmp_path / "a.json"), stages=1, steps=3, time_=2.0, centres=4, maxiter=2, modulation=0,
                     **kwargs)
    model, history = train(str(tmp_path / "b.json"), init=str(tmp_path / "a.json"), psi=3, maxiter=3, **kwargs)
    assert model.psi is not None and model.provenance["settings"]["psi"] == 3
    assert np.isclose(model.provenance["initial_loss"], first.provenance["final_loss"], rtol=1e-10)
    assert model.provenance["final_loss"] < model.provenance["initial_loss"]
    w = np.array(model.stages[0]["wpsi"])
    assert np.abs(w).max() > 0 and np.all(np.abs(w) <= BOUNDS["wpsi"][1])
    again, _ = train(str(tmp_path / "c.json"), init=str(tmp_path / "b.json"), maxiter=1, **kwargs)
    assert again.psi == model.psi


def test_resume_continues_from_the_checkpoint(tmp_path):
    out = str(tmp_path / "m.json")
    kwargs = dict(images=["brick"], patch=16, per_image=1, stages=1, steps=3, time_=2.0, centres=3,
                  log=lambda *a, **k: None)
    _, first = train(out, maxiter=2, **kwargs)
    ckpt = json.loads(Path(out + ".checkpoint").read_text())
    assert len(ckpt["history"]) == len(first) >= 1
    saved = Path(out).read_bytes()
    with pytest.raises(ValueError, match="exists.*--init"):         # a finished run's model is never replaced
        train(out, maxiter=4, resume=True, **kwargs)
    assert Path(out).read_bytes() == saved
    os.remove(out)  # as if the first run had been interrupted before saving
    model, same = train(out, maxiter=len(first), resume=True, **kwargs)  # nothing left to do: no new iteration
    assert same == first and np.array_equal(pack(model), pack(CrossDiffusionModel.from_dict(ckpt["model"])))
    os.remove(out)
    _, second = train(out, maxiter=len(first) + 2, resume=True, **kwargs)
    assert second[:len(first)] == first
    assert len(second) > len(first)
    assert second[-1]["loss"] <= first[-1]["loss"]
    os.remove(out)
    with pytest.raises(ValueError, match="other settings"):
        train(out, maxiter=3, resume=True, **{**kwargs, "steps": 4})


@pytest.mark.parallel
def test_two_ranks_give_the_same_loss_and_gradient(tmp_path, tiny, mpirun):
    """Under mpiexec the images are dealt out over the ranks of an Ensemble, or the mesh is split over them (with
    the checkpointed sweep); the sums must not change."""
    model, _ = tiny
    save_model(model, tmp_path / "m.json")
    script = tmp_path / "run.py"
    script.write_text(
        "import json, sys\n"
        "from mpi4py import MPI\n"
        "from fem_crossdiff.model import load_model\n"
        "from fem_crossdiff.learning import DatasetLoss, pack, training_pairs\n"
        f"m = load_model({str(tmp_path / 'm.json')!r})\n"
        "pairs = training_pairs(['brick', 'text'], 25, patch=20, per_image=1, seed=1)\n"
        "J, g = DatasetLoss(m, pairs).loss_and_gradient(pack(m))\n"
        "import firedrake as fd\n"
        "mesh_split = fd.Ensemble(fd.COMM_WORLD, fd.COMM_WORLD.size)      # the mesh over the ranks instead\n"
        "Js, gs = DatasetLoss(m, pairs, ensemble=mesh_split, checkpoints=2).loss_and_gradient(pack(m))\n"
        "if MPI.COMM_WORLD.rank == 0:\n"
        "    json.dump({'J': J, 'g': list(g), 'Js': Js, 'gs': list(gs)}, open(sys.argv[1], 'w'))\n")
    results = []
    for n in (1, 2):
        mpirun(n, script, tmp_path / f"r{n}.json")
        results.append(json.loads((tmp_path / f"r{n}.json").read_text()))
    assert np.isclose(results[0]["J"], results[1]["J"], rtol=1e-12)
    assert np.allclose(results[0]["g"], results[1]["g"], rtol=1e-6, atol=1e-15)  # to the solver tolerance
    # the checkpointed reverse sweep on a mesh split over two ranks (Firedrake's assembly, no fast path)
    for r in results:
        assert np.isclose(r["Js"], results[0]["J"], rtol=1e-12)
        assert np.allclose(r["gs"], results[0]["g"], rtol=1e-6, atol=1e-15)
