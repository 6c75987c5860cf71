"""The shipped learned models still reach the figures the README reports for them on the public test crops."""
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_learned_psnr():
    """{σ: mean PSNR} of the "learned (shipped)" column of the README's "Where it stands" table."""
    lines = README.read_text().split("## Where it stands", 1)[1].splitlines()
    header = next(line for line in lines if line.startswith("| σ |"))
    column = [c.strip() for c in header.strip("|").split("|")].index("learned (shipped)")
    found = {}
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and cells[0].isdigit():
            found[int(cells[0])] = float(re.match(r"\**([0-9.]+)", cells[column]).group(1))
    return found


def test_the_readme_table_is_read():
    assert set(readme_learned_psnr()) == {15, 25}


@pytest.mark.parametrize("sigma", [15, 25])
def test_shipped_model_reproduces_the_readme_test_crop_psnr(sigma):
    """``fem-crossdiff evaluate`` (learned rows only) within 0.05 dB of the README's mean over the four crops."""
    from fem_crossdiff.evaluation import evaluate
    rows = evaluate(sigmas=(sigma,), classic=False, baselines=False, log=lambda *a: None)
    learned = [r[3] for r in rows if r[0] == "learned"]
    assert len(learned) == 4
    assert abs(np.mean(learned) - readme_learned_psnr()[sigma]) < 0.05
