"""What a training loss measures and how it is minimised (plain names, no Firedrake: the command line offers them as
choices)."""

import math

__all__ = ["MISFITS", "OBJECTIVES", "OPTIMISERS", "LR_SCHEDULES", "ADAM_DEFAULTS", "objective_term", "psnr_of_loss"]

#: How :math:`J` integrates :math:`(u(T) - c)^2`. ``"L2"`` (default): exactly, for the Q1 functions (consistent
#: mass); also the functional of the continuous adjoint (:mod:`fem_crossdiff.studies.continuous_adjoint`).
#: ``"pixels"``: by the trapezoidal rule at the vertices (lumped mass), i.e. on the image mesh the mean squared
#: pixel error that PSNR reports (edge and corner pixels at half and quarter weight). They differ most for
#: fine-scale errors (a checkerboard has 1/9 of its pixel error in L2), yet models trained on "pixels" do no
#: better by PSNR (``fem_crossdiff/learned/README.md``).
MISFITS = ("L2", "pixels")
#: How the images' misfits :math:`m_i` are combined. ``"mse"`` (default): :math:`J = \frac1n\sum_i m_i`, the
#: mean squared error, dominated by the textured patches with the largest errors. ``"psnr"``:
#: :math:`J = \frac1n\sum_i 10\log_{10} m_i`, minus the patches' mean PSNR (dB), in which a near-constant patch
#: counts as much as a textured one (it then smooths more: better on held-out patches, worse on the test crops).
OBJECTIVES = ("mse", "psnr")


def objective_term(objective, m):
    """An image's contribution to :math:`nJ` for its misfit ``m``, and the factor :math:`dJ_i/dm`."""
    if objective == "psnr":
        return 10 * math.log10(m), 10 / (math.log(10) * m)
    return m, 1.0


def psnr_of_loss(J):
    """The PSNR (dB) of a mean squared error ``J`` (images in [0, 1])."""
    return 10 * math.log10(1.0 / J) if J > 0 else float("inf")

#: The optimisers of ``train --optimiser``: scipy's full-batch L-BFGS-B (default) or projected Adam on minibatches of
#: patches drawn afresh every epoch (:mod:`.adam`).
OPTIMISERS = ("lbfgsb", "adam")
#: How Adam's step size varies over the run (:func:`~.adam.step_size`).
LR_SCHEDULES = ("constant", "cosine")
#: Adam's defaults: epochs, patches per minibatch, step size and its schedule. The step size is in the units of the
#: parameters the optimiser sees (with ``rescale``: relative to each one's start): each coordinate moves by about this
#: much per step, 0.05 being 1/38 of the narrowest box (the coupling ρ's [-0.95, 0.95]) and 1/1000 of the widest
#: (d11, d22, the RBF weights: [0, 50]). On the bundled pictures (σ 25, 48² patches, 30 epochs of 3 minibatches,
#: 20% held out) the validation PSNR rose from 29.56 dB to 29.69 / 29.99 / 30.11 / 30.13 dB with 0.01 / 0.03 / 0.05 /
#: 0.1 (``fem_crossdiff/learned/README.md`` §13).
ADAM_DEFAULTS = dict(epochs=30, batch=8, lr=0.05, lr_schedule="cosine")
