"""Synthetic training images (issue 23, item 3): the dead-leaves generator (deterministic, in [0, 1], every pixel
painted, edges at all scales, correlated colour channels) and ``train --synthetic N`` (the images trained on by both
optimisers, held out like any image, named in the provenance; a bad N refused by name)."""
import json

import numpy as np
import pytest

from fem_crossdiff.cli import main
from fem_crossdiff.errors import InputError
from fem_crossdiff.imaging.synthetic import dead_leaves, leaf_radii
from test_hostile_input import snapshot

TINY = ["--patch", "16", "--per-image", "1", "--stages", "1", "--steps", "2", "--centres", "3", "--modulation", "0"]


# ------------------------------------------------------------------------------------------- the generator
def test_dead_leaves_are_deterministic_in_the_seed_and_in_the_unit_interval():
    a, b, c = dead_leaves(96, seed=3), dead_leaves(96, seed=3), dead_leaves(96, seed=4)
    assert a.shape == (96, 96) and a.dtype == np.float64
    assert np.array_equal(a, b) and not np.allclose(a, c)
    rgb = dead_leaves((64, 80), seed=3, colour=True)
    assert rgb.shape == (64, 80, 3) and np.array_equal(rgb, dead_leaves((64, 80), seed=3, colour=True))
    for img in (a, c, rgb):
        assert np.all(np.isfinite(img)) and img.min() >= 0 and img.max() <= 1
        assert img.std() > 0.05                                       # not a blank page


def test_every_pixel_is_painted_by_a_leaf_and_many_leaves_are_seen():
    """Front to back until covered: no pixel left without a leaf (the first batch alone leaves ~e^-6 of them), at
    every seed tried, and the image is made of many visible leaves."""
    for seed in range(4):
        img, labels = dead_leaves(128, seed=seed, return_labels=True)
        assert labels.shape == (128, 128) and labels.min() >= 0 and labels.max() < 2 ** 40
        assert len(np.unique(labels)) > 50
        # a leaf's pixels share its base value and smooth shading: neighbours within a leaf differ far less than
        # neighbours across an edge
        same = labels[:, 1:] == labels[:, :-1]
        jumps = np.abs(np.diff(img, axis=1))
        assert np.median(jumps[same]) < 0.5 * np.median(jumps[~same])


def test_leaf_radii_follow_the_inverse_cube_law():
    r"""Density r^-3 on [rmin, rmax]: each octave of radii holds a quarter of the one below (P(r in [a, 2a]) is
    proportional to a^-2), within four binomial standard deviations of the exact shares."""
    rmin, rmax, n = 2.0, 128.0, 200_000
    r = leaf_radii(np.random.default_rng(0), n, rmin, rmax)
    assert r.min() >= rmin and r.max() <= rmax
    edges = rmin * 2.0 ** np.arange(7)
    F = (rmin ** -2 - edges ** -2) / (rmin ** -2 - rmax ** -2)
    share, seen = np.diff(F), np.histogram(r, edges)[0] / n
    assert np.all(np.abs(seen - share) < 4 * np.sqrt(share * (1 - share) / n)), (seen, share)
    assert np.allclose(seen[:4] / seen[1:5], 4, rtol=0.1)


def _octaves(labels):
    """How many visible leaves (connected or not: a leaf's pixels) have an area in [2^k, 2^(k+1)) pixels, k = 0..16."""
    _, areas = np.unique(labels, return_counts=True)
    return np.bincount(np.floor(np.log2(areas)).astype(int), minlength=17)[:17]


def test_visible_leaves_come_at_all_scales_as_a_scale_invariant_model_says():
    r"""Edges at many scales: in a scale-invariant image the number of visible regions of area in [A, 2A] falls like
    1/A (a slope of -1 per octave in log2 counts; measured -0.84 to -0.95 at five seeds), and every octave from 1 to
    2047 pixels is populated. Leaves of a single size fail both: their fragments pile up below that size (slope
    > 0) and stop there, or fall off a cliff (small leaves)."""
    def slope(**kwargs):
        h = _octaves(dead_leaves(256, seed=1, return_labels=True, **kwargs)[1])
        return np.polyfit(np.arange(3, 9), np.log2(h[3:9] + 1), 1)[0], np.all(h[:11] > 0)
    s, everywhere = slope()
    assert -1.25 < s < -0.6 and everywhere, s
    for size in (4, 12, 32):
        s, everywhere = slope(rmin=size, rmax=size)
        assert not (-1.25 < s < -0.6 and everywhere), (size, s)


def test_colour_leaves_have_correlated_but_distinct_channels():
    rgb = dead_leaves(128, seed=5, colour=True)
    channels = rgb.reshape(-1, 3).T
    corr = np.corrcoef(channels)
    assert np.all(corr[np.triu_indices(3, 1)] > 0.7), corr
    assert np.abs(channels[0] - channels[1]).mean() > 0.02 and np.abs(channels[1] - channels[2]).mean() > 0.02


