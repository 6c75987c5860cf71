"""User models and model files under careless and hostile use (issue 25, items 6 and 11): ellipticity sampled over
the states an image reaches, definitions digested, sealed files that lost their digest, faulty definitions and
corrupt fields, each refused in one line naming the file and what is wrong."""
import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fem_crossdiff.cli import main
from fem_crossdiff.errors import ModelError

SHIPPED = Path(__file__).resolve().parent.parent / "fem_crossdiff" / "learned" / "sigma25.json"

HEADER = "import ufl\nfrom fem_crossdiff.model import UFLModel\n\n\n"

MODELS = '''
class Bright(UFLModel):
    """u diffuses backwards where it is brighter than 0.75."""
    parameters = {"lam": (0.05, 0.0, 1.0)}

    def diffusion(self, w, p):
        return ufl.as_matrix([[0.75 - w[0], 0], [0, 1.0]])


class Level(UFLModel):
    """Elliptic while u < 1.3: fine for an image file's [0, 1], not for data reaching 1.5."""
    parameters = {"lam": (0.05, 0.0, 1.0)}

    def diffusion(self, w, p):
        return ufl.as_matrix([[1.3 - w[0], 0], [0, 1.0]])


class Wide(UFLModel):
    """Elliptic while |v| < 1.22; declares that v reaches 2."""
    parameters = {"lam": (0.05, 0.0, 1.0)}
    state_bounds = {1: (-2.0, 2.0)}

    def diffusion(self, w, p):
        return ufl.as_matrix([[1.0, 0], [0, 1.5 - w[1] ** 2]])


class Narrow(UFLModel):
    """Elliptic while |v| < 0.6; declares that v stays in [-0.5, 0.5]."""
    parameters = {"lam": (0.05, 0.0, 1.0)}
    state_bounds = {1: (-0.5, 0.5)}

    def diffusion(self, w, p):
        return ufl.as_matrix([[1.0, 0], [0, 0.6 - w[1] ** 2]])


class Undeclared(Narrow):
    """Narrow without its declaration: v sampled over [-1, 1]."""
    state_bounds = None


class BadBounds(Narrow):
    state_bounds = {2: (0.0, 1.0)}


class Mild(UFLModel):
    """A well-behaved model for files."""
    parameters = {"k": (0.05, 0.01, 1.0), "lam": (0.1, 0.0, 1.0)}
    time, steps = 1.0, 2

    def diffusion(self, w, p):
        g = 1 / (1 + (w[1] / p["k"]) ** 2)
        return ufl.as_matrix([[0.1 + g, 0], [0, 1.0]])

    def reaction(self, w, f, p):
        return ufl.as_vector([p["lam"] * (f - w[0]), -w[1]])
'''

FAULTY = '''
class Faulty(UFLModel):
    parameters = {"lam": (0.05, 0.0, 1.0)}


class WrongShape(Faulty):
    def diffusion(self, w, p):
        return ufl.as_matrix([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])


class Vector(Faulty):
    def diffusion(self, w, p):
        return ufl.as_vector([1.0, 1.0])


class NoDiffusion(Faulty):
    def reaction(self, w, f, p):
        return ufl.as_vector([f - w[0], 0])


class Signature(Faulty):
    def diffusion(self, w):
        return ufl.Identity(2)


class BadReaction(Faulty):
    def diffusion(self, w, p):
        return ufl.Identity(2)

    def reaction(self, w, f, p):
        return ufl.as_vector([f - w[0], 0, 0])


class BadInitial(Faulty):
    components = 3

    def diffusion(self, w, p):
        return ufl.Identity(3)

    def initial(self, f):
        return [f, 0]


class NoParameters(UFLModel):
    def diffusion(self, w, p):
        return ufl.Identity(2)


class WordyBound(Faulty):
    def diffusion(self, w, p):
        return ufl.Identity(2)

    def ellipticity(self, p):
        return "one"
'''


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A folder with user model definitions and a small image; commands run inside it."""
    monkeypatch.chdir(tmp_path)
    Path("models.py").write_text(HEADER + textwrap.dedent(MODELS))
    Path("faulty.py").write_text(HEADER + textwrap.dedent(FAULTY))
    Path("broken.py").write_text(HEADER + "class Broken(UFLModel)\n    pass\n")
    np.save("in.npy", np.random.default_rng(0).random((10, 11)))
    return tmp_path


def _one_line(capsys, command="denoise"):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fem-crossdiff {command}: error: "), err
    return err[0]


def _user(spec, **params):
    from fem_crossdiff.model import make_model
    return make_model(spec, **params)


# -- item 6: ellipticity over the states the image reaches ----------------------------------------------------------

def test_a_d_that_turns_negative_on_bright_pixels_is_refused_before_any_solve(folder, capsys):
    """D11 = 0.75 - u used to pass (u was sampled in [0, 0.71] only) and then saturate the bright half of an image:
    now u is sampled over the data's range with a margin, and the refusal names the state."""
    bright = np.full((10, 11), 0.9)
    bright[:, :5] = 0.2
    np.save("bright.npy", bright)
    assert main(["denoise", "bright.npy", "o.npy", "--model", "models.py:Bright", "--quiet"]) == 2
    line = _one_line(capsys)
    assert "model 'Bright' is not uniformly elliptic: the symmetric part of its D has the eigenvalue" in line
    assert "at u = 1.1" in line and "u in [-0.1, 1.1]" in line
    assert not Path("o.npy").exists()


