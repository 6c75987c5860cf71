r"""Learning stable cross-diffusion models by adjoint gradients (Barbeiro & Lobo, JMIV 62, 2020).

Given (clean, noisy) pairs :math:`(c_i, f_i)`, minimise the mean denoising error at the final time

.. math:: J(p) = \frac{1}{n}\sum_i \frac{1}{|\Omega|}\int_\Omega \big(u_i(T; p) - c_i\big)^2\,dx ,

(the integral exact for the Q1 functions; or the pixels' mean squared error, or the mean PSNR: see
:data:`MISFITS`, :data:`OBJECTIVES`) over the parameters :math:`p` of every stage:
:math:`d_{11}, d_{22}, \rho, \beta, \lambda, \mu` and the non-negative RBF weights of the influence
functions :math:`g_{11}, g_{22}` (each with a floor :math:`g_{\min} > 0`) and, optionally, of the factor
:math:`h_{11}(v) \ge 1` of the :math:`u`-diffusivity (:func:`with_modulation`) and the signed ones of the reaction
:math:`\psi(v)` of the :math:`u`-equation (:func:`with_psi`). The box bounds of :data:`BOUNDS` alone guarantee uniform
ellipticity of every iterate:
:math:`\xi^T D\xi \ge (1-|\rho|)\min(d_{11}, d_{22})\,g_{\min}|\xi|^2`. Gradients are pyadjoint's (the exact
gradient of the discrete problem); the optimiser is scipy's L-BFGS-B.

The data-set gradient :math:`\sum_i \nabla J_i` is computed one image at a time, so memory is that of one
image's evolution; under ``mpiexec`` the images are dealt out over the ranks of an ``Ensemble`` and the sums are
reduced, giving the same model as one rank. Each semi-implicit step's adjoint is that of
:class:`~fem_crossdiff.taping.SemiImplicitStepBlock` (forms derived once, not per step; the solve with the fast
path's :math:`A^T`; the derivative forms by one C pass, :mod:`fem_crossdiff.fastadjoint`), run either from
pyadjoint's tape (``checkpoints=None``, :class:`DatasetLoss`'s default) or by the reverse sweep of
:mod:`fem_crossdiff.checkpointing` without a tape (``"all"``: every state kept, :func:`train`'s default, about two
forward solves per gradient and half the tape's memory; ``K``: :math:`K + 2` states, binomial checkpointing).
The two give the same gradient to 1e-10 (tested), and both agree with pyadjoint's generic solve blocks.
"""
import json
import math
import os
import sys
import time

import numpy as np

from .models import CrossDiffusionModel, Influence, ModelError, save_model, load_model

__all__ = ["BOUNDS", "MISFITS", "OBJECTIVES", "learned_template", "training_pairs", "DatasetLoss",
           "MultiResolutionLoss", "dataset_reduced_functional", "train", "with_modulation", "with_psi", "pack",
           "unpack", "bounds", "add_commands", "peak_memory_mb"]

#: Box bounds of every learnable parameter: inside them every model is uniformly elliptic.
BOUNDS = {"d11": (0.05, 50.0), "d22": (0.05, 50.0), "rho": (-0.95, 0.95), "beta": (-20.0, 20.0),
          "lam": (0.0, 5.0), "mu": (0.0, 5.0), "w11": (0.0, 50.0), "w22": (0.0, 50.0),
          "w11h": (0.0, 10.0), "wpsi": (-5.0, 5.0)}