def test_bad_generator_settings_are_refused_by_name():
    for kwargs, message in ((dict(rmin=0), "rmin 0"), (dict(rmin=5, rmax=2), "rmin 5, rmax 2"),
                            (dict(shapes=("star",)), "shapes ['star']"), (dict(texture=2), "texture share 2")):
        with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
            dead_leaves(32, **kwargs)
    with pytest.raises(InputError, match="size 0"):
        dead_leaves(0)


# ------------------------------------------------------------------------------------------- as training data
def test_synthetic_sources_are_crops_of_their_image_fresh_each_epoch():
    """The sources ``--synthetic`` adds: seeded from --seed, big enough for the patch, cropped from the image their
    name makes (L-BFGS-B's fixed set), and re-cropped from the same images each Adam epoch."""
    from fem_crossdiff.learning.datasets import synthetic_sources
    from fem_crossdiff.learning.pairs import training_pairs
    sources = synthetic_sources(2, seed=7, patch=80)
    assert sources == synthetic_sources(2, seed=7, patch=80) and sources != synthetic_sources(2, seed=8, patch=80)
    assert sources[0] != sources[1] and all(s.size == 160 for s in sources)
    assert str(sources[0]) == f"dead_leaves(size=160, seed={sources[0].seed})"
    small = synthetic_sources(2, seed=7, patch=16)
    assert [s.size for s in small] == [128, 128]
    fixed = training_pairs(small, sigma255=25, patch=16, per_image=1, seed=0)
    for (clean, noisy), source in zip(fixed, small):
        img = dead_leaves(source.size, seed=source.seed)
        windows = np.lib.stride_tricks.sliding_window_view(img, (16, 16))
        assert np.any(np.all(windows == clean, axis=(2, 3)))               # a crop of that very image
        assert not np.array_equal(clean, noisy)
    e1 = training_pairs(small, sigma255=25, patch=16, per_image=1, seed=0, epoch=1)
    e2 = training_pairs(small, sigma255=25, patch=16, per_image=1, seed=0, epoch=2)
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(e1, training_pairs(small, 25, 16, 1, 0, epoch=1)))
    assert not all(np.array_equal(a, b) for (a, _), (b, _) in zip(e1, e2))


def test_train_with_synthetic_images_records_them_and_holds_them_out_like_any_image(tmp_path, monkeypatch):
    from fem_crossdiff.model import load_model
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", "M.json", "--images", "brick", "--synthetic", "3", "--val-fraction", "0.25",
                 "--maxiter", "2", *TINY]) == 0
    p = load_model("M.json").provenance
    data = p["data"]["train"] + p["data"]["val"]
    assert p["settings"]["synthetic"] == 3 and len(p["data"]["val"]) == 1
    assert sorted(data) == sorted(["brick"] + [s for s in data if s.startswith("dead_leaves(size=128, seed=")])
    assert sum(s.startswith("dead_leaves(") for s in data) == 3


def test_adam_trains_on_synthetic_images_alone(tmp_path, monkeypatch, capsys):
    from fem_crossdiff.model import load_model
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", "A.json", "--synthetic", "2", "--synthetic-only", "--optimiser", "adam",
                 "--epochs", "2", "--batch", "2", *TINY]) == 0
    assert "of 2 image(s), 2 of them dead leaves" in capsys.readouterr().out
    model = load_model("A.json")
    p = model.provenance
    assert model.certificate() > 0 and p["epochs"] == 2
    assert p["settings"]["synthetic_only"] is True and p["settings"]["images"] is None
    assert [s.split(", seed=")[0] for s in p["data"]["train"]] == ["dead_leaves(size=128"] * 2
    assert json.loads(open("A.json").read())["provenance"]["data"] == p["data"]


BAD = [
    (["--synthetic", "0"], "--synthetic 0: expected an integer >= 1"),
    (["--synthetic", "-3"], "--synthetic -3: expected an integer >= 1"),
    (["--synthetic-only"], "--synthetic-only: give the number of dead-leaves images with --synthetic N"),
    (["--synthetic", "2", "--synthetic-only", "--images", "brick"], "--synthetic-only trains on dead-leaves images "
                                                                   "alone; drop --images"),
    (["--synthetic", "2", "--pairs", "a", "b"], "--synthetic 2: dead-leaves images are clean images"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[m.split(":")[0][:40] for _, m in BAD])
def test_a_bad_synthetic_option_is_refused_by_name_and_nothing_is_written(tmp_path, monkeypatch, capsys, args,
                                                                          message):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    assert main(["train", "--out", "m.json", "--maxiter", "1", *TINY, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fem-crossdiff train: error: "), err
    assert message in err[0], err[0]
    assert snapshot(tmp_path) == before
