"""How the portal puts things into words for people: a schedule's cron expression, and
the side-by-side diff of two texts (a spec's versions, an edit before it is applied). Pure:
no Django."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from cron_descriptor import (
    ExpressionDescriptor,
    FormatException,
    MissingFieldException,
    Options,
    WrongArgumentException,
)

__all__ = ["DIFF_CONTEXT", "DiffRow", "cron_in_words", "side_by_side"]

DIFF_CONTEXT = 3  # unchanged lines kept around each change; longer stretches fold

# Cron macros as the 5-field expressions they stand for (cron-descriptor reads only those).
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@functools.lru_cache(maxsize=1024)
def cron_in_words(cron: str) -> str:
    """A cron expression in words, e.g. "At 02:00, every day" for `0 2 * * *`: what people
    read in a list of schedules. A daily time says "every day" (cron-descriptor leaves it
    out); an expression it cannot read is shown as it is."""
    expression = _MACROS.get(cron, cron)
    options = Options()
    options.use_24hour_time_format = True
    try:
        words = str(ExpressionDescriptor(expression, options).get_description())
    except (FormatException, MissingFieldException, WrongArgumentException, ValueError):
        return cron
    if words.startswith("At ") and expression.split()[2:] == ["*", "*", "*"]:
        words += ", every day"
    return words


@dataclass(frozen=True)
class DiffRow:
    """A row of a side-by-side diff: `kind` is "same", "add", "del", "chg" (a line changed:
    old on the left, new on the right) or "fold" (`a_text` says how many unchanged lines are
    not shown). Line numbers are 1-based; None where a side has no line."""

    kind: str
    a_number: int | None = None
    a_text: str = ""
    b_number: int | None = None
    b_text: str = ""


def side_by_side(
    a: Sequence[str], b: Sequence[str], *, context: int = DIFF_CONTEXT
) -> list[DiffRow]:
    """The rows of a side-by-side diff of two texts' lines (difflib's opcodes), unchanged
    stretches longer than twice `context` folded to their ends."""
    rows: list[DiffRow] = []
    opcodes = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    if all(op == "equal" for op, *_ in opcodes):  # nothing changed: the whole text
        return [DiffRow("same", n, line, n, line) for n, line in enumerate(a, start=1)]
    for index, (op, i1, i2, j1, j2) in enumerate(opcodes):
        if op == "equal":
            rows.extend(
                _unchanged(a, i1, i2, j1, context, first=index == 0, last=index == len(opcodes) - 1)
            )
            continue
        pairs = max(i2 - i1, j2 - j1)
        for k in range(pairs):
            i, j = i1 + k, j1 + k
            has_a, has_b = i < i2, j < j2
            kind = "chg" if has_a and has_b else "del" if has_a else "add"
            rows.append(
                DiffRow(
                    kind,
                    i + 1 if has_a else None,
                    a[i] if has_a else "",
                    j + 1 if has_b else None,
                    b[j] if has_b else "",
                )
            )
    return rows


def _unchanged(
    a: Sequence[str], i1: int, i2: int, j1: int, context: int, *, first: bool, last: bool
) -> list[DiffRow]:
    """Lines i1..i2 of `a` (j1.. of `b`), all but `context` lines next to a change folded:
    none kept before the first change or after the last."""
    keep_head = 0 if first else context
    keep_tail = 0 if last else context
    hidden = (i2 - i1) - keep_head - keep_tail
    if hidden < 2:  # folding one line saves nothing
        return [_same(a, i, j1 - i1) for i in range(i1, i2)]
    return [
        *(_same(a, i, j1 - i1) for i in range(i1, i1 + keep_head)),
        DiffRow("fold", a_text=f"{hidden} unchanged lines"),
        *(_same(a, i, j1 - i1) for i in range(i2 - keep_tail, i2)),
    ]


def _same(a: Sequence[str], i: int, shift: int) -> DiffRow:
    return DiffRow("same", i + 1, a[i], i + shift + 1, a[i])