def test_the_range_of_u_sampled_follows_the_data(folder):
    """D11 = 1.3 - u is elliptic on an image file's [0, 1] (with the margin: [-0.1, 1.1]); data reaching 1.5 (a float
    array) are refused, by the range they reach."""
    from fem_crossdiff.fem import denoise
    model = _user("models.py:Level")
    img = np.random.default_rng(1).random((8, 9))
    img[0, 0] = 1.0
    assert denoise(img, model, steps=1).shape == img.shape
    with pytest.raises(ModelError, match=r"'Level' is not uniformly elliptic: .* u in \[-0.15, 1.65\]"):
        denoise(img * 1.5, model, steps=1)


def test_declared_state_bounds_are_the_states_sampled(folder):
    from fem_crossdiff.fem.certify import certify, state_box
    with pytest.raises(ModelError, match=r"'Wide' is not uniformly elliptic: .*w\[1\] in \[-2, 2\]") as refused:
        certify(_user("models.py:Wide"))
    assert abs(float(re.search(r"w\[1\] = (\S+) ", str(refused.value)).group(1))) > 1.22   # beyond [-1, 1]
    narrow = _user("models.py:Narrow")
    assert state_box(narrow)[1] == (-0.5, 0.5)
    assert 0.3 < certify(narrow) < 0.6
    with pytest.raises(ModelError, match="declare them \\(state_bounds\\)"):
        certify(_user("models.py:Undeclared"))
    with pytest.raises(ModelError, match=r"models.py:BadBounds: state_bounds must map component indices 0..1 to "):
        _user("models.py:BadBounds")


# -- item 6: the definition's digest; sealed files without their digest ---------------------------------------------

def test_a_model_file_whose_definition_was_edited_is_refused_naming_both_files(folder, noisy_small):
    from fem_crossdiff.fem import denoise
    from fem_crossdiff.model import load_model, save_model
    from fem_crossdiff.model.base import content_digest
    model = _user("models.py:Mild")
    save_model(model, "m.json")
    saved = json.loads(Path("m.json").read_text())
    assert len(saved["definition_digest"]) == 64
    _, noisy = noisy_small
    before = denoise(noisy, load_model("m.json"))
    original = Path("models.py").read_text()
    Path("models.py").write_text(original.replace("[[0.1 + g, 0]", "[[0.5 + g, 0]"))
    with pytest.raises(ModelError, match=r"m.json: its definition .*models.py has changed since the model was "
                                         r"saved"):
        load_model("m.json")
    assert main(["denoise", "in.npy", "o.npy", "--model", "m.json", "--quiet"]) == 2
    Path("models.py").write_text(original)                 # restored: accepted again, and runs the saved code
    assert np.array_equal(denoise(noisy, load_model("m.json")), before)
    # a file saved before definitions were digested (sealed, no definition digest): accepted with a note
    del saved["definition_digest"]
    saved["digest"] = content_digest(saved)
    Path("old.json").write_text(json.dumps(saved))
    with pytest.warns(UserWarning, match="old.json: records no digest of its definition models.py:Mild"):
        load_model("old.json")


def test_a_sealed_model_file_with_its_digest_removed_is_refused(folder, capsys):
    """A shipped model with its digest deleted and a parameter edited used to be accepted; a hand-written file (no
    provenance, no digest) still is."""
    from fem_crossdiff.model import load_model, make_model
    d = json.loads(SHIPPED.read_text())
    del d["digest"]
    d["stages"][0]["lam"] *= 2
    Path("edited.json").write_text(json.dumps(d))
    assert main(["denoise", "in.npy", "o.npy", "--model", "edited.json", "--quiet"]) == 2
    assert "edited.json: records how it was made (\"provenance\") but has no digest" in _one_line(capsys)
    hand = make_model("nonlinear-cross", steps=2).to_dict()
    del hand["digest"]
    Path("hand.json").write_text(json.dumps(hand))
    assert load_model("hand.json").name == "nonlinear-cross"


