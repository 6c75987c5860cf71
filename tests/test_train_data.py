"""Training on the user's data (issue 23, item 1): folders, files and globs of clean images, real noisy/clean pairs,
a validation set choosing the iterate saved, and bad data refused by name before anything is written."""
import os
from pathlib import Path

import numpy as np
import pytest

from fem_crossdiff.cli import main
from test_hostile_input import snapshot

TINY = ["--patch", "16", "--per-image", "1", "--stages", "1", "--steps", "2", "--centres", "3", "--modulation", "0"]


def _crops(n, size=40, seed=0):
    """``n`` clean grey crops of a bundled picture (textured: the loss has something to learn)."""
    import skimage.data
    img = skimage.data.camera()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        r, c = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        out.append(img[r:r + size, c:c + size])
    return out


def _write_folder(folder, n=3, size=40, seed=0):
    """``n`` PNGs of ``size``² in ``folder``: 8-bit, and one 16-bit (the depths read as the same [0, 1] scale)."""
    import imageio.v3 as iio
    os.makedirs(folder, exist_ok=True)
    paths = []
    for k, crop in enumerate(_crops(n, size, seed)):
        path = os.path.join(folder, f"img{k}.png")
        iio.imwrite(path, crop if k else crop.astype(np.uint16) * 257)
        paths.append(path)
    return paths


def _train_and_val_folders(seed):
    """Folders ``train`` (2 images) and ``val`` (3) of 40² crops of camera, in the current folder."""
    import imageio.v3 as iio
    import skimage.data
    img, rng = skimage.data.camera(), np.random.default_rng(seed)
    for folder, n in (("train", 2), ("val", 3)):
        os.makedirs(folder)
        for k in range(n):
            r, c = rng.integers(0, 472, 2)
            iio.imwrite(f"{folder}/i{k}.png", img[r:r + 40, c:c + 40])


def test_the_done_when_command_trains_on_a_folder_lowers_the_loss_and_names_the_data(tmp_path, monkeypatch):
    from fem_crossdiff.model import load_model
    monkeypatch.chdir(tmp_path)
    paths = _write_folder("data", n=3, size=56)
    assert main(["train", "--out", "M.json", "--images", "data", "--sigma", "25", "--patch", "48",
                 "--maxiter", "3"]) == 0
    model = load_model("M.json")
    p = model.provenance
    assert model.trained and model.certificate() > 0
    assert p["final_loss"] < p["initial_loss"]
    assert p["data"]["train"] == [os.path.abspath(q) for q in paths]
    assert p["settings"]["images"] == ["data"]
    assert not Path("M.json.lock").exists()


def test_files_globs_and_bundled_names_resolve_in_order_and_each_file_once(tmp_path, monkeypatch):
    from fem_crossdiff.learning.datasets import Picture, image_sources
    monkeypatch.chdir(tmp_path)
    paths = _write_folder("data", n=3)
    Path("data/notes.txt").write_text("not an image")                 # a folder's non-image files are not read
    got = image_sources(["data/img2.png", "data/*.png", "brick"])
    assert got == [paths[2], paths[0], paths[1], "brick"]
    assert isinstance(got[-1], Picture) and not isinstance(got[0], Picture)
    assert image_sources(["data"]) == paths


def test_patches_own_their_pixels_and_a_colour_file_is_made_grey_with_a_note(tmp_path):
    """Memory bounded by the patches: no patch is a view keeping its whole image alive (a full-width patch of a
    grey image would be one); a colour file for a grey model is converted (BT.709) and said once."""
    import imageio.v3 as iio
    from fem_crossdiff.imaging.files import to_grey
    from fem_crossdiff.learning.pairs import training_pairs
    rgb = (255 * np.random.default_rng(1).random((16, 16, 3))).astype(np.uint8)
    iio.imwrite(tmp_path / "c.png", rgb)
    with pytest.warns(UserWarning, match="1 colour image\\(s\\) made grey"):
        pairs = training_pairs([str(tmp_path / "c.png")], 25, patch=16, per_image=2, seed=0)
    for clean, noisy in pairs:
        assert clean.base is None and noisy.base is None
        np.testing.assert_allclose(clean, to_grey(rgb), atol=1e-12)
    colour = training_pairs([str(tmp_path / "c.png")], 25, patch=16, per_image=1, seed=0, colour=True)
    np.testing.assert_array_equal(colour[0][0], rgb / 255.0)


