"""What a training loss measures (plain names, no Firedrake: the command line offers them as choices)."""

import math

__all__ = ["MISFITS", "OBJECTIVES", "objective_term", "psnr_of_loss"]

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
