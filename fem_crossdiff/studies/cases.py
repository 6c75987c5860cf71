r"""The studies' data and models: a crop of a bundled picture with noise, and two-stage learned-type models with
generic (perturbed) parameters, so that every parameter's gradient is exercised."""
import os

import numpy as np

from ..errors import InputError
from ..imaging.data import load, noisy_pair
from ..learning.parametrisation import FLOOR, fit_rbf, learned_template, with_psi
from ..model import CrossDiffusionModel, Influence, make_model

__all__ = ["OUT", "MESHES", "STUDY_MODELS", "STUDY_LEVELS", "STUDY_COUNTS", "QUICK_LEVELS", "study_pair",
           "study_model"]

#: Where the studies write their figures and JSON by default.
OUT = os.path.join("out", "demos")
#: The repository's mesh folder (``meshes/``).
MESHES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "meshes")
#: The adjoint study's levels (:func:`~.adjoint.adjoint_study`): coarsest steps, numbers of refinements, finite
#: differences on the levels with refine <= fd_refine and steps <= fd_steps.
STUDY_LEVELS = dict(steps0=4, dt_levels=5, h_levels=3, h_steps=16, joint_levels=3, cn_levels=4, fd_refine=0,
                    fd_steps=8)
#: Integer options of :func:`~.adjoint.adjoint_study`: (least admissible value, meaning).
STUDY_COUNTS = {"steps0": (1, "coarsest number of time steps, T = 2"),
                "dt_levels": (1, "time refinements on the pixel mesh"),
                "h_levels": (1, "mesh refinements at fixed steps"),
                "h_steps": (1, "steps of the fixed-tau mesh refinement"),
                "joint_levels": (1, "joint refinements in h and tau"),
                "cn_levels": (0, "Crank-Nicolson time refinements, 0: none"),
                "fd_refine": (0, "finite differences on levels with refine <= this"),
                "fd_steps": (0, "... and steps <= this")}
#: Fewer levels for ``--quick`` (a 16² crop).
QUICK_LEVELS = dict(dt_levels=4, h_levels=3, h_steps=8, joint_levels=3, cn_levels=3)
#: Models of the adjoint study (see :func:`study_model`).
STUDY_MODELS = ("learned-v", "learned", "learned-modulated", "learned-reacting", "nonlinear-cross")


def study_pair(image="coins", size=32, origin=(128, 128), sigma255=25.0, seed=0):
    """(clean, noisy): a ``size``² crop at ``origin`` (row, col) of a bundled picture, Gaussian noise σ/255."""
    img = load(image)
    r, c = origin
    clean = np.ascontiguousarray(img[r:r + size, c:c + size])
    if clean.shape != (size, size):
        raise InputError(f"crop {size}² at {origin} does not fit image '{image}' of shape {img.shape}")
    return noisy_pair(clean, sigma255, seed)


def study_model(name="learned-v", centres=5, time=2.0, steps=8):
    r"""A two-stage learned-type model with generic (perturbed) parameters, or nonlinear-cross.

    * ``"learned"``: :func:`~fem_crossdiff.learning.learned_template` as is — :math:`g_{11}(|\nabla u|)`
      Perona–Malik-like, :math:`g_{22}(v)` — with :math:`\rho,\beta,\lambda,\mu,d_{22}` and the RBF weights
      perturbed;
    * ``"learned-v"``: the same with :math:`g_{11}` an RBF of :math:`v` too (fitted to
      :math:`1/(1+(v/0.08)^2)`), the structure of Gilboa's NCDF and of the Araújo et al. models;
    * ``"learned-modulated"``: ``"learned"`` with the factor :math:`h_{11}(v)` of the :math:`u`-diffusivity
      (:func:`~fem_crossdiff.learning.with_modulation`, weights nonzero);
    * ``"learned-reacting"``: ``"learned-modulated"`` with the reaction :math:`\psi(v)` in the :math:`u`-equation
      (:func:`~fem_crossdiff.learning.with_psi`, signed weights nonzero);
    * ``"nonlinear-cross"``: Araújo et al.'s model with reaction, one stage.
    """
    if name == "nonlinear-cross":
        return make_model("nonlinear-cross", d11=1.0, d12=-0.2, d21=0.3, d22=0.6, k=0.05, lam=0.1, mu=0.2,
                          time=time, steps=steps)
    if name not in STUDY_MODELS:
        raise InputError(f"unknown study model '{name}'; expected one of {', '.join(STUDY_MODELS)}")
    d = learned_template(stages=2, centres=centres, time=time, steps=steps,
                         modulation=centres if name in ("learned-modulated", "learned-reacting") else 0)
    d = (with_psi(d, centres) if name == "learned-reacting" else d).fields()
    if name == "learned-v":
        g = Influence("rbf", "v", floor=FLOOR, centres=centres, span=0.2)
        d["g11"] = g.to_dict()
        w = fit_rbf(g, lambda s: 1 / (1 + (s / 0.08) ** 2))
        for st in d["stages"]:
            st["w11"] = w.tolist()
    bump = lambda w, a: (np.asarray(w) + a * np.linspace(0.5, 1.0, len(w))).tolist()  # noqa: E731
    s0, s1 = d["stages"][0], d["stages"][1]
    s0.update(rho=0.2, lam=0.1, mu=0.2, w11=bump(s0["w11"], 0.05), w22=bump(s0["w22"], 0.1))
    s1.update(d22=0.7, beta=-0.3, lam=0.05, mu=0.1, w11=bump(s1["w11"], 0.1), w22=bump(s1["w22"], 0.05))
    if name in ("learned-modulated", "learned-reacting"):
        s0.update(w11h=bump(s0["w11h"], 0.3))
        s1.update(w11h=bump(s1["w11h"], 0.6))
    if name == "learned-reacting":
        s0.update(wpsi=bump(s0["wpsi"], -0.5))
        s1.update(wpsi=(-np.asarray(bump(s1["wpsi"], 0.4))[::-1]).tolist())
    d["name"] = f"study-{name}"
    return CrossDiffusionModel.from_dict(d, name)
