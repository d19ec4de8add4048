"""Callables that `python` tasks may use out of the box (the allow-list includes this
module): small building blocks for demos, tests and glue."""

from __future__ import annotations

import time
from typing import Any

from runs.tasktypes.skip import SkipTask


def echo(**kwargs: Any) -> Any:
    """Return the keyword arguments, e.g. to pass values downstream."""
    print(f"echo: {kwargs}")
    return kwargs


def sleep(seconds: float = 1.0) -> float:
    time.sleep(seconds)
    return seconds


def fail(message: str = "failed on purpose") -> None:
    raise RuntimeError(message)


def skip(reason: str = "") -> None:
    raise SkipTask(reason)


def add(**numbers: float) -> float:
    return sum(numbers.values())