def test_a_model_file_whose_provenance_is_not_an_object_is_refused(folder, capsys):
    from fem_crossdiff.model import make_model
    for name, d in (("prov.json", make_model("nonlinear-cross", steps=2).to_dict()),
                    ("user_prov.json", _user("models.py:Mild").to_dict(str(folder)))):
        d["provenance"] = "abc"
        Path(name).write_text(json.dumps(d))
        assert main(["denoise", "in.npy", "o.npy", "--model", name, "--quiet"]) == 2
        assert f"{name}: field \"provenance\" is 'abc'; expected a JSON object" in _one_line(capsys)


# -- item 11: faulty definitions and corrupt fields ----------------------------------------------------------------

FAULTS = [
    ("WrongShape", "faulty.py:WrongShape: diffusion() returned a 3×3 matrix; expected a 2×2 matrix (n×n for n "
                   "components)"),
    ("Vector", "faulty.py:Vector: diffusion() returned a vector of shape (2,); expected a 2×2 matrix"),
    ("NoDiffusion", "faulty.py:NoDiffusion: defines no diffusion(self, w, p) method"),
    ("Signature", "faulty.py:Signature: diffusion(w) cannot be called as diffusion(self, w, p)"),
    ("BadReaction", "faulty.py:BadReaction: reaction() returned a vector of shape (3,); expected a vector of 2 "
                    "entries"),
    ("BadInitial", "faulty.py:BadInitial: initial() returned a vector of shape (2,); expected a list of 3 entries"),
    ("NoParameters", "faulty.py:NoParameters: parameters must be a dictionary of at least one parameter"),
    ("WordyBound", "faulty.py:WordyBound: ellipticity() returned 'one'; expected a finite number"),
]


@pytest.mark.parametrize("name, message", FAULTS, ids=[n for n, _ in FAULTS])
def test_a_faulty_user_model_gets_one_line_naming_its_definition(folder, capsys, name, message):
    assert main(["denoise", "in.npy", "o.npy", "--model", f"faulty.py:{name}", "--quiet"]) == 2
    assert message in _one_line(capsys)
    assert not Path("o.npy").exists()
    if name == "NoDiffusion":                                 # the user's own syntax error keeps its traceback
        with pytest.raises(SyntaxError):
            main(["denoise", "in.npy", "o.npy", "--model", "broken.py:Broken", "--quiet"])


def test_a_checkpoint_with_a_field_that_is_not_a_number_is_refused_on_resume(folder, capsys):
    """A real checkpoint (a one-iteration run), its loss replaced by "abc": --resume used to crash formatting it."""
    args = ["train", "--out", "m.json", "--images", "brick", "--patch", "12", "--per-image", "1", "--stages", "1",
            "--steps", "2", "--centres", "3", "--modulation", "0", "--maxiter", "1"]
    assert main(args) == 0
    capsys.readouterr()
    state = json.loads(Path("m.json.checkpoint").read_text())
    Path("m.json").unlink()
    for edit, message in ((lambda s: s["history"][-1].update(loss="abc"),
                           "field \"loss\" of history entry 1 is 'abc'; expected a finite number"),
                          (lambda s: s.update(elapsed="1 h"), "field \"elapsed\" is '1 h'; expected a finite number"),
                          (lambda s: s.update(initial_loss=None), "field \"initial_loss\" is None"),
                          (lambda s: s["history"].append(3), "history entry 2 is 3; expected a JSON object"),
                          (lambda s: s["model"].update(provenance="abc"), "field \"provenance\" is 'abc'")):
        bad = json.loads(json.dumps(state))
        edit(bad)
        Path("m.json.checkpoint").write_text(json.dumps(bad))
        assert main([*args, "--resume"]) == 2
        line = _one_line(capsys, "train")
        assert "m.json.checkpoint: " in line and message in line, line
    Path("m.json.checkpoint").write_text(json.dumps(state))
    assert main([*args, "--maxiter", "2", "--resume"]) == 0                  # the intact state still resumes


def test_an_edited_definition_is_loaded_afresh_in_the_same_process(folder):
    """load_definition keys its module by the file's content: an edited definition is another class (another model
    structure, certified again), never the stale one."""
    from fem_crossdiff.fem.certify import certify
    from fem_crossdiff.model import load_definition
    first = load_definition("models.py:Level")
    assert certify(first()) > 0
    Path("models.py").write_text(Path("models.py").read_text().replace("1.3 - w[0]", "0.8 - w[0]"))
    second = load_definition("models.py:Level")
    assert second is not first and second().structure != first().structure
    with pytest.raises(ModelError, match="'Level' is not uniformly elliptic"):
        certify(second())
