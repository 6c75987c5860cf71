"""Manufactured-solution convergence in h and Δt for every time scheme, and self-convergence on an image."""
import numpy as np
import pytest

from fem_crossdiff.studies.tables import eoc
from fem_crossdiff.studies.manufactured import ( mms_model, self_convergence_image, space_convergence,
                                      time_convergence)


@pytest.mark.parametrize("name", ["nonlinear-cross", "perona-malik"])
def test_space_convergence_is_second_order(name):
    errors = space_convergence(mms_model(name), scheme="crank-nicolson", levels=4)
    rates = eoc(errors)
    assert errors[-1] < errors[0] / 20
    assert rates[-1] > 1.85, (errors, rates)


@pytest.mark.parametrize("scheme, order", [("semi-implicit", 1), ("implicit", 1), ("crank-nicolson", 2)])
def test_time_convergence_order(scheme, order):
    diffs = time_convergence(mms_model("nonlinear-cross"), scheme, levels=4)
    rates = eoc(diffs)
    assert abs(rates[-1] - order) < 0.15, (diffs, rates)


def test_self_convergence_on_an_image_in_h(small_image):
    from fem_crossdiff.model import make_model
    diffs = self_convergence_image(small_image[:9, 10:19], make_model("linear-cross", time=1.0, steps=4), levels=3)
    rates = eoc(diffs)
    assert np.all(diffs[1:] < diffs[:-1])
    assert rates[-1] > 1.5, (diffs, rates)
