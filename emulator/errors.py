"""Errors a user can cause: the CLI prints them as one line and exits with code 2.

Messages quote an offending value through `excerpt`, which never builds more
than a short prefix of it, so a huge or deeply shared value still gives a short
line.
"""

import reprlib

EXCERPT_CHARS = 60


class UserError(ValueError):
    """Bad input (unknown name, impossible value, wrong file), reported without a traceback."""


class Interrupted(UserError):
    """Ctrl-C after the command saved what it could; the message says what was kept (the CLI exits 130)."""


def _short_repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel, r.maxtuple, r.maxlist, r.maxdict, r.maxset = 3, 6, 6, 4, 6
    r.maxstring = r.maxother = r.maxlong = 2 * EXCERPT_CHARS
    return r


_REPR = _short_repr()


def clip(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` cut to at most `limit` characters, '...' marking the cut."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def excerpt(value, limit: int = EXCERPT_CHARS) -> str:
    """A repr of `value` of at most `limit` characters, for quoting it in a message."""
    try:
        text = _REPR.repr(value)
    except ValueError:  # an integer too long for str()
        text = f"<{type(value).__name__} of {value.bit_length()} bits>" if isinstance(value, int) else "<...>"
    return clip(" ".join(text.split()), limit)
