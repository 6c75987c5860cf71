"""The data sets: every training picture loads offline as grey in [0, 1], and none is a public test image."""
import numpy as np
import pytest

from fem_crossdiff.imaging.data import TEST_IMAGES, TRAIN_IMAGES, load
from fem_crossdiff.learning import training_pairs


@pytest.mark.parametrize("name", TRAIN_IMAGES + TEST_IMAGES)
def test_every_bundled_picture_loads_as_grey_in_unit_range(name):
    img = load(name)
    assert img.ndim == 2 and img.dtype == np.float64 and min(img.shape) >= 96
    assert 0.0 <= img.min() < img.max() <= 1.0


def test_training_and_test_pictures_are_disjoint():
    assert not set(TRAIN_IMAGES) & set(TEST_IMAGES)
    with pytest.raises(ValueError, match=r"\['moon'\] are test images"):
        training_pairs(["brick", "moon"], 25, patch=16)
    with pytest.raises(ValueError, match="unknown image 'lena'"):
        load("lena")