FLOOR = 0.02
#: Tight linear solves while learning: J(p) must be smooth to far below the optimiser's and the Taylor tests'
#: resolution, on both the taped (UFL) path and the fast path used for plain loss evaluations.
LEARNING_SOLVER = {"ksp_rtol": 1e-10}
#: How :math:`J` integrates :math:`(u(T) - c)^2`. ``"L2"`` (default): exactly, for the Q1 functions (consistent
#: mass); also the functional of the continuous adjoint (:mod:`fem_crossdiff.adjoint`). ``"pixels"``: by the
#: trapezoidal rule at the vertices (lumped mass), i.e. on the image mesh the mean squared pixel error that PSNR
#: reports (edge and corner pixels at half and quarter weight). They differ most for fine-scale errors (a
#: checkerboard has 1/9 of its pixel error in L2), yet models trained on "pixels" do no better by PSNR (README).
MISFITS = ("L2", "pixels")
#: How the images' misfits :math:`m_i` are combined. ``"mse"`` (default): :math:`J = \frac1n\sum_i m_i`, the
#: mean squared error, dominated by the textured patches with the largest errors. ``"psnr"``:
#: :math:`J = \frac1n\sum_i 10\log_{10} m_i`, minus the patches' mean PSNR (dB), in which a near-constant patch
#: counts as much as a textured one (it then smooths more: better on held-out patches, worse on the test crops).
OBJECTIVES = ("mse", "psnr")


# ------------------------------------------------------------------------------------ the model
def fit_rbf(influence, target, samples=201):
    """Non-negative RBF weights whose :math:`g` best fits ``target(s)`` over the centres' range (NNLS)."""
    from scipy.optimize import nnls
    c = influence.centre_values
    s = np.linspace(c[0], c[-1], samples)
    basis = np.stack([influence.evaluate(s, np.eye(influence.centres)[m]) - influence.floor
                      for m in range(influence.centres)], axis=1)
    w, _ = nnls(basis, np.maximum(target(s) - influence.floor, 0.0))
    return w


