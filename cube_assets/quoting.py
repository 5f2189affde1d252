"""How error messages quote the input they complain about: never more than about 200 characters of it.

A configuration value can be a megabyte string or a structure whose YAML aliases expand to
billions of items; ``repr`` of either would build a message as large. ``quoted`` bounds what it
reads of the value (``reprlib``) and what it returns; ``shortened`` bounds a message written
by someone else (a parser's or another module's) before it is wrapped in ours.
"""

from __future__ import annotations

import reprlib

MAX_QUOTED = 200
"""The most characters of an input an error message shows."""

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxdict = 8
_REPR.maxstring = _REPR.maxother = MAX_QUOTED


def quoted(value: object, limit: int = MAX_QUOTED) -> str:
    """Return ``repr(value)`` cut to at most about ``limit`` characters.

    A long string keeps its beginning and says its full length; containers show their first
    items only, so the cost does not depend on the size of ``value``.

    Returns:
        The quoted value, at most ``limit`` characters plus a short note of what was cut.
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value):,} characters)"
    text = _REPR.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


def shortened(text: str, limit: int = 2 * MAX_QUOTED) -> str:
    """Return ``text`` cut to ``limit`` characters, marking the cut.

    Returns:
        ``text`` itself when it is short enough, else its beginning followed by ``…``.
    """
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"