def test_pairs_are_cropped_at_the_same_place_and_trained_on_without_synthesised_noise(tmp_path, monkeypatch):
    """Two folders matched by name (noisy .npy floats, clean .png): every patch pair is the same window of both
    files (the noise is the file's, not synthesised), and the model trains on them."""
    import imageio.v3 as iio
    from fem_crossdiff.learning.datasets import pair_sources
    from fem_crossdiff.learning.pairs import pair_patches
    from fem_crossdiff.model import load_model
    monkeypatch.chdir(tmp_path)
    os.makedirs("noisy")
    os.makedirs("clean")
    rng = np.random.default_rng(3)
    images = {}
    for k, crop in enumerate(_crops(3, seed=2)):
        clean = crop / 255.0
        noisy = clean + rng.normal(0, 25 / 255, clean.shape)
        iio.imwrite(f"clean/s{k}.png", crop)
        np.save(f"noisy/s{k}.npy", noisy)
        images[f"s{k}"] = (clean, noisy)
    sources = pair_sources("noisy", "clean")
    assert [(os.path.basename(n), os.path.basename(c)) for n, c in sources] == [
        ("s0.npy", "s0.png"), ("s1.npy", "s1.png"), ("s2.npy", "s2.png")]
    patches = pair_patches(sources, patch=16, per_image=2, seed=0)
    assert len(patches) == 6
    for k, (clean_p, noisy_p) in enumerate(patches):
        clean, noisy = images[f"s{k // 2}"]
        where = [(r, c) for r in range(25) for c in range(25) if np.array_equal(clean[r:r + 16, c:c + 16], clean_p)]
        assert where and any(np.array_equal(noisy[r:r + 16, c:c + 16], noisy_p) for r, c in where)
    assert main(["train", "--out", "P.json", "--pairs", "noisy", "clean", "--maxiter", "3", *TINY]) == 0
    p = load_model("P.json").provenance
    assert p["final_loss"] < p["initial_loss"]
    assert p["settings"]["pairs"] == ["noisy", "clean"] and p["settings"]["sigma"] is None
    assert [[os.path.basename(n), os.path.basename(c)] for n, c in p["data"]["train"]] == [
        ["s0.npy", "s0.png"], ["s1.npy", "s1.png"], ["s2.npy", "s2.png"]]


def test_validation_chooses_the_iterate_best_on_it_and_records_train_and_val_psnr(tmp_path, monkeypatch):
    """Two crops to train on, three others to validate on: validation PSNR rises, then falls before the last
    iterate (over-fitting two patches), so the iterate chosen is neither the start nor the last, and the model saved
    is that iterate."""
    from fem_crossdiff.learning import pack, train
    from fem_crossdiff.learning.datasets import VAL_SEED
    from fem_crossdiff.learning.pairs import training_pairs
    from fem_crossdiff.learning.split_loss import SplitDatasetLoss
    from fem_crossdiff.model import load_model
    monkeypatch.chdir(tmp_path)
    _train_and_val_folders(1)
    model, history = train("V.json", images=["train"], val=["val"], patch=16, per_image=1, stages=1, steps=2,
                           centres=3, modulation=0, maxiter=4, log=lambda *a, **k: None)
    p = load_model("V.json").provenance
    vals = [p["initial_val_loss"]] + [e["val_loss"] for e in history]
    best = int(np.argmin(vals))
    assert 0 < best < len(vals) - 1, vals                   # the case the choice matters in
    assert p["best_iteration"] == best
    assert p["final_val_loss"] == pytest.approx(vals[best], rel=1e-10)
    assert p["final_val_psnr"] == pytest.approx(history[best - 1]["val_psnr"], rel=1e-10)
    assert p["final_train_psnr"] > 0 and len(p["data"]["val"]) == 3 and p["settings"]["val"] == ["val"]
    # the saved model is the iterate chosen: its validation loss, recomputed on the same patches, is the minimum
    loaded = load_model("V.json")
    val_pairs = training_pairs(["val"], 25, 16, 1, VAL_SEED)
    assert SplitDatasetLoss(loaded, val_pairs).loss(pack(loaded)) == pytest.approx(vals[best], rel=1e-8)


def test_the_start_is_saved_when_no_iterate_beats_it_on_validation(tmp_path, monkeypatch):
    """Training on white-noise textures, validating on smooth ramps (which the heavily smoothing start suits):
    every iterate is worse on validation than the start, and the start is what is saved, said as such."""
    import imageio.v3 as iio
    from fem_crossdiff.learning import train
    from fem_crossdiff.model import load_model
    monkeypatch.chdir(tmp_path)
    os.makedirs("train")
    os.makedirs("val")
    rng = np.random.default_rng(5)
    for k in range(3):
        iio.imwrite(f"train/t{k}.png", (255 * rng.random((40, 40))).astype(np.uint8))
        ramp = np.add.outer(np.linspace(0.3, 0.6, 40), np.linspace(0, 0.1 * k, 40))
        iio.imwrite(f"val/v{k}.png", (255 * ramp).astype(np.uint8))
    said = []
    model, history = train("S.json", images=["train"], val=["val"], patch=16, per_image=1, stages=1, steps=2,
                           centres=3, modulation=0, maxiter=2, log=said.append)
    p = load_model("S.json").provenance
    assert all(e["val_loss"] > p["initial_val_loss"] for e in history)
    assert p["best_iteration"] == 0 and p["final_val_loss"] == pytest.approx(p["initial_val_loss"], rel=1e-10)
    assert p["final_loss"] == pytest.approx(p["initial_loss"], rel=1e-10)
    assert "the start: training did not improve on validation" in said[-1]


