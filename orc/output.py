"""How `orc` writes: `-o table` (the default) for people, `-o json` and `-o yaml` for
scripts (the server's objects as it sends them), messages and progress on stderr.

Tables are rich tables on a terminal and plain aligned columns otherwise (nothing
decorative in a pipe or a CI log), so `orc runs list | grep failed` works."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.live import Live

# rich is imported only where a terminal will show what it draws: every orc command starts
# (in scripts, in CI) without it.

__all__ = [
    "Format",
    "Progress",
    "Table",
    "columns",
    "duration",
    "emit",
    "error",
    "info",
    "state_counts",
    "when",
]

# States in the order a run goes through them, for counts people read left to right.
STATE_ORDER = (
    "pending",
    "scheduled",
    "queued",
    "running",
    "up_for_retry",
    "success",
    "failed",
    "upstream_failed",
    "skipped",
    "cancelled",
)


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


@dataclass(frozen=True)
class Table:
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]


Rendered = Table | Sequence[str]


def emit(
    fmt: Format, payload: Any, render: Callable[[], Rendered], stdout: TextIO | None = None
) -> None:
    """Write `payload` as JSON or YAML, or what `render()` makes of it for people."""
    out = stdout or sys.stdout
    if fmt is Format.JSON:
        out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    elif fmt is Format.YAML:
        import yaml  # only here: every command starts faster without it

        out.write(yaml.safe_dump(payload, sort_keys=False, allow_unicode=True))
    else:
        rendered = render()
        if isinstance(rendered, Table):
            _table(rendered, out)
        else:
            out.write("".join(f"{line}\n" for line in rendered))
    out.flush()


def _table(table: Table, out: TextIO) -> None:
    if out.isatty():
        from rich import box
        from rich.console import Console
        from rich.table import Table as RichTable
        from rich.text import Text

        rich = RichTable(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
        for column in table.columns:
            rich.add_column(column)
        for row in table.rows:
            rich.add_row(*(Text(cell) for cell in row))  # Text: no markup read in the data
        Console(file=out).print(rich)
        return
    out.write("".join(f"{line}\n" for line in columns(table)))


def columns(table: Table) -> list[str]:
    """The table as plain lines: columns aligned two spaces apart, no trailing blanks."""
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [table.columns, *table.rows]
    ]


def info(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def error(message: str) -> None:
    info(f"error: {message}")


def when(value: str | None) -> str:
    """An ISO 8601 time from the API in the local time zone, to the second ('-': none)."""
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(start: str | None, end: str | None) -> str:
    """`1.2s`, `3m04s`, `2h05m` between two API times; '-' when either is missing."""
    if not start or not end:
        return "-"
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def state_counts(counts: Mapping[str, int] | None) -> str:
    """`success 2, running 1`: task instances per state, in the order runs go through them."""
    if not counts:
        return "no tasks yet"
    known = [s for s in STATE_ORDER if counts.get(s)]
    rest = sorted(s for s in counts if s not in STATE_ORDER and counts[s])
    return ", ".join(f"{state} {counts[state]}" for state in [*known, *rest])


class Progress:
    """A run's progress on stderr while a command waits: one live line on a terminal, a
    plain line per change elsewhere (a CI log keeps each)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live: Live | None = None
        if self.stream.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(file=self.stream), transient=True)

    def __enter__(self) -> Progress:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def update(self, line: str) -> None:
        if self.live is not None:
            from rich.text import Text

            self.live.update(Text(f"⏳ {line}"))
        else:
            self.stream.write(line + "\n")
            self.stream.flush()
