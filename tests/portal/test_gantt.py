"""portal.gantt: bars placed in proportion to time, queued and running stretches, the nice
axis, the empty chart; and the parts/gantt.html template that draws a chart. No database."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import xml.etree.ElementTree as ET

import pytest
from django.template.loader import render_to_string
from django.utils import translation

from portal.gantt import (
    EMPTY_HEIGHT,
    MIN_BAR_WIDTH,
    MIN_TICK_SPACING,
    NICE_STEPS,
    ROW_HEIGHT,
    Bar,
    GanttAttempt,
    GanttChart,
    GanttRow,
    gantt,
)

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
SVG = "{http://www.w3.org/2000/svg}"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def attempt(
    start: float,
    end: float | None,
    *,
    state: str = "success",
    tries: int = 1,
    queued: float | None = None,
) -> GanttAttempt:
    return GanttAttempt(
        try_number=tries,
        state=state,
        queued_at=None if queued is None else at(queued),
        started_at=at(start),
        ended_at=None if end is None else at(end),
    )


def x_at(chart: GanttChart, seconds: float) -> float:
    """Where a moment `seconds` after T0 must be drawn."""
    offset = (at(seconds) - chart.start) / (chart.end - chart.start)
    return chart.plot_x + offset * chart.plot_w


def right(bar: Bar) -> float:
    return bar.x + bar.w


def step_of(chart: GanttChart) -> dt.timedelta:
    """The time between two ticks, read back from their positions."""
    first, second = chart.ticks[0].x, chart.ticks[1].x
    return (chart.end - chart.start) * ((second - first) / chart.plot_w)


def own_text(element: ET.Element) -> str:
    """An element's text without its children's (its <title>)."""
    return (element.text or "") + "".join(child.tail or "" for child in element)


def test_it_places_bars_in_proportion_to_time() -> None:
    rows = [
        GanttRow(task_id="extract", state="success", attempts=[attempt(0, 10)]),
        GanttRow(task_id="load", state="success", attempts=[attempt(10, 40)]),
    ]
    chart = gantt(rows, now=at(100))
    (extract,), (load,) = (row.bars for row in chart.rows)
    assert (chart.start, chart.end) == (at(0), at(40))
    assert extract.x == chart.plot_x
    assert right(load) == pytest.approx(chart.plot_x + chart.plot_w)
    assert load.x == pytest.approx(x_at(chart, 10), abs=0.1)
    assert load.w == pytest.approx(3 * extract.w, abs=0.2)
    assert [row.y for row in chart.rows] == [chart.grid_top, chart.grid_top + ROW_HEIGHT]
    for row in chart.rows:
        assert all(row.y <= bar.y and bar.y + bar.h <= row.y + row.h for bar in row.bars)


def test_it_draws_a_five_millisecond_attempt_at_least_two_pixels_wide() -> None:
    rows = [
        GanttRow(task_id="long", state="success", attempts=[attempt(0, 3600)]),
        GanttRow(task_id="blip", state="success", attempts=[attempt(1800, 1800.005)]),
        GanttRow(task_id="last", state="success", attempts=[attempt(3600, 3600.005)]),
    ]
    chart = gantt(rows, now=at(4000))
    blip, last = chart.rows[1].bars[0], chart.rows[2].bars[0]
    assert blip.w == last.w == MIN_BAR_WIDTH
    assert blip.x == pytest.approx(x_at(chart, 1800), abs=0.1)
    assert right(last) == pytest.approx(chart.plot_x + chart.plot_w)  # kept inside the plot
    assert "running 5 ms" in blip.title


def test_it_ends_a_running_attempt_at_now() -> None:
    rows = [
        GanttRow(task_id="done", state="success", attempts=[attempt(0, 5)]),
        GanttRow(
            task_id="busy", state="running", attempts=[attempt(2, None, state="running", queued=1)]
        ),
    ]
    chart = gantt(rows, now=at(62))
    queued, running = chart.rows[1].bars
    assert queued.kind == "queued"
    assert right(queued) == pytest.approx(running.x, abs=0.1)
    assert chart.end == at(62)
    assert right(running) == pytest.approx(chart.plot_x + chart.plot_w)
    assert chart.now_x == pytest.approx(chart.plot_x + chart.plot_w, abs=0.1)
    assert (running.kind, running.state) == ("running", "running")
    assert running.title == "busy · try 1: running 1 min so far, queued 1.0 s"


def test_it_draws_the_queued_wait_before_each_try() -> None:
    tries = [
        attempt(1.5, 4.7, state="failed", queued=1.1),
        attempt(10.0, 13.2, state="success", tries=2, queued=9.6),
    ]
    chart = gantt([GanttRow(task_id="flaky", state="success", attempts=tries)], now=at(60))
    bars = chart.rows[0].bars
    assert [(b.kind, b.state, b.try_number) for b in bars] == [
        ("queued", "queued", 1),
        ("running", "failed", 1),
        ("queued", "queued", 2),
        ("running", "success", 2),
    ]
    assert right(bars[0]) == pytest.approx(bars[1].x, abs=0.1)
    assert bars[3].title == "flaky · try 2: running 3.2 s, queued 400 ms, success"
    assert chart.now_x is None  # nothing is open any more


def test_it_draws_a_task_queued_for_a_try_not_started_yet() -> None:
    rows = [
        GanttRow(task_id="waiting", state="queued", queued_at=at(5)),
        GanttRow(
            task_id="retrying",
            state="queued",
            attempts=[attempt(0, 3, state="failed")],
            queued_at=at(8),
        ),
        GanttRow(task_id="cancelled", state="cancelled", queued_at=at(1)),  # its end is unknown
    ]
    chart = gantt(rows, now=at(20))
    waiting, retrying, cancelled = chart.rows
    assert [(b.kind, b.try_number) for b in waiting.bars] == [("queued", 1)]
    assert waiting.bars[0].x == pytest.approx(x_at(chart, 5), abs=0.1)
    assert right(waiting.bars[0]) == pytest.approx(chart.plot_x + chart.plot_w)
    assert waiting.bars[0].title == "waiting · try 1: queued 15.0 s so far"
    assert [(b.kind, b.try_number) for b in retrying.bars] == [("running", 1), ("queued", 2)]
    assert cancelled.bars == []


@pytest.mark.parametrize(
    "seconds", [0.005, 0.3, 1, 7, 47, 130, 600, 3 * 3600 + 17, 2 * 86400, 20 * 86400, 400 * 86400]
)
@pytest.mark.parametrize("width", [320, 900, 2000])
def test_it_marks_the_axis_at_nice_steps_inside_the_plot(seconds: float, width: int) -> None:
    rows = [GanttRow(task_id="t", state="success", attempts=[attempt(0, seconds)])]
    chart = gantt(rows, now=at(seconds + 1), width=width)
    xs = [tick.x for tick in chart.ticks]
    assert chart.ticks[0].label == "0s"
    assert xs[0] == chart.plot_x
    assert all(chart.plot_x <= x <= chart.plot_x + chart.plot_w for x in xs)
    assert all(b - a >= MIN_TICK_SPACING - 0.2 for a, b in itertools.pairwise(xs))
    assert all(re.fullmatch(r"\+(\d+(\.\d)?s|(\d+[dhms])+)", t.label) for t in chart.ticks[1:])
    assert len(xs) >= 2 or chart.end - chart.start < 2 * NICE_STEPS[0]
    if len(xs) > 1:
        nice = [*NICE_STEPS, *(dt.timedelta(days=d) for d in range(2, 400))]
        assert min(abs(step_of(chart) / s - 1) for s in nice) < 0.01  # positions are rounded
        wider = gantt(rows, now=at(seconds + 1), width=width * 3)
        assert step_of(wider) <= step_of(chart) * 1.01


def test_it_labels_ticks_as_time_since_the_start() -> None:
    rows = [GanttRow(task_id="t", state="success", attempts=[attempt(0, 180)])]
    labels = [tick.label for tick in gantt(rows, now=at(200)).ticks]
    assert labels == ["0s", "+30s", "+1m", "+1m30s", "+2m", "+2m30s", "+3m"]
    rows = [GanttRow(task_id="t", state="success", attempts=[attempt(0, 1.3)])]
    assert [tick.label for tick in gantt(rows, now=at(2)).ticks][:3] == ["0s", "+0.2s", "+0.4s"]


def test_it_has_no_rows_when_nothing_ran_yet() -> None:
    pending = [GanttRow(task_id="a", state="pending"), GanttRow(task_id="b", state="scheduled")]
    for rows in ([], pending):
        chart = gantt(rows, now=T0)
        assert (chart.rows, chart.ticks, chart.height) == ([], [], EMPTY_HEIGHT)


def test_it_keeps_rows_in_the_given_order_with_empty_lanes_for_tasks_not_run() -> None:
    rows = [
        GanttRow(task_id="b", state="success", attempts=[attempt(0, 1)]),
        GanttRow(task_id="a", state="pending"),
        GanttRow(task_id="x" * 80, state="pending"),
    ]
    chart = gantt(rows, now=at(5))
    assert [row.task_id for row in chart.rows] == ["b", "a", "x" * 80]
    assert chart.rows[1].bars == []
    assert chart.rows[2].label.endswith("…")
    assert len(chart.rows[2].label) < 80
    assert chart.height >= chart.grid_bottom == chart.grid_top + 3 * ROW_HEIGHT
    assert gantt(rows, now=at(5)) == chart


def render_gantt(chart: GanttChart) -> tuple[str, ET.Element]:
    html = render_to_string("portal/parts/gantt.html", {"chart": chart})
    return html, ET.fromstring(html.strip())  # noqa: S314 (our own output, not untrusted)


def bars_of(svg: ET.Element) -> list[ET.Element]:
    return [r for r in svg.iter(f"{SVG}rect") if "bar" in r.get("class", "").split()]


def test_its_template_draws_bars_with_tooltips_and_ticks_with_grid_lines() -> None:
    rows = [
        GanttRow(task_id="extract", state="success", attempts=[attempt(0, 10, queued=-1)]),
        GanttRow(task_id="load", state="running", attempts=[attempt(10, None, state="running")]),
        GanttRow(task_id="report", state="pending"),
    ]
    chart = gantt(rows, now=at(30))
    with translation.override("de"):  # a decimal comma would break every coordinate
        html, svg = render_gantt(chart)
    assert "style=" not in html
    assert "<script" not in html
    assert svg.tag == f"{SVG}svg"
    assert svg.get("role") == "img"
    assert svg.get("viewBox") == f"0 0 {chart.width} {chart.height}"
    assert "2025-03-01 11:59:59" in svg.get("aria-label", "")
    bars = bars_of(svg)
    assert [b.get("class") for b in bars] == [
        "bar bar-queued st-queued",
        "bar bar-running st-success",
        "bar bar-running st-running",
    ]
    assert [b.find(f"{SVG}title").text for b in bars][1] == (  # type: ignore[union-attr]
        "extract · try 1: running 10.0 s, queued 1.0 s, success"
    )
    numbers = [b.get(a, "") for b in bars for a in ("x", "y", "width", "height")]
    assert all(re.fullmatch(r"\d+(\.\d+)?", n) for n in numbers)
    labels = [t for t in svg.iter(f"{SVG}text") if t.get("class") == "row-label"]
    assert [own_text(t) for t in labels] == ["✓ extract", "▶ load", "○ report"]
    lines = [line for line in svg.iter(f"{SVG}line") if line.get("class") == "tick"]
    assert len(lines) == len(chart.ticks) >= 2
    assert [line for line in svg.iter(f"{SVG}line") if line.get("class") == "now"]


def test_its_template_says_when_nothing_ran_yet() -> None:
    html, svg = render_gantt(gantt([GanttRow(task_id="a", state="pending")], now=T0))
    assert "style=" not in html
    assert bars_of(svg) == []
    assert [t.text for t in svg.iter(f"{SVG}text")] == ["Nothing ran yet."]
    assert svg.get("height") == str(EMPTY_HEIGHT)
