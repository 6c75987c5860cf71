"""Stochastic training (issue 23, item 2): projected Adam on minibatches of patches drawn afresh each epoch, every
iterate in the box, a resumed run equal to an uninterrupted one, per-epoch validation and the training curve."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from fem_crossdiff.cli import main
from test_hostile_input import snapshot

TINY = ["--patch", "16", "--batch", "2", "--stages", "1", "--steps", "2", "--centres", "3", "--modulation", "0"]
KW = dict(patch=16, batch=2, stages=1, steps=2, centres=3, modulation=0, optimiser="adam", log=lambda *a, **k: None)


def _folder(folder, n=3, size=40, seed=0):
    """``n`` 8-bit PNG crops ``size``² of a bundled picture (textured: there is something to learn)."""
    import imageio.v3 as iio
    import skimage.data
    img, rng = skimage.data.camera(), np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for k in range(n):
        r, c = rng.integers(0, img.shape[0] - size, 2)
        paths.append(os.path.join(folder, f"img{k}.png"))
        iio.imwrite(paths[-1], img[r:r + size, c:c + size])
    return paths


def test_the_adam_update_against_a_hand_computed_two_step_example():
    from fem_crossdiff.learning.adam import Adam
    # coordinates: free; free; at its upper bound pushed outwards; frozen (lo == hi)
    opt = Adam([-10, -10, -1, 3], [10, 10, 1, 3])
    x1 = opt.step([1.0, -2.0, 1.0, 3.0], [0.5, -1.0, -4.0, 1.0], lr=0.1)
    # t = 1: m = 0.1 g, v = 0.001 g², so m̂ = g, v̂ = g²: each free coordinate moves by lr against its gradient's sign
    assert x1 == pytest.approx([0.9, -1.9, 1.0, 3.0], abs=1e-7)
    x2 = opt.step(x1, [0.1, 2.0, -4.0, 1.0], lr=0.1)
    # t = 2: m = 0.9·0.1·g1 + 0.1·g2, v = 0.999·0.001·g1² + 0.001·g2², m̂ = m / 0.19, v̂ = v / 0.001999
    m = [0.9 * 0.05 + 0.01, 0.9 * -0.1 + 0.2]
    v = [0.999 * 0.00025 + 0.001 * 0.01, 0.999 * 0.001 + 0.001 * 4.0]
    expected = [x1[i] - 0.1 * (m[i] / 0.19) / (math.sqrt(v[i] / 0.001999) + 1e-8) for i in range(2)]
    assert x2[:2] == pytest.approx(expected, rel=1e-12)
    assert x2[:2] == pytest.approx([0.9 - 0.0803046, -1.9 - 0.0366101], abs=1e-6)
    assert list(x2[2:]) == [1.0, 3.0] and opt.t == 2                       # projected on the box


def test_the_step_size_schedules():
    from fem_crossdiff.learning.adam import step_size
    assert [step_size(0.1, "constant", t, 10) for t in (1, 10)] == [0.1, 0.1]
    cosine = [step_size(0.1, "cosine", t, 10) for t in range(1, 11)]
    assert cosine[0] == 0.1 and cosine[5] == pytest.approx(0.05) and 0 < cosine[-1] < 0.003
    assert all(a > b for a, b in zip(cosine, cosine[1:]))


def _plain_crop(patch, img):
    """True if ``patch`` is an unturned crop of ``img``."""
    p = patch.shape[0]
    return any(np.array_equal(img[r:r + p, c:c + p], patch)
               for r in range(img.shape[0] - p + 1) for c in range(img.shape[1] - p + 1))


def test_patches_are_drawn_afresh_each_epoch_and_the_same_for_the_same_seed(tmp_path):
    from fem_crossdiff.imaging.files import read_image
    from fem_crossdiff.learning.pairs import pair_patches, training_pairs
    paths = _folder(str(tmp_path / "a"), n=2)
    images = [read_image(p) for p in paths]

    def epoch(e, seed=0):
        return training_pairs(paths, 25.0, 16, 3, seed, epoch=e)

    def same(a, b):
        return all(np.array_equal(p, q) for x, y in zip(a, b) for p, q in zip(x, y))

    assert same(epoch(1), epoch(1)) and not same(epoch(1), epoch(2)) and not same(epoch(1), epoch(1, seed=1))
    noise = [[f - c for c, f in epoch(e)] for e in (1, 2)]
    assert not any(np.allclose(a, b) for a in noise[0] for b in noise[1])          # new noise realisations
    # the fixed set (L-BFGS-B) is unturned crops; epochs turn and flip some of theirs
    fixed = training_pairs(paths, 25.0, 16, 3, 0)
    assert all(_plain_crop(c, images[k // 3]) for k, (c, _) in enumerate(fixed))
    turned = [not _plain_crop(c, images[k // 3]) for e in range(4) for k, (c, _) in enumerate(epoch(e))]
    assert any(turned) and not all(turned)
    # pairs: the same crop, turn and flip in both images (noisy = 1 - clean here)
    import imageio.v3 as iio
    os.makedirs(tmp_path / "n")
    for p in paths:
        iio.imwrite(str(tmp_path / "n" / os.path.basename(p)), 255 - iio.imread(p))
    pairs = list(zip(sorted(str(p) for p in (tmp_path / "n").iterdir()), paths))
    for e in range(3):
        for clean, noisy in pair_patches(pairs, 16, 3, 0, epoch=e):
            assert np.allclose(noisy, 1 - clean)


def test_adam_on_a_tiny_folder_lowers_the_loss_and_writes_a_certified_model_and_its_curve(tmp_path, monkeypatch):
    from fem_crossdiff.model import load_model
    monkeypatch.chdir(tmp_path)
    _folder("data")
    assert main(["train", "--out", "M.json", "--images", "data", "--optimiser", "adam", "--epochs", "3",
                 "--lr", "0.05", *TINY]) == 0
    model = load_model("M.json")
    p = model.provenance
    assert model.trained and model.certificate() > 0
    assert p["final_loss"] < p["initial_loss"]
    assert p["optimiser"] == dict(name="adam", batch=2, lr=0.05, lr_schedule="cosine", epochs=3)
    assert p["epochs"] == 3 and p["gradient_evaluations"] == 9                  # 6 patches a epoch, 3 minibatches
    rows = Path("M.json.curve.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,val_loss,seconds" and [r.split(",")[0] for r in rows[1:]] == list("0123")
    assert float(rows[-1].split(",")[1]) < float(rows[1].split(",")[1])
    state = json.loads(Path("M.json.checkpoint").read_text())
    assert state["adam"]["t"] == 9 and len(state["history"]) == 3
    assert Path("M.json.curve.png").read_bytes()[:4] == b"\x89PNG"
    # a second run on the same --out refuses the earlier curve by name (nothing overwritten)
    os.remove("M.json")
    os.remove("M.json.checkpoint")
    before = snapshot(tmp_path)
    assert main(["train", "--out", "M.json", "--images", "data", "--optimiser", "adam", *TINY]) == 2
    assert snapshot(tmp_path) == before


def test_every_iterate_the_loss_sees_lies_in_the_box(tmp_path, monkeypatch):
    """A large step size pushes parameters against their bounds: they are clipped, never outside."""
    from fem_crossdiff.learning import bounds, train
    from fem_crossdiff.learning.split_loss import SplitDatasetLoss
    monkeypatch.chdir(tmp_path)
    _folder("data")
    seen = []
    for name in ("loss", "loss_and_gradient"):
        original = getattr(SplitDatasetLoss, name)

        def spy(self, x, original=original):
            seen.append(np.array(x))
            return original(self, x)
        monkeypatch.setattr(SplitDatasetLoss, name, spy)
    model, history = train("B.json", images=["data"], epochs=2, lr=5.0, lr_schedule="constant",
                           val_fraction=1 / 3, **KW)
    box = np.array(bounds(model))
    assert len(seen) > 6 and len(history) == 2
    assert all(np.all(x >= box[:, 0]) and np.all(x <= box[:, 1]) for x in seen)
    assert any(np.any(x == box[:, 0]) or np.any(x == box[:, 1]) for x in seen[1:])   # the box was reached


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch, capsys):
    from fem_crossdiff.learning import pack, train
    from fem_crossdiff.model import load_model
    monkeypatch.chdir(tmp_path)
    _folder("data")
    kw = dict(KW, images=["data"], val_fraction=1 / 3, epochs=2, lr=0.05)
    _, whole = train("A.json", **kw)

    def stop(entry, epochs):                 # Ctrl-C after the first epoch (its state is written by then)
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train("B.json", progress=stop, **kw)
    assert not Path("B.json").exists()
    _, resumed = train("B.json", resume=True, **kw)
    a, b = load_model("A.json"), load_model("B.json")
    assert np.allclose(pack(a), pack(b), rtol=1e-13, atol=0)
    assert [e["loss"] for e in resumed] == pytest.approx([e["loss"] for e in whole], rel=1e-13)
    assert a.provenance["best_iteration"] == b.provenance["best_iteration"]
    # on the command line, "continue to 2 epochs": --epochs is the total (a constant schedule: the same steps)
    args = ["train", "--images", "data", "--optimiser", "adam", "--lr", "0.05", "--lr-schedule", "constant", *TINY]
    assert main(args + ["--out", "C.json", "--epochs", "2"]) == 0
    assert main(args + ["--out", "D.json", "--epochs", "1"]) == 0
    one = pack(load_model("D.json"))
    os.remove("D.json")
    assert main(args + ["--out", "D.json", "--epochs", "2", "--resume"]) == 0
    c, d = pack(load_model("C.json")), pack(load_model("D.json"))
    assert np.allclose(c, d, rtol=1e-13, atol=0) and not np.allclose(c, one)
    assert len(Path("D.json.curve.csv").read_text().splitlines()) == 4
    # corrupt moments are refused by name
    state = json.loads(Path("D.json.checkpoint").read_text())
    state["adam"]["m"] = state["adam"]["m"][:-1]
    Path("D.json.checkpoint").write_text(json.dumps(state))
    os.remove("D.json")
    capsys.readouterr()
    assert main(args + ["--out", "D.json", "--epochs", "3", "--resume"]) == 2
    assert 'D.json.checkpoint: field "m" of "adam" is not' in capsys.readouterr().err


BAD = [
    (["--optimiser", "adam", "--epochs", "0"], "--epochs 0: expected an integer >= 1"),
    (["--optimiser", "adam", "--batch", "0"], "--batch 0: expected an integer >= 1"),
    (["--optimiser", "adam", "--lr", "0"], "--lr 0.0: expected a step size > 0"),
    (["--optimiser", "adam", "--lr", "-0.1"], "--lr -0.1: expected a step size > 0"),
    (["--optimiser", "adam", "--lr", "nan"], "--lr nan: expected a step size > 0"),
    (["--optimiser", "adam", "--maxiter", "3"], "--maxiter 3: counts L-BFGS-B iterations"),
    (["--epochs", "2", "--lr", "0.1"], "--epochs, --lr: options of --optimiser adam"),
    (["--lr-schedule", "constant"], "--lr-schedule: options of --optimiser adam"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_options_are_refused_by_name_and_nothing_is_written(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    _folder("data", n=1)
    before = snapshot(tmp_path)
    assert main(["train", "--out", "M.json", "--images", "data", "--patch", "16", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert snapshot(tmp_path) == before


@pytest.mark.parallel
def test_two_ranks_train_the_same_model_as_one(tmp_path, mpirun):
    """Under ``mpiexec -n 2`` each minibatch's patches are shared out over the ranks (the loss sums over them): the
    same iterates as on one rank, to round-off."""
    from fem_crossdiff.learning import pack
    from fem_crossdiff.model import load_model
    _folder(tmp_path / "data")
    xs = []
    for n in (1, 2):
        out = tmp_path / f"M{n}.json"
        mpirun(n, "-m", "fem_crossdiff.cli", "train", "--out", out, "--images", tmp_path / "data", "--optimiser",
               "adam", "--epochs", "2", *TINY)
        model = load_model(out)
        assert model.trained and model.provenance["epochs"] == 2
        assert model.provenance["final_loss"] < model.provenance["initial_loss"]
        xs.append(pack(model))
    assert np.allclose(xs[1], xs[0], rtol=1e-10, atol=1e-13), np.max(np.abs(xs[1] - xs[0]))
