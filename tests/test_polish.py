"""What a newcomer meets first (issue 25, items 15 and 16): honest benchmarks (the learned default against BM3D at
its quality, every cost column measured, the peak of the process that did the work), plain-text model listing with
the shipped models, help for every option, ``--version``, progress of ``evaluate`` and of a training, the README's
model the demo's, and demos that leave the package's files alone."""
import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fem_crossdiff.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------- the parser
def _undocumented(parser, path="fem-crossdiff"):
    """Every command, option and argument of ``parser`` and its commands that has no help text."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                if not helps.get(name):
                    yield f"{path} {name}"
                yield from _undocumented(sub, f"{path} {name}")
        elif not action.help:
            yield f"{path} {'/'.join(action.option_strings) or action.dest}"


def test_every_option_of_every_command_has_help():
    assert list(_undocumented(build_parser())) == []


def test_version_is_the_installed_one_without_importing_firedrake():
    from importlib.metadata import version
    code = ("import sys; from fem_crossdiff.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit as e:\n    print('EXIT', e.code)\n"
            "print('HEAVY', [m for m in ('firedrake', 'petsc4py.PETSc', 'ufl') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert f"fem-crossdiff {version('fem_crossdiff')}\n" in proc.stdout
    assert "EXIT 0" in proc.stdout and "HEAVY []" in proc.stdout


# ------------------------------------------------------------------------------------------- models
def test_models_prints_plain_text_and_every_shipped_learned_model(capsys):
    from fem_crossdiff.cli.models import plain_text
    from fem_crossdiff.learned import shipped_models
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for markup in (":math:", ":class:", ":func:", "``", "\\"):
        assert markup not in out
    assert "u_t = ∇·(g(|∇u|)∇u), g = 1/(1+(|∇u|/k)²)" in out                 # Perona–Malik's docstring, plain
    lines = out.splitlines()
    for kind, serves in (("grey", "grey, Gaussian noise σ {}"), ("colour", "colour, Gaussian noise σ {}"),
                         ("speckle", "grey, speckle of {} looks")):
        found = shipped_models(kind=kind)
        assert found
        for level, path in found.items():
            line = next(ln for ln in lines if ln.strip().startswith(os.path.basename(path) + " "))
            assert serves.format(level) in line and "steps to T=" in line
    assert plain_text(r"see :class:`~fem_crossdiff.model.UFLModel` and :math:`\frac{1}{1+(v/k)^2}`, "
                      r":math:`\sqrt{d_{11}d_{22}}`") == "see UFLModel and 1/(1+(v/k)²), √(d_11d_22)"


# ------------------------------------------------------------------------------------------- evaluate
def test_evaluate_refuses_a_negative_refinement_by_name(capsys):
    assert main(["evaluate", "--refine", "-1", "--size", "16"]) == 2
    captured = capsys.readouterr()
    assert "--refine -1: expected an integer >= 0" in captured.err and "Traceback" not in captured.err
    assert captured.out == ""
    from fem_crossdiff.errors import InputError
    from fem_crossdiff.evaluation import evaluate
    with pytest.raises(InputError, match="--refine -1"):
        evaluate(refine=-1, size=16, log=lambda *a: None)


def test_evaluate_shows_its_progress_per_image_and_method_on_stderr(capsys):
    assert main(["evaluate", "--sigma", "25", "--size", "24", "--no-baselines", "--no-classic"]) == 0
    captured = capsys.readouterr()
    progress = [ln for ln in captured.err.splitlines() if ln.startswith("fem-crossdiff evaluate: σ 25, ")]
    assert [re.search(r"\((\d)/4\): +(\w+)", ln).groups() for ln in progress] == [
        (str(i), label) for i in range(1, 5) for label in ("noisy", "learned")]
    assert all(re.search(r" \d+\.\d\d dB +\d+\.\d s$", ln) for ln in progress)
    assert "learned" in captured.out and "σ 25," not in captured.out           # the table alone on stdout


def test_the_evaluation_table_fits_long_method_names():
    from fem_crossdiff.evaluation import print_table
    labels = ["noisy", "base (semi-implicit σ 25)", "second edge (3 components)"]
    rows = [(m, im, 25, 20.0 + k, 0.5, 0.0) for k, m in enumerate(labels) for im in ("camera", "moon")]
    lines = []
    print_table(rows, out=lines.append)
    table = [ln for ln in "\n".join(lines).splitlines() if ln.strip() and not ln.startswith("level")]
    assert len({len(ln) for ln in table}) == 1                                 # every row as wide as the header
    assert all(re.search(r"\S {2,}", ln.split("/")[0]) for ln in table[1:])    # a gap after every method name


# ------------------------------------------------------------------------------------------- train
def test_train_says_the_time_per_iteration_and_the_time_left(tmp_path, capsys):
    from fem_crossdiff.cli.train import TimeLeft
    said = []
    hook = TimeLeft(out=said.append)
    hook(dict(iteration=1, elapsed=11.0), 100)
    hook(dict(iteration=2, elapsed=22.0), 100)                                  # said once
    assert said == ["about 11.0 s per iteration: ~18 min more for --maxiter 100 (at most; L-BFGS-B may stop "
                    "earlier)"]
    assert main(["train", "--out", str(tmp_path / "m.json"), "--images", "brick", "--patch", "16", "--per-image",
                 "1", "--stages", "1", "--steps", "2", "--centres", "3", "--maxiter", "3", "--modulation", "0"]) == 0
    out = capsys.readouterr().out
    estimates = [ln for ln in out.splitlines() if "s per iteration" in ln]
    assert len(estimates) == 1 and "for --maxiter 3" in estimates[0]
    assert out.index("it    1") < out.index(estimates[0]) < out.index("saved ")


# ------------------------------------------------------------------------------------------- bench
def test_the_peak_memory_of_a_process_is_its_own_not_that_of_the_process_that_started_it():
    """A benchmark case runs in a process of its own started by a large one (here this test, with 460 MiB more):
    a small case reports its own few MiB (``ru_maxrss`` would report the starter's), and a case that allocates
    ~300 MiB reports them."""
    big = np.ones(60_000_000)
    big[::4096] += 1.0
    code = ("import numpy as np; from fem_crossdiff.resources import peak_memory_mb; small = peak_memory_mb(); "
            "a = np.ones(40_000_000); a[::512] += 1; print(small, peak_memory_mb())")
    small, large = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                             check=True).stdout.split())
    assert small < 200 < 300 < large < 1000
    from fem_crossdiff.resources import peak_memory_mb
    assert peak_memory_mb() > 460 and big.sum() > 0                      # this process: its own 460 MiB counted


# ------------------------------------------------------------------------------------------- README and demos
def test_the_readme_model_is_the_demo_model():
    """The README's "Your own model" class is ``demos/models/two_scales.py``'s TwoScales, which the custom-model
    demo trains: the same components, stages, horizon, parameter boxes, and the same D, R and bound at any state."""
    import ufl
    from fem_crossdiff.model import load_definition
    block = next(b for b in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
                 if "class TwoScales" in b)
    space = {}
    exec(block, space)
    ours, demo = space["TwoScales"], load_definition(f"{ROOT / 'demos' / 'models' / 'two_scales.py'}:TwoScales")
    assert (ours.components, ours.nstages, ours.time, ours.steps) == (demo.components, demo.nstages, demo.time,
                                                                      demo.steps)
    assert {k: tuple(map(float, v)) for k, v in ours.parameters.items()} == \
        {k: tuple(map(float, v)) for k, v in demo.parameters.items()}
    a, b = ours(), demo()
    rng = np.random.default_rng(0)
    for _ in range(4):
        w = ufl.as_vector([float(x) for x in rng.uniform(-0.2, 1.2, 3)])
        f = float(rng.uniform())
        p = {k: float(rng.uniform(lo, hi)) for k, (_, lo, hi) in demo.parameters.items()}
        Da, Db = a.diffusion(w, p), b.diffusion(w, p)
        assert np.allclose([[float(Da[i, j]) for j in range(3)] for i in range(3)],
                           [[float(Db[i, j]) for j in range(3)] for i in range(3)], rtol=1e-14, atol=0)
        Ra, Rb = a.reaction(w, f, p), b.reaction(w, f, p)
        assert np.allclose([float(Ra[i]) for i in range(3)], [float(Rb[i]) for i in range(3)], rtol=1e-14, atol=0)
        assert a.ellipticity(p) == b.ellipticity(p)


def test_tune_classic_leaves_the_package_file_alone_unless_asked(tmp_path):
    """Its default output is under out/; the package's tuned.json is written only with --install (named as --out
    without it: refused before any tuning)."""
    from fem_crossdiff.evaluation.tuned import TUNED
    before = Path(TUNED).read_bytes()
    demo = str(ROOT / "demos" / "tune_classic.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    shown = subprocess.run([sys.executable, demo, "--help"], capture_output=True, text=True, cwd=tmp_path, env=env,
                           timeout=120)
    assert shown.returncode == 0 and "(default out/demos/tuned.json;" in " ".join(shown.stdout.split())
    refused = subprocess.run([sys.executable, demo, "--out", TUNED], capture_output=True, text=True, cwd=tmp_path,
                             env=env, timeout=120)
    assert refused.returncode == 2 and "pass --install to replace it" in refused.stderr
    assert Path(TUNED).read_bytes() == before and os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------- studies
def test_the_region_of_interest_says_its_slower_path_once_for_all_its_levels():
    """Each level of the unstructured ROI mesh falls back from the fast path; Firedrake resets Python's registry of
    warnings shown between levels, so the same note came once per level (refinement-study printed it twice)."""
    import warnings
    from fem_crossdiff.fast import SlowPathWarning
    from fem_crossdiff.studies import roi_denoise
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        res = roi_denoise(levels=2, compare_full=False, out=None, log=lambda *a: None)
    notes = [str(w.message) for w in caught if issubclass(w.category, SlowPathWarning)]
    assert len(res["levels"]) == 3 and len(notes) == 1 and "not a uniform grid" in notes[0]
