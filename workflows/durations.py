"""Durations as users write them: `30s`, `10m`, `1h30m`, `2d`, or a number of seconds."""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
ACCEPTED = "a number of seconds or a duration like 30s, 10m, 1h30m, 2d"


def parse_duration(value: object) -> int:
    """Seconds. Raises ValueError naming what is accepted."""
    if isinstance(value, bool):
        raise ValueError(f"expected {ACCEPTED}")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, float) and value.is_integer():
        seconds = int(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.isascii() and text.isdigit() and len(text) <= 18:  # int() of "²" fails
            seconds = int(text)
        else:
            match = _DURATION_RE.match(text)
            if not text or match is None:
                raise ValueError(f"{value!r} is not a duration: expected {ACCEPTED}")
            seconds = sum(
                int(n or 0) * _UNITS[u] for n, u in zip(match.groups(), "dhms", strict=True)
            )
    else:
        raise ValueError(f"expected {ACCEPTED}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest canonical form: 5400 -> '1h30m', 0 -> '0s'."""
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
