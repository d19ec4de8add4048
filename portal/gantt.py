"""The gantt chart of a run's task attempts, as numbers that `portal/parts/gantt.html` draws
as SVG. Pure Python, no Django: the selectors hand in plain rows, the template draws.

A row per task instance, in the given order; in it, for each attempt, a "queued" bar from
when the try was queued to when it started (when that is known) and a "running" bar from
its start to its end, or to `now` while it runs. A task instance queued for a try that has
not started yet (state "queued", no attempt since `queued_at`) gets a queued bar to `now`.
Every bar is at least 2 px wide, so a 5 ms attempt still shows. A row may gather the
attempts of many instances (a mapped task's, each attempt `name`d by its index): its bars
then overlap, and the lane shows how the fan-out spread over time.

The axis says how long after the chart's start a tick is ("0s", "+30s", "+2m", "+1h30m",
"+1d6h"), not the clock time: the question a gantt answers is how far into the run a task
started and how long it took, and offsets read the same in every time zone. The start
itself goes in the chart's accessible label. Ticks fall on nice steps (0.1, 0.2, 0.5, 1, 2,
5, 10, 15, 30 s; 1, 2, 5, 10, 15, 30 min; 1, 2, 3, 6, 12 h; then whole days), at least
70 px apart, all inside the plot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

__all__ = ["Bar", "ChartRow", "GanttAttempt", "GanttChart", "GanttRow", "Tick", "gantt"]

BarKind = Literal["queued", "running"]

LABEL_X = 8  # the task ids' left edge
CHAR_WIDTH = 8  # px per character of the 13 px monospace task id
GLYPH_WIDTH = 14  # the state glyph and a space before the id
MIN_LABEL_COLUMN = 100
MAX_LABEL_COLUMN = 240  # longer ids are shortened with "…" (the full id is in the tooltip)
PLOT_GAP = 8  # between the label column and the plot
RIGHT_MARGIN = 24  # room for half the last tick's label, which is centred on its tick
MIN_PLOT_WIDTH = 120
AXIS_HEIGHT = 24  # the tick labels above the rows
ROW_HEIGHT = 22
BAR_HEIGHT = 14
BOTTOM_MARGIN = 8
EMPTY_HEIGHT = 48  # fits the "nothing ran yet" line
MIN_BAR_WIDTH = 2
MIN_TICK_SPACING = 70
MIN_SPAN = timedelta(seconds=1)  # a chart of one 5 ms attempt still has a readable axis
NICE_STEPS = [
    *(timedelta(milliseconds=ms) for ms in (100, 200, 500)),
    *(timedelta(seconds=s) for s in (1, 2, 5, 10, 15, 30)),
    *(timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30)),
    *(timedelta(hours=h) for h in (1, 2, 3, 6, 12, 24)),
]
DAY = timedelta(days=1)

_Position = Callable[[datetime], float]  # a moment's x in px


@dataclass(frozen=True, kw_only=True)
class GanttAttempt:
    """One try: when it was queued (if known), started and ended (None while running)."""

    try_number: int
    state: str
    queued_at: datetime | None = None
    started_at: datetime
    ended_at: datetime | None = None
    name: str | None = None  # its instance in its title, when not the row's task id


@dataclass(frozen=True, kw_only=True)
class GanttRow:
    """A task instance: its state, its attempts, and when it was last queued; `label` is
    shown instead of the task id when given (a mapped task's group: "process" with its count)."""

    task_id: str
    state: str
    attempts: Sequence[GanttAttempt] = ()
    queued_at: datetime | None = None
    label: str = ""


@dataclass(frozen=True)
class Bar:
    """A stretch of an attempt in px. `state` is "queued" for a queued bar and the
    attempt's state for a running one; `title` is the hover text."""

    x: float
    y: int
    w: float
    h: int
    kind: BarKind
    state: str
    try_number: int
    title: str


@dataclass(frozen=True)
class ChartRow:
    """A task's lane: its top `y` and height `h`, the baseline of its label, its bars."""

    task_id: str
    label: str
    state: str
    y: int
    h: int
    text_y: int
    bars: list[Bar]


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class GanttChart:
    """The chart: its size, the time it spans, its rows and axis. The plot runs from
    `plot_x` for `plot_w` px; tick labels sit on `axis_y`, grid lines from `grid_top` to
    `grid_bottom`; `now_x` marks now while something is still queued or running."""

    width: int
    height: int
    start: datetime
    end: datetime
    rows: list[ChartRow]
    ticks: list[Tick]
    label_x: int
    plot_x: int
    plot_w: int
    axis_y: int
    grid_top: int
    grid_bottom: int
    now_x: float | None = None


@dataclass(frozen=True)
class _Span:
    """A bar in time, before it is placed: `open` while it has not ended."""

    kind: BarKind
    state: str
    try_number: int
    start: datetime
    end: datetime
    open: bool
    title: str


def gantt(rows: Sequence[GanttRow], *, now: datetime, width: int = 900) -> GanttChart:
    """The chart of `rows` at `now`, `width` px wide (widened if too narrow for a plot).
    With no bar at all it has no rows, only room for a "nothing ran yet" line."""
    spans = [_spans(row, now) for row in rows]
    everything = [span for row_spans in spans for span in row_spans]
    column = _label_column(rows)
    plot_x = column + PLOT_GAP
    width = max(width, plot_x + MIN_PLOT_WIDTH + RIGHT_MARGIN)
    plot_w = width - plot_x - RIGHT_MARGIN
    if not everything:
        return GanttChart(
            width=width,
            height=EMPTY_HEIGHT,
            start=now,
            end=now,
            rows=[],
            ticks=[],
            label_x=LABEL_X,
            plot_x=plot_x,
            plot_w=plot_w,
            axis_y=AXIS_HEIGHT - 8,
            grid_top=0,
            grid_bottom=0,
        )
    start = min(span.start for span in everything)
    end = max(max(span.end for span in everything), start + MIN_SPAN)

    def x_of(moment: datetime) -> float:
        return plot_x + (moment - start) / (end - start) * plot_w

    chart_rows = [
        _row(row, index, row_spans, x_of, column, plot_x + plot_w)
        for index, (row, row_spans) in enumerate(zip(rows, spans, strict=True))
    ]
    bottom = AXIS_HEIGHT + ROW_HEIGHT * len(rows)
    still_open = any(span.open for span in everything)
    return GanttChart(
        width=width,
        height=bottom + BOTTOM_MARGIN,
        start=start,
        end=end,
        rows=chart_rows,
        ticks=_ticks(end - start, plot_x, plot_w),
        label_x=LABEL_X,
        plot_x=plot_x,
        plot_w=plot_w,
        axis_y=AXIS_HEIGHT - 8,
        grid_top=AXIS_HEIGHT,
        grid_bottom=bottom,
        now_x=round(x_of(now), 1) if still_open and start <= now <= end else None,
    )


def _spans(row: GanttRow, now: datetime) -> list[_Span]:
    """The row's bars in time: each attempt's queued and running stretch, and a queued
    stretch to now for a try queued but not started yet."""
    spans = [span for attempt in row.attempts for span in _attempt_spans(row, attempt, now)]
    waiting_since = row.queued_at
    if (
        row.state == "queued"
        and waiting_since is not None
        and all(a.started_at < waiting_since for a in row.attempts)
    ):
        tries = 1 + max((a.try_number for a in row.attempts), default=0)
        waited = _duration((now - waiting_since).total_seconds())
        title = f"{row.task_id} · try {tries}: queued {waited} so far"
        until = max(now, waiting_since)
        spans.append(_Span("queued", "queued", tries, waiting_since, until, True, title))
    return spans


def _attempt_spans(row: GanttRow, attempt: GanttAttempt, now: datetime) -> list[_Span]:
    """Its wait in the queue when known, then its run, to now while it runs."""
    title = _title(attempt.name or row.task_id, attempt, attempt.ended_at or now)
    tries, started = attempt.try_number, attempt.started_at
    spans = []
    if attempt.queued_at is not None and attempt.queued_at < started:
        spans.append(_Span("queued", "queued", tries, attempt.queued_at, started, False, title))
    ended = max(attempt.ended_at or now, started)
    still_open = attempt.ended_at is None
    spans.append(_Span("running", attempt.state, tries, started, ended, still_open, title))
    return spans


def _title(task_id: str, attempt: GanttAttempt, ended: datetime) -> str:
    """E.g. "extract · try 2: running 3.2 s, queued 400 ms, success"."""
    ran = _duration((ended - attempt.started_at).total_seconds())
    parts = [f"running {ran}" + (" so far" if attempt.ended_at is None else "")]
    if attempt.queued_at is not None and attempt.queued_at < attempt.started_at:
        parts.append(
            f"queued {_duration((attempt.started_at - attempt.queued_at).total_seconds())}"
        )
    if attempt.ended_at is not None:
        parts.append(attempt.state)
    return f"{task_id} · try {attempt.try_number}: {', '.join(parts)}"


def _duration(seconds: float) -> str:
    """The portal's way of writing a duration: "850 ms", "3.2 s", "4 min 5 s", "2 h 3 min"."""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60)):
        if whole >= size:
            rest = (whole % size) // sub_size
            return f"{whole // size} {unit} {rest} {sub}" if rest else f"{whole // size} {unit}"
    return f"{whole // 60} min {whole % 60} s" if whole % 60 else f"{whole // 60} min"


