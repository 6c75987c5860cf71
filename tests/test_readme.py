"""The README tells the truth: its Python examples run as written, its command-line examples name real commands
and options, and it stays a user's guide (at most 12 KB)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_is_a_users_guide_of_at_most_12_kb():
    assert len(README.read_bytes()) <= 12 * 1024


def test_the_python_examples_run_as_written(tmp_path):
    """Every ```python block, in order, in one fresh process (the 'photo.png' it reads is made first)."""
    import imageio.v3 as iio
    rng = np.random.default_rng(0)
    iio.imwrite(tmp_path / "photo.png", (rng.random((40, 48, 3)) * 255).astype(np.uint8))
    code = "\n".join(_blocks("python"))
    assert "import fem_crossdiff" in code
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_command_line_examples_use_real_commands_and_options():
    """Each ``fem-crossdiff COMMAND --option`` of the bash blocks is accepted by that command's parser."""
    from fem_crossdiff.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    seen = 0
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.split("#", 1)[0]
            for m in re.finditer(r"fem-crossdiff ([a-z-]+)((?: +[^|;]*)?)", line):
                command, rest = m.group(1), m.group(2)
                assert command in sub.choices, line
                options = {o for a in sub.choices[command]._actions for o in a.option_strings}
                for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
                    assert option in options, f"{command} has no option {option}: {line}"
                seen += 1
    assert seen >= 10
