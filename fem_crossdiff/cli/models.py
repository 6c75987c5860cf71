"""``fem-crossdiff models``: the named models and their parameters (no Firedrake)."""
from .common import say

NAME, HELP = "models", "list the models and their parameters"


def add_parser(sub):
    s = sub.add_parser(NAME, help=HELP)
    s.set_defaults(func=run, firedrake=False)


def run(args):
    from ..model import model_help
    for name, doc, defaults in model_help():
        say(f"{name}\n    {doc}")
        say("    parameters: " + ", ".join(f"{k}={v:g}" for k, v in defaults.items()))