def test_a_resumed_run_keeps_the_best_iterate_of_the_run_before(tmp_path, monkeypatch):
    """The best iterate on validation lives in the resume file: a run resumed after it still saves it, and the
    validation loss of the start is the original run's."""
    from fem_crossdiff.learning import train
    from fem_crossdiff.model import load_model
    monkeypatch.chdir(tmp_path)
    _train_and_val_folders(4)
    kw = dict(images=["train"], val=["val"], patch=16, per_image=1, stages=1, steps=2, centres=3, modulation=0,
              log=lambda *a, **k: None)
    _, first = train("R.json", maxiter=2, **kw)
    start = load_model("R.json").provenance["initial_val_loss"]
    os.remove("R.json")
    _, history = train("R.json", maxiter=4, resume=True, **kw)
    p = load_model("R.json").provenance
    vals = [start] + [e["val_loss"] for e in history]
    assert history[:2] == first and p["initial_val_loss"] == start
    assert p["best_iteration"] in (1, 2), vals                # the best is in the run before: the case at issue
    assert p["best_iteration"] == int(np.argmin(vals)) and p["final_val_loss"] == pytest.approx(min(vals), rel=1e-10)


def test_a_resume_file_without_its_best_iterate_is_refused_by_name(tmp_path, monkeypatch, capsys):
    import json
    monkeypatch.chdir(tmp_path)
    _write_folder("a", n=2)
    args = ["train", "--out", "r.json", "--images", "a", "--val-fraction", "0.5", "--maxiter", "1", *TINY]
    assert main(args) == 0
    os.remove("r.json")
    state = json.loads(Path("r.json.checkpoint").read_text())
    assert state["best"]["iteration"] in (0, 1)
    del state["best"]
    Path("r.json.checkpoint").write_text(json.dumps(state))
    before = snapshot(tmp_path)
    assert main(args + ["--resume"]) == 2
    assert "r.json.checkpoint: not a complete training state (no best iterate on validation)" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_a_fraction_is_held_out_deterministically_by_seed():
    from fem_crossdiff.learning.datasets import held_out
    sources = [f"f{k}.png" for k in range(10)]
    a, b = held_out(sources, 0.3, 7), held_out(sources, 0.3, 7)
    assert a == b and len(a[1]) == 3 and sorted(a[0] + a[1]) == sorted(sources)
    assert any(held_out(sources, 0.3, s)[1] != a[1] for s in range(8, 12))


@pytest.fixture
def baddir(tmp_path, monkeypatch):
    """Good and bad data; the command runs inside."""
    import imageio.v3 as iio
    monkeypatch.chdir(tmp_path)
    _write_folder("good", n=2)
    _write_folder("mixed", n=2)
    Path("mixed/zz.png").write_text("not a png")                  # read after the good ones (and after the lock)
    _write_folder("greys", n=2)
    os.makedirs("empty")
    Path("empty/readme.txt").write_text("no images here")
    iio.imwrite("small.png", np.zeros((10, 12), np.uint8))
    for side in ("noisy", "clean", "lonely", "shapes"):
        _write_folder(side, n=2)
    os.remove("lonely/img1.png")
    iio.imwrite("shapes/img1.png", np.zeros((40, 41), np.uint8))
    return tmp_path


BAD = [
    (["--images", "empty"], "empty: a folder with no images"),
    (["--images", "mixed"], "mixed/zz.png: cannot be read as an image"),
    (["--images", "small.png"], "small.png (10×12) is smaller than the patch size 16"),
    (["--images", "nothing*.png"], "--images 'nothing*.png': matches no file"),
    (["--images", "nosuch"], "--images nosuch: no such file or folder, and not a bundled picture"),
    (["--images", "greys", "--colour"], "greys/img0.png: a grey image; a colour model (--colour)"),
    (["--pairs", "noisy", "lonely"], "noisy/img1.png: no clean partner 'img1.*' in lonely"),
    (["--pairs", "lonely", "clean"], "clean/img1.png: no noisy partner 'img1.*' in lonely"),
    (["--pairs", "noisy", "shapes"], "noisy/img1.png (40×40) and shapes/img1.png (40×41): partners of different"),
    (["--pairs", "noisy/*.png", "lonely/*.png"], "2 noisy and 1 clean images (matched in sorted order: "
                                                 "noisy/img1.png has no partner)"),
    (["--pairs", "noisy", "clean", "--images", "good"], "give either clean images (--images) or noisy/clean pairs"),
    (["--pairs", "noisy", "clean", "--val", "good"], "with --pairs hold out a share of the pairs"),
    (["--images", "good", "--val", "empty"], "empty: a folder with no images"),
    (["--images", "good", "--val-fraction", "1.5"], "--val-fraction 1.5: expected a number between 0 and 1"),
    (["--images", "good/img0.png", "--val-fraction", "0.5"], "holds out 0 of 1 image(s)"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[m.split(":")[0][:40] for _, m in BAD])
def test_bad_data_is_refused_by_name_and_nothing_is_written(baddir, capsys, args, message):
    before = snapshot(baddir)
    assert main(["train", "--out", "m.json", "--maxiter", "1", *TINY, *args]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fem-crossdiff train: error: "), err
    assert message in err[0], err[0]
    assert captured.out == ""
    assert snapshot(baddir) == before                  # no model, no checkpoint, no lock file

