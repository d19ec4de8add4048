"""Whole numbers read from a request (query parameters, path ids) the strict way.

`str.isdigit()` accepts Unicode digits that `int()` then refuses with a ValueError ("²",
superscript two) or reads as another number ("٣" is 3), and `int()` refuses a string of
more than 4300 digits: each was a 500. Only ASCII decimal digits, of a bounded length,
are a number here; anything else is the caller's mistake (a 400 naming the parameter, or
a 404 for an id in the path).
"""

from __future__ import annotations

__all__ = ["MAX_REQUEST_INT", "ascii_int"]

# The largest number a request may name: a signed 64-bit column holds it on every database.
MAX_REQUEST_INT = 2**63 - 1


def ascii_int(text: str | int | None, *, maximum: int = MAX_REQUEST_INT) -> int | None:
    """The value of `text` when it is ASCII decimal digits (an int passes as itself) from 0
    to `maximum`; None otherwise."""
    if isinstance(text, bool) or text is None:
        return None
    if isinstance(text, int):
        return text if 0 <= text <= maximum else None
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(maximum)):
        return None
    value = int(text)
    return value if value <= maximum else None
