"""The one exception type of bad input, and the checks of count options shared by the library and the CLI.

Everything the user can get wrong — a file, a value, an option, a model — raises an :class:`InputError` (or a
subclass) whose message names the problem and what was expected; the command line prints that message as one
line and exits with status 2. Any other exception is a bug and keeps its traceback.
"""

__all__ = ["InputError", "ImageError", "ModelError", "check_counts"]


class InputError(ValueError):
    """Bad input: the message names the file, value or option and the admissible values."""


class ImageError(InputError):
    """An image file or array cannot be used (names the file or value and what was expected)."""


class ModelError(InputError):
    """A model name, parameter or file is unusable (the message names it and the admissible values)."""


def check_counts(**options):
    """Refuse a count option ``name=(value, least)`` (``value`` a number or a list; None: not given) that is not an
    integer ``>= least``, naming its command-line flag (``per_image`` is ``--per-image``)."""
    for name, (value, least) in options.items():
        values = value if isinstance(value, list) else [] if value is None else [value]
        if any(int(v) != v or v < least for v in values):
            what = "integers" if isinstance(value, list) else "an integer"
            raise InputError(f"--{name.replace('_', '-')} {' '.join(map(str, values))}: expected {what} >= {least}")