def _label_column(rows: Sequence[GanttRow]) -> int:
    longest = max((len(row.label or row.task_id) for row in rows), default=0)
    wanted = CHAR_WIDTH * longest + GLYPH_WIDTH + 2 * LABEL_X
    return max(MIN_LABEL_COLUMN, min(MAX_LABEL_COLUMN, wanted))


def _row(
    row: GanttRow,
    index: int,
    spans: list[_Span],
    x_of: _Position,
    column: int,
    plot_end: int,
) -> ChartRow:
    top = AXIS_HEIGHT + ROW_HEIGHT * index
    bar_y = top + (ROW_HEIGHT - BAR_HEIGHT) // 2
    bars = [_bar(span, bar_y, x_of, plot_end) for span in spans]
    room = (column - GLYPH_WIDTH - 2 * LABEL_X) // CHAR_WIDTH
    text = row.label or row.task_id
    label = text if len(text) <= room else text[: max(room - 1, 1)] + "…"
    return ChartRow(row.task_id, label, row.state, top, ROW_HEIGHT, top + 15, bars)


def _bar(span: _Span, y: int, x_of: _Position, plot_end: int) -> Bar:
    """The span in px: at least MIN_BAR_WIDTH wide, moved left if that overruns the plot."""
    x, x_end = x_of(span.start), x_of(span.end)
    w = max(x_end - x, MIN_BAR_WIDTH)
    x = min(x, plot_end - w)
    return Bar(
        round(x, 1), y, round(w, 1), BAR_HEIGHT, span.kind, span.state, span.try_number, span.title
    )


def _ticks(span: timedelta, plot_x: int, plot_w: int) -> list[Tick]:
    """A tick every `step` from the start, the smallest nice step that keeps them at least
    MIN_TICK_SPACING px apart."""
    most = max(1, plot_w // MIN_TICK_SPACING)
    step = next((s for s in NICE_STEPS if span / s <= most), None)
    if step is None:
        step = DAY * math.ceil(span / DAY / most)
    count = int(span // step)
    return [
        Tick(round(plot_x + (k * step) / span * plot_w, 1), _offset_label(k * step))
        for k in range(count + 1)
    ]


def _offset_label(offset: timedelta) -> str:
    """ "0s", "+0.5s", "+30s", "+1m30s", "+2h", "+1d6h"."""
    ms = round(offset / timedelta(milliseconds=1))
    if ms == 0:
        return "0s"
    if ms % 1000:
        return f"+{ms / 1000:.1f}s"
    seconds, text = ms // 1000, ""
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if seconds >= size:
            text += f"{seconds // size}{unit}"
            seconds %= size
    return "+" + text
