"""The package's architecture, read from its source: no import cycles (imports inside functions count), layers
import only downwards, nothing in the library imports the command line, no module reads another's private
attributes, and ``fem-crossdiff models`` / ``--help`` start without Firedrake."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fem_crossdiff"

#: Layer of every top-level module or subpackage: a module may import its own subpackage and lower layers only
#: (two subpackages on one layer know nothing of each other).
LAYERS = {"errors": 0, "lazy": 0, "resources": 0,
          "safeio": 1,
          "model": 2, "imaging": 2,
          "learned": 3,
          "fast": 4,
          "fem": 5,
          "learning": 6,
          "studies": 7, "evaluation": 7,
          "cli": 8}


def modules():
    """{dotted name: path} of every module of the package."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name, path, known):
    """The package modules that module ``name`` imports anywhere in its source (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:           # a name imported from a module: the module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph():
    mods = modules()
    return {name: imports(name, path, mods) for name, path in mods.items()}


def cycles(g):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle_through_an_import_inside_a_function(tmp_path):
    """The check itself can fail: a two-module package whose second module imports the first inside a function."""
    g = {"p.a": {"p.b"}, "p.b": {"p.a"}, "p.c": {"p.a"}}
    assert cycles(g) == [["p.a", "p.b"]]
    src = tmp_path / "b.py"
    src.write_text("def f():\n    from .a import x\n    return x\n")
    assert imports("p.b", src, {"p.a", "p.b"}) == {"p.a"}


def test_the_package_has_no_import_cycle():
    assert cycles(graph()) == []


def top(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def test_layers_import_only_downwards_and_nothing_imports_the_cli():
    g = graph()
    assert set(LAYERS) >= {top(m) for m in g if top(m)}, "a new subpackage needs its layer in LAYERS"
    bad = []
    for mod, targets in g.items():
        here = top(mod)
        if here is None:                          # the package's __init__: a lazy table of public names
            continue
        for t in targets:
            there = top(t)
            if there is None:
                bad.append(f"{mod} imports the package root")
            elif there != here and LAYERS[there] >= LAYERS[here]:
                bad.append(f"{mod} (layer {LAYERS[here]}) imports {t} (layer {LAYERS[there]})")
    assert bad == []
    assert [m for m, t in g.items() if top(m) != "cli" and any(top(x) == "cli" for x in t)] == []


def test_no_module_reads_another_objects_private_attributes():
    """``x._name`` only on ``self``/``cls``; no ``from m import _name``."""
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    found.append(f"{name}:{node.lineno} {ast.unparse(node)}")
            if isinstance(node, ast.ImportFrom):
                found += [f"{name}:{node.lineno} imports {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


@pytest.mark.parametrize("argv", [["models"], ["--help"], ["denoise", "--help"], ["train", "--help"]])
def test_models_and_help_answer_without_importing_firedrake_or_petsc(argv):
    code = ("import sys; from fem_crossdiff.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('firedrake', 'petsc4py.PETSc', 'ufl', 'pyadjoint') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


def test_every_source_compiles_without_warnings():
    """No invalid escape sequence (a maths docstring without ``r``), which a newer Python turns into an error."""
    import warnings
    found = []
    for path in sorted([*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "demos").rglob("*.py"),
                        *(PACKAGE.parent / "tests").glob("*.py")]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compile(path.read_text(), str(path), "exec")
        found += [f"{path.name}:{w.lineno}: {w.message}" for w in caught]
    assert not found, found


def test_every_public_name_resolves():
    """Each name of ``fem_crossdiff.__all__`` (attached lazily) imports and is what its subpackage exports."""
    import importlib
    import fem_crossdiff as fc
    for name in fc.__all__:
        obj = getattr(fc, name)
        assert obj is not None, name
        assert any(getattr(importlib.import_module(f"fem_crossdiff.{sub}"), name, None) is obj
                   for sub in ("errors", "fem", "imaging", "model", "learning", "learned")), name