def learned_template(stages=3, centres=16, time=2.0, steps=12, k=0.08, grad_span=0.4, v_span=0.05, theta=0.05,
                     modulation=0):
    r"""Initial learnable model: a Perona–Malik-like :math:`g_{11}(|\nabla u|) \approx 1/(1+(|\nabla u|/k)^2)` and
    :math:`g_{22}(v) \approx 1`, both as non-negative RBF sums with floor :data:`FLOOR`, and a small complex-diffusion
    coupling :math:`d_{12} = -d_{21} = -\sin\theta` so that the edge indicator :math:`v` is excited (with no
    coupling :math:`v \equiv 0` and the gradient with respect to the coupling vanishes). Copied to every stage.
    ``modulation > 0`` adds the factor :math:`h_{11}(v)` (:func:`with_modulation`)."""
    g11 = Influence("rbf", "grad_u", floor=FLOOR, centres=centres, span=grad_span)
    g22 = Influence("rbf", "v", floor=FLOOR, centres=max(3, centres // 2 * 2 - 1), span=v_span)
    w11 = fit_rbf(g11, lambda s: 1 / (1 + (s / k) ** 2)).tolist()
    w22 = fit_rbf(g22, lambda s: np.ones_like(s)).tolist()
    stage = dict(d11=1.0, d22=1.0, rho=0.0, beta=-math.sin(theta), lam=0.0, mu=0.0, w11=w11, w22=w22)
    model = CrossDiffusionModel("learned", g11=g11, g22=g22, stages=[dict(stage) for _ in range(stages)],
                                time=time, steps=steps,
                                description="cross-diffusion model learned by fem-crossdiff train")
    return with_modulation(model, modulation, v_span) if modulation else model


def with_modulation(model, centres, span=0.05):
    r"""``model`` with :math:`g_{11}(|\nabla u|)` times :math:`h_{11}(v) = 1 + \sum_m w_m e^{-(v-c_m)^2/2\sigma^2}`
    (``centres`` RBFs over :math:`[-\text{span}, \text{span}]`, floor 1, all weights 0: the same evolution, so a
    trained model is a warm start); the edge indicator then modulates edge stopping. Unchanged if it has one."""
    if model.h11.kind != "one":
        return model
    return _with_zero_weights(model, "h11", Influence("rbf", "v", floor=1.0, centres=centres, span=span), "w11h")


def with_psi(model, centres, span=0.05):
    r"""``model`` with the reaction :math:`\psi(v) = \sum_m w_m e^{-(v-c_m)^2/2\sigma^2}` in the :math:`u`-equation
    (``centres`` RBFs over :math:`[-\text{span}, \text{span}]`, signed weights, all 0: the same evolution, so a
    trained model is a warm start). Unchanged if it has one."""
    if model.psi is not None:
        return model
    return _with_zero_weights(model, "psi", Influence("rbf", "v", floor=0.0, centres=centres, span=span), "wpsi")


def _with_zero_weights(model, field, function, parameter):
    """``model`` with its ``field`` ("h11", "psi") set to the RBF ``function``, whose weights ``parameter`` are 0 in
    every stage."""
    stages = [dict(st, **{parameter: [0.0] * function.centres}) for st in model.stages]
    return model.replace(**{field: function.__dict__, "stages": stages})


def pack(model):
    """Stage parameters → flat vector (stage by stage, each in :attr:`CrossDiffusionModel.stage_layout` order)."""
    return np.concatenate([model.pack_stage(st) for st in model.stages])


def unpack(model, x):
    """Flat vector → list of stage dictionaries shaped like ``model.stages``."""
    return [model.unpack_stage(chunk) for chunk in np.split(np.asarray(x, dtype=float), len(model.stages))]


def bounds(model):
    """Box bounds of :func:`pack`'s vector, from :data:`BOUNDS`."""
    return [BOUNDS[name] for _ in model.stages for name, n, _ in model.stage_layout for _ in range(n)]


# ------------------------------------------------------------------------------------------ data
def training_pairs(images=None, sigma255=25.0, patch=64, per_image=2, seed=0):
    """(clean, noisy) patches from bundled images that are *not* public test images; deterministic in ``seed``."""
    from .cli import check_counts
    from .data import TEST_IMAGES, TRAIN_IMAGES, check_sigma255, load
    from .noise import gaussian_noise
    images = list(images or TRAIN_IMAGES)
    leaked = sorted(set(images) & set(TEST_IMAGES))
    if leaked:
        raise ValueError(f"training images {leaked} are public test images; choose from {', '.join(TRAIN_IMAGES)}")
    check_sigma255(sigma255)
    check_counts(patch=(patch, 2), per_image=(per_image, 1))
    rng = np.random.default_rng(seed)
    pairs = []
    for name in images:
        img = load(name)
        if min(img.shape) < patch:
            raise ValueError(f"image '{name}' ({img.shape[0]}×{img.shape[1]}) is smaller than the patch size {patch}")
        for _ in range(per_image):
            r = rng.integers(0, img.shape[0] - patch + 1)
            c = rng.integers(0, img.shape[1] - patch + 1)
            clean = np.ascontiguousarray(img[r:r + patch, c:c + patch])
            pairs.append((clean, gaussian_noise(clean, sigma255 / 255.0, seed=int(rng.integers(2 ** 31)))))
    return pairs


# ------------------------------------------------------------------------------ loss and gradient
class DatasetLoss:
    """:math:`J(p)` and :math:`\\nabla J(p)` over a data set of equally sized pairs, images split over ranks."""

    def __init__(self, model, pairs, ensemble=None, refine=0, checkpoints=None, mesh=None,
                 solver_parameters=None, misfit="L2", objective="mse", **evolution):
        """``misfit``: one of :data:`MISFITS`; ``objective``: one of :data:`OBJECTIVES`. ``mesh`` replaces the
        structured image mesh (it needs ``mesh.image_shape``); ``solver_parameters`` update
        :data:`LEARNING_SOLVER`; other keywords (``time``, ``steps``, ``scheme``) go to the
        :class:`~fem_crossdiff.timestepping.Evolution`. ``checkpoints``: None (default) records each image's
        evolution on a pyadjoint tape; ``"all"`` or an integer :math:`K` runs the reverse sweep of
        :mod:`fem_crossdiff.checkpointing` instead (same gradient), keeping every state or at most :math:`K`
        snapshots (binomial schedule), so memory stays bounded for long horizons. (pyadjoint's own
        ``tape.enable_checkpointing`` with a ``MultistageCheckpointSchedule`` gave wrong gradients with this
        release, on pyadjoint's generic blocks too.)"""
        import firedrake as fd
        from .images import image_mesh, image_to_function
        from .timestepping import Evolution
        if misfit not in MISFITS:
            raise ValueError(f"misfit must be one of {MISFITS}, got {misfit!r}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.objective = objective
        shapes = {c.shape for c, _ in pairs} | {f.shape for _, f in pairs}
        if len(shapes) != 1:
            raise ValueError(f"all training pairs must have one shape, got {sorted(shapes)}")
        self.model, self.n = model, len(pairs)
        self.ensemble = ensemble or fd.Ensemble(fd.COMM_WORLD, 1)
        ecomm = self.ensemble.ensemble_comm
        self.mine = [i for i in range(self.n) if i % ecomm.size == ecomm.rank]
        if mesh is None:
            mesh = image_mesh(shapes.pop(), refine, comm=self.ensemble.comm)
        self.ev = Evolution(model, mesh, solver_parameters={**LEARNING_SOLVER, **(solver_parameters or {})},
                            **evolution)
        self.area = fd.assemble(fd.Constant(1.0) * fd.dx(domain=mesh))
        # "pixels": finat's lumped ("KMV") rule of degree 1, on quadrilaterals the 2×2 Gauss–Lobatto rule
        self.misfit_dx = fd.dx(domain=mesh, scheme="KMV", degree=1) if misfit == "pixels" else fd.dx(domain=mesh)
        self.data = [(image_to_function(pairs[i][0], self.ev.V), image_to_function(pairs[i][1], self.ev.V))
                     for i in self.mine]
        from .checkpointing import check_checkpoints
        check_checkpoints(checkpoints)
        self.checkpoints = checkpoints
        self._misfit_assemblers = None
        self.sweep_info = {}
        self.evaluations = 0
        self.seconds = {"taped forward": 0.0, "adjoint": 0.0}   # this rank's time in loss_and_gradient

    def _misfit_form(self, clean):
        return (self.ev.w[0] - clean) ** 2 / self.area * self.misfit_dx

    def _misfit(self, clean):
        import firedrake as fd
        return fd.assemble(self._misfit_form(clean))

    def _term(self, m):
        """An image's contribution to :math:`nJ` and the factor :math:`dJ_i/dm_i` of its misfit gradient."""
        if self.objective == "psnr":
            return 10 * math.log10(m), 10 / (math.log(10) * m)
        return m, 1.0

    def psnr(self, J):
        """The training PSNR (dB) that a loss value ``J`` stands for."""
        return -J if self.objective == "psnr" else psnr_of_loss(J)

    def _reduce(self, local):
        from mpi4py import MPI
        return self.ensemble.ensemble_comm.allreduce(local, op=MPI.SUM)

    def set(self, x):
        self.ev.discrete.set_stages(unpack(self.model, np.asarray(x, dtype=float)))

    def loss(self, x):
        """:math:`J(p)` without recording anything."""
        from firedrake.adjoint import stop_annotating
        self.set(x)
        with stop_annotating():
            local = 0.0
            for clean, noisy in self.data:
                self.ev.run(noisy)
                local += self._term(float(self._misfit(clean)))[0]
        return self._reduce(local) / self.n

    def _misfit_and_gradient(self, clean):
        """``w -> (m, dm/dw)`` of the final state for :func:`~fem_crossdiff.checkpointing.checkpointed_gradient`
        (forms on a placeholder for the clean image, compiled once)."""
        import firedrake as fd
        from firedrake.assemble import get_assembler
        if self._misfit_assemblers is None:
            ph = fd.Function(self.ev.V)
            form = self._misfit_form(ph)
            self._misfit_assemblers = (ph, get_assembler(form), get_assembler(fd.derivative(form, self.ev.w)))
        ph, value, derivative = self._misfit_assemblers
        ph.dat.data_wo[...] = clean.dat.data_ro
        return lambda w: (float(value.assemble()), derivative.assemble())

    def loss_and_gradient(self, x):
        """:math:`(J, \\nabla J)`: per image, a forward run on a fresh tape and its adjoint, or the reverse sweep
        over checkpoints (``checkpoints``)."""
        self.set(x)
        J, grad = 0.0, np.zeros_like(np.asarray(x, dtype=float))
        for clean, noisy in self.data:
            one = self._taped_gradient if self.checkpoints is None else self._swept_gradient
            mi, gi = one(clean, noisy)
            term, factor = self._term(mi)
            grad += factor * gi
            J += term
        self.evaluations += 1
        return self._reduce(J) / self.n, self._reduce(grad) / self.n

    def _taped_gradient(self, clean, noisy):
        from firedrake.adjoint import (Control, ReducedFunctional, Tape, continue_annotation, pause_annotation,
                                       set_working_tape)
        tape = Tape()
        with set_working_tape(tape):
            t0 = time.perf_counter()
            continue_annotation()
            try:
                self.ev.run(noisy)
                Ji = self._misfit(clean)
            finally:
                pause_annotation()
            t1 = time.perf_counter()
            rf = ReducedFunctional(Ji, [Control(c) for c in self.ev.discrete.controls()], tape=tape)
            g = self.ev.discrete.gradient_vector(rf.derivative())
        self.seconds["taped forward"] += t1 - t0
        self.seconds["adjoint"] += time.perf_counter() - t1
        return float(Ji), g

    def _swept_gradient(self, clean, noisy):
        from firedrake.adjoint import stop_annotating
        from .checkpointing import checkpointed_gradient
        t0 = time.perf_counter()
        with stop_annotating():
            self.ev.set_initial(noisy)
        m, g, self.sweep_info = checkpointed_gradient(self.ev, self._misfit_and_gradient(clean), self.checkpoints)
        self.seconds["adjoint"] += time.perf_counter() - t0          # forward, recomputation and adjoint
        return m, self.ev.mesh.comm.allreduce(g)


class MultiResolutionLoss:
    r""":math:`J = \frac1L\sum_r J_r`: the mean of :class:`DatasetLoss`\ es of the same pairs on the image mesh
    refined :math:`r` times, one per level (the image as its bilinear interpolant). A model trained on several
    levels must denoise on each: it cannot lean on the pixel grid (resolution independence)."""

    def __init__(self, losses):
        self.losses = list(losses)

    @property
    def evaluations(self):
        return self.losses[0].evaluations

    def psnr(self, J):
        return self.losses[0].psnr(J)

    def loss(self, x):
        return float(np.mean([one.loss(x) for one in self.losses]))

    def loss_and_gradient(self, x):
        parts = [one.loss_and_gradient(x) for one in self.losses]
        return float(np.mean([J for J, _ in parts])), np.mean([g for _, g in parts], axis=0)


def dataset_reduced_functional(model, pairs, refine=0):
    """pyadjoint ``ReducedFunctional`` of :math:`J` over all ``pairs`` on one tape (controls: one per stage).

    Same value and gradient as :class:`DatasetLoss`; meant for Taylor tests and small data sets (its tape
    holds every image's evolution at once). Recorded with pyadjoint's generic solve blocks (which also give
    Hessians, for ``taylor_to_dict``), not with :mod:`fem_crossdiff.taping`'s step block that
    :class:`DatasetLoss` uses, so the two cross-check each other. Returns ``(rf, loss)``.
    """
    from firedrake.adjoint import Control, ReducedFunctional, continue_annotation, get_working_tape, pause_annotation
    loss = DatasetLoss(model, pairs, refine=refine, step_block=False)
    get_working_tape().clear_tape()
    controls = [Control(c) for c in loss.ev.discrete.controls()]
    continue_annotation()
    try:
        J = 0.0
        for clean, noisy in loss.data:
            loss.ev.run(noisy)
            J = J + loss._misfit(clean)
        J = J / loss.n
    finally:
        pause_annotation()
    return ReducedFunctional(J, controls), loss


def peak_memory_mb(comm=None):
    """Peak resident memory of this process in MiB (``getrusage``), the maximum over ``comm``'s ranks if given."""
    import resource
    from mpi4py import MPI
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss      # KiB on Linux (bytes on macOS)
    mb = kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024
    return comm.allreduce(mb, op=MPI.MAX) if comm is not None else mb


def psnr_of_loss(J):
    return 10 * np.log10(1.0 / J) if J > 0 else float("inf")


# --------------------------------------------------------------------------------------- training
class Checkpoint:
    """JSON checkpoint written atomically after every optimiser iteration."""

    def __init__(self, path):
        self.path = path

    def save(self, state):
        from ._io import atomic_write

        def write(tmp):
            with open(tmp, "w") as fh:
                json.dump(state, fh)

        atomic_write(self.path, write, ".json")

    def load(self):
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{self.path}: no checkpoint to resume from")
        with open(self.path) as fh:
            return json.load(fh)


def train(out, *, images=None, sigma255=25.0, patch=64, per_image=2, stages=3, steps=12, time_=2.0,
          centres=16, maxiter=100, resume=False, seed=0, refine=0, init=None, misfit="L2", objective="mse",
          modulation=15, psi=0, checkpoints="all", log=print, command=None):
    """Learn a model and save it to ``out`` (JSON). Returns (model, history). ``misfit``, ``objective``: see
    :data:`MISFITS`, :data:`OBJECTIVES`; ``modulation``: RBF centres of the factor :math:`h_{11}(v)` of the
    :math:`u`-diffusivity (0: none; see :func:`with_modulation`; an ``init`` model that has one keeps it);
    ``checkpoints``: how gradients are computed (:class:`DatasetLoss`; default ``"all"``, the reverse sweep
    keeping every state: the same gradient as pyadjoint's tape (None) in less time and memory; not a setting of
    the model: a run may resume with another value).

    ``refine``: train on the image mesh refined this many times, or on several levels at once (a list: the
    mean loss, :class:`MultiResolutionLoss`).

    ``init``: start from this learned model (JSON path) instead of :func:`learned_template`; its stages, time
    and steps are used (``stages``, ``steps``, ``time_``, ``centres`` are then ignored)."""
    from mpi4py import MPI
    from scipy.optimize import minimize
    rank0 = MPI.COMM_WORLD.rank == 0
    log = log if rank0 else (lambda *a, **k: None)
    if not out.endswith(".json"):
        raise ValueError(f"--out {out}: the model file must end in .json")
    from .cli import check_counts
    check_counts(maxiter=(maxiter, 1), modulation=(modulation, 0), psi=(psi, 0),  # --patch, --per-image: training_pairs
                 **({} if init else dict(stages=(stages, 1), steps=(steps, 1), centres=(centres, 1))))
    if not init and stages > steps:
        raise ValueError(f"--stages {stages} exceeds --steps {steps}: every stage needs at least one time step")
    ckpt = Checkpoint(out + ".checkpoint")
    levels = list(np.atleast_1d(refine))
    if not all(int(r) == r and r >= 0 for r in levels) or len(set(levels)) != len(levels):
        raise ValueError(f"--refine {refine}: expected distinct refinement levels >= 0")
    levels = [int(r) for r in levels]
    refine = levels[0] if len(levels) == 1 else levels          # as recorded in the settings: [0] is plain 0
    settings = dict(images=list(images) if images else None, sigma=sigma255, patch=patch, per_image=per_image,
                    stages=stages, steps=steps, time=time_, centres=centres, seed=seed, refine=refine, init=init,
                    misfit=misfit, objective=objective, modulation=modulation)
    if psi:
        settings["psi"] = psi
    history, t_used = [], 0.0
    start, init_provenance = _initial_model(init) if init else (None, None)
    if os.path.exists(out):
        raise ValueError(f"{out}: exists; choose another --out or remove it (it is never overwritten; to train a "
                         "finished model further, start a new run with --init)")
    if resume:
        state = ckpt.load()
        if state["settings"] != settings:
            raise ValueError(f"{ckpt.path}: checkpoint was made with other settings {state['settings']}; "
                             "rerun with the same options or without --resume")
        model = CrossDiffusionModel.from_dict(state["model"], ckpt.path)
        history, t_used = state["history"], state["elapsed"]
        log(f"resuming from {ckpt.path} at iteration {len(history)} (loss {history[-1]['loss']:.6g})")
    else:
        model = start if init else learned_template(stages=stages, centres=centres, time=time_, steps=steps)
        model = with_modulation(model, modulation) if modulation else model
        model = with_psi(model, psi) if psi else model
    pairs = training_pairs(images, sigma255, patch, per_image, seed)
    losses = [DatasetLoss(model, pairs, refine=r, misfit=misfit, objective=objective, checkpoints=checkpoints)
              for r in levels]
    loss = losses[0] if len(losses) == 1 else MultiResolutionLoss(losses)
    x0, box = pack(model), bounds(model)
    x0 = np.clip(x0, [b[0] for b in box], [b[1] for b in box])
    J0 = loss.loss(x0)
    scale = abs(J0) if objective == "mse" else 1.0       # "psnr": J is in dB already
    initial = state["initial_loss"] if resume else J0
    t0 = time.perf_counter() - t_used
    last = {}

    def fun(x):
        """L-BFGS-B sees J/scale (order one) and its gradient."""
        J, g = loss.loss_and_gradient(x)
        last.update(x=x.copy(), J=J, g=g)
        return J / scale, g / scale

    def callback(intermediate_result):
        xk, J = intermediate_result.x, intermediate_result.fun * scale
        current = model.with_stages(unpack(model, xk))
        pg = _projected_gradient(xk, last["g"], box) if np.array_equal(last.get("x"), xk) else float("nan")
        entry = dict(iteration=len(history) + 1, loss=J, psnr=loss.psnr(J), grad=pg,
                     certificate=current.certificate(), elapsed=time.perf_counter() - t0,
                     peak_mb=peak_memory_mb(MPI.COMM_WORLD))
        history.append(entry)
        log(f"it {entry['iteration']:4d}  loss {J:.6e}  PSNR {entry['psnr']:6.2f} dB  |proj grad| {pg:.2e}  "
            f"ellipticity {entry['certificate']:.3e}  {entry['elapsed']:7.1f} s  peak {entry['peak_mb']:.0f} MiB")
        if rank0:
            ckpt.save(dict(settings=settings, model=current.to_dict(), history=history,
                           elapsed=entry["elapsed"], initial_loss=initial))

    log(f"training on {len(pairs)} patches {patch}×{patch}, σ={sigma255:g}, {len(model.stages)} stage(s), "
        f"{model.steps} steps to T={model.time:g}, {len(x0)} parameters, {MPI.COMM_WORLD.size} rank(s); loss {J0:.6e} "
        f"(PSNR {loss.psnr(J0):.2f} dB)")
    interrupted = False
    try:
        res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=box, callback=callback,
                       options=dict(maxiter=maxiter - len(history), maxcor=20, ftol=1e-12, gtol=1e-8)
                       ) if len(history) < maxiter else None
        x = res.x if res else pack(model)
    except KeyboardInterrupt:
        interrupted = True
        log(f"\ninterrupted: state of iteration {len(history)} is in {ckpt.path}; continue with --resume")
        x = pack(CrossDiffusionModel.from_dict(ckpt.load()["model"])) if history else x0
    final = model.with_stages(unpack(model, x))
    Jf = loss.loss(x)
    final.provenance = dict(command=command or " ".join(sys.argv), settings=settings, initial_loss=initial,
                            final_loss=Jf, final_train_psnr=loss.psnr(Jf), iterations=len(history),
                            elapsed_seconds=time.perf_counter() - t0, interrupted=interrupted,
                            gradient_evaluations=loss.evaluations,
                            peak_memory_mb_per_rank=peak_memory_mb(MPI.COMM_WORLD))
    if init:
        final.provenance["init_provenance"] = init_provenance  # the chain of runs behind the model
    final.check_elliptic(out)
    if rank0 and not interrupted:
        save_model(final, out)
        log(f"saved {out}: loss {initial:.4e} -> {Jf:.4e} (train PSNR {loss.psnr(initial):.2f} -> "
            f"{loss.psnr(Jf):.2f} dB), certificate {final.certificate():.3e}")
    if interrupted:
        raise KeyboardInterrupt
    return final, history


def _initial_model(path):
    """``(model, its provenance)``: a learned model to continue from (:func:`train` clips its parameters into
    :data:`BOUNDS`), its own provenance moved out so that checkpoints carry only this run's."""
    model = load_model(path)
    if model.g11.kind != "rbf" or model.g22.kind != "rbf":
        raise ModelError(f"{path}: --init needs a learned model (rbf influence functions), not '{model.name}'")
    provenance, model.provenance = model.provenance, {}
    return model, provenance


def _projected_gradient(x, g, box):
    """Norm of the gradient projected on the box (zero at a constrained optimum)."""
    lo, hi = np.array([b[0] for b in box]), np.array([b[1] for b in box])
    return float(np.linalg.norm(np.clip(x - g, lo, hi) - x))


# ------------------------------------------------------------------------------------------- CLI
def add_commands(sub):
    from .cli import checkpoints_option
    s = sub.add_parser("train", help="learn a cross-diffusion model from (clean, noisy) pairs")
    s.add_argument("--out", required=True, help="model JSON to write (never overwritten)")
    s.add_argument("--images", nargs="+", help="bundled scikit-image names (default: all non-test images)")
    s.add_argument("--sigma", type=float, default=25.0, help="noise level, 0-255 scale (default 25)")
    s.add_argument("--patch", type=int, default=64)
    s.add_argument("--per-image", type=int, default=2, help="patches per image (default 2)")
    s.add_argument("--stages", type=int, default=3)
    s.add_argument("--steps", type=int, default=12)
    s.add_argument("--time", type=float, default=2.0)
    s.add_argument("--centres", type=int, default=16, help="RBF centres per influence function (default 16)")
    s.add_argument("--maxiter", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--misfit", choices=MISFITS, default="L2",
                   help="L2: exact L2 norm of the Q1 error (default); pixels: mean squared pixel error")
    s.add_argument("--objective", choices=OBJECTIVES, default="mse",
                   help="mse: mean squared error over the patches (default); psnr: mean PSNR")
    s.add_argument("--modulation", type=int, default=15, metavar="N",
                   help="multiply g11(|grad u|) by h11(v) with N RBF centres, starting from h11 = 1 (default 15; "
                        "0: none; a model given to --init keeps its own h11)")
    s.add_argument("--psi", type=int, default=0, metavar="N",
                   help="add the reaction psi(v) to the u-equation, N RBF centres with signed weights, starting from "
                        "psi = 0 (default 0: none; a model given to --init keeps its own psi)")
    s.add_argument("--refine", type=int, nargs="+", default=[0], metavar="R",
                   help="mesh refinement level(s) to train on (default 0, the pixel mesh; e.g. 0 1: the mean loss "
                        "on the pixel mesh and on the mesh refined once, for resolution-consistent models)")
    s.add_argument("--checkpoints", type=checkpoints_option, default="all", metavar="{tape,all,K}",
                   help="gradients by a reverse sweep keeping all states (default: fastest), or only K snapshots "
                        "(binomial checkpointing: bounded memory for long horizons), or by pyadjoint's tape; "
                        "the same gradients")
    s.add_argument("--resume", action="store_true", help="continue from OUT.checkpoint")
    s.add_argument("--init", help="start from this learned model JSON instead of the default initial model")
    s.set_defaults(func=_cmd_train)


def _cmd_train(args):
    train(args.out, images=args.images, sigma255=args.sigma, patch=args.patch, per_image=args.per_image,
          stages=args.stages, steps=args.steps, time_=args.time, centres=args.centres, maxiter=args.maxiter,
          resume=args.resume, seed=args.seed, init=args.init, misfit=args.misfit, objective=args.objective,
          modulation=args.modulation, psi=args.psi, checkpoints=args.checkpoints, refine=args.refine,
          command=args.command_line)
