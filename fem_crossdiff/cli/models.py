"""``fem-crossdiff models``: the named models and their parameters, and the shipped learned models by noise level,
in plain text (no Firedrake). The descriptions are the models' docstrings, whose Sphinx roles and TeX
(``:math:`\\nabla\\cdot(g\\nabla u)```) are rendered here as Unicode text (``∇·(g∇u)``)."""
import re

from .common import say

__all__ = ["plain_text"]

NAME, HELP = "models", "list the models and their parameters, and the shipped learned models"

#: TeX control words and their Unicode.
_SYMBOLS = {"Delta": "Δ", "nabla": "∇", "cdot": "·", "partial": "∂", "theta": "θ", "sigma": "σ", "lambda": "λ",
            "mu": "μ", "rho": "ρ", "beta": "β", "alpha": "α", "gamma": "γ", "kappa": "κ", "psi": "ψ", "xi": "ξ",
            "tau": "τ", "pi": "π", "Omega": "Ω", "phi": "φ", "varphi": "φ", "epsilon": "ε", "varepsilon": "ε",
            "eta": "η", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "infty": "∞", "times": "×", "to": "→",
            "approx": "≈", "sum": "Σ", "int": "∫", "in": "∈", "min": "min", "max": "max", "exp": "exp", "log": "log",
            "cos": "cos", "sin": "sin", "quad": "  ", "qquad": "  ", "left": "", "right": "", "big": "", "Big": ""}
_SUPERSCRIPTS = str.maketrans("0123456789+-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻")
_GROUP = r"\{((?:[^{}]|\{[^{}]*\})*)\}"                  # a braced group, one level of nested braces inside


def _wrap(s):
    """``s`` as one factor: itself if a single token, else in parentheses."""
    return s if re.fullmatch(r"[\w.|]+", s) else f"({s})"


def _power(m):
    """A superscript group: digits raised (²), anything else as ^(…)."""
    return m.group(1).translate(_SUPERSCRIPTS) if re.fullmatch(r"[0-9+-]+", m.group(1)) else "^" + _wrap(m.group(1))


def _tex(text):
    """A TeX formula as plain Unicode text: Greek letters and operators as symbols, ``\\frac{a}{b}`` as a/b,
    ``\\sqrt{x}`` as √(x), digit superscripts raised, other groups in parentheses, braces dropped."""
    for _ in range(3):                                   # nested \frac / \sqrt
        text = re.sub(r"\\frac" + _GROUP + _GROUP, lambda m: f"{_wrap(m.group(1))}/{_wrap(m.group(2))}", text)
        text = re.sub(r"\\sqrt" + _GROUP, lambda m: "√" + (m.group(1) if len(m.group(1)) == 1 else f"({m.group(1)})"),
                      text)
        text = re.sub(r"\\(?:mathrm|text|operatorname|mathbf|boldsymbol)" + _GROUP, r"\1", text)
    text = re.sub(r"\^" + _GROUP, _power, text)
    text = re.sub(r"\^([0-9])", lambda m: m.group(1).translate(_SUPERSCRIPTS), text)
    text = re.sub(r"\\([,;:! ])", lambda m: "" if m.group(1) == "!" else " ", text)
    text = re.sub(r"\\([A-Za-z]+)(?: (?=\w))?", lambda m: _SYMBOLS.get(m.group(1), m.group(1)), text)
    return text.replace("{", "").replace("}", "").replace("\\", "")


def plain_text(doc):
    """``doc`` (reStructuredText with Sphinx roles) as plain text: ``:math:`...``` rendered by :func:`_tex`,
    ``:class:`~a.b.C``` as C, ``:func:`text <target>``` as text, ````code```` as code."""
    doc = re.sub(r":math:`([^`]*)`", lambda m: _tex(m.group(1)), doc)
    doc = re.sub(r":[a-z]+(?::[a-z]+)?:`([^`<]*?)\s*<[^`>]*>`", r"\1", doc)
    doc = re.sub(r":[a-z]+(?::[a-z]+)?:`~([^`]*)`", lambda m: m.group(1).rsplit(".", 1)[-1], doc)
    doc = re.sub(r":[a-z]+(?::[a-z]+)?:`([^`]*)`", r"\1", doc)
    return doc.replace("``", "")


def add_parser(sub):
    s = sub.add_parser(NAME, help=HELP)
    s.set_defaults(func=run, firedrake=False)


def _shipped():
    """(file name, what it serves, its run) of every shipped learned model, grey, colour, then speckle."""
    import os
    from ..learned import FOLDER, shipped_models
    from ..model import load_model
    rows = []
    for kind, serves in (("grey", "grey, Gaussian noise σ {}"), ("colour", "colour, Gaussian noise σ {}"),
                         ("speckle", "grey, speckle of {} looks")):
        for level, path in shipped_models(kind=kind).items():
            m = load_model(path)
            rows.append((os.path.basename(path), serves.format(level),
                         f"{len(m.stages)} stage(s), {m.steps} steps to T={m.time:g}, {m.scheme} scheme"))
    return FOLDER, rows


def run(args):
    from ..model import model_help
    say("named models (--model NAME; --param KEY=VALUE overrides a parameter):\n")
    for name, doc, defaults in model_help():
        say(f"{name}\n    {plain_text(doc)}")
        say("    parameters: " + ", ".join(f"{k}={v:g}" for k, v in defaults.items()))
    folder, rows = _shipped()
    say(f"\nshipped learned models, in {folder}:\n  denoise without --model chooses among them by the noise (σ, "
        "colour, --noise speckle); --model PATH runs one as it is")
    width = max(len(r[0]) for r in rows) if rows else 0
    for file, serves, run_ in rows:
        say(f"  {file:<{width}}  {serves:<30} {run_}")
