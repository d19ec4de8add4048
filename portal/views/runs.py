"""The run pages: every run of the tenant (filtered, paged by id), one run (its graph
coloured by task state, its tasks and the gantt chart of their attempts, refreshed while it
runs) and one task (its attempts and the log of one, followed while it is written).

Both live parts poll and are answered 204 while nothing moved, at the cost of one small
query: the run's part every 2 s with the fingerprint of what it shows (`run_progress`),
the log's every second with the byte it has read up to (`get_attempt`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.http import HttpResponse
from django.urls import path, reverse
from django.utils import timezone

from events.lineage import run_has_lineage, run_lineage
from orchestrator.errors import Invalid, NotFound
from orchestrator.integers import ascii_int
from portal.dag_layout import DagLayout
from portal.drawings import version_drawing
from portal.gantt import GanttAttempt, GanttRow, gantt
from portal.pages import TenantPage, fingerprint, keyset_page, time_filter, unchanged
from portal.templatetags.portal_format import GLYPHS
from runs.graph import graph_for
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.selectors import (
    UNMAPPED,
    get_attempt,
    get_run,
    get_task_instance,
    instance_key,
    parse_map_index,
    read_log,
    run_attempts,
    run_neighbours,
    run_progress,
    run_task_instances,
    runs_page_list,
    task_attempts,
    task_group_state,
    task_summaries,
)

__all__ = [
    "LIVE_CLOCK_SECONDS",
    "LOG_WINDOW",
    "PAGE_SIZE",
    "AttemptRow",
    "GroupRow",
    "InstanceRow",
    "LogView",
    "RunListPage",
    "RunLivePart",
    "RunPage",
    "Tally",
    "TaskLogPart",
    "TaskPage",
    "TaskRow",
    "live_fingerprint",
    "urlpatterns",
]

PAGE_SIZE = 50
# The most of a log one page or one poll shows: a page opens on the log's last 256 KiB.
LOG_WINDOW = 256 * 1024
# While a task is queued or running the run's part also changes with the clock (its open
# gantt bars and running durations grow), at most this often.
LIVE_CLOCK_SECONDS = 30
GANTT_WIDTH = 1100
RESULT_PREVIEW = 80  # characters of a task's result shown in the task table
ERROR_LINES = 3  # lines of an attempt's error shown in the attempts table
# A mapped task's instances listed under its row on the run page (the rest: the REST API's
# ?task_id= list); and the most it may have to get a gantt row each (else one, its group).
INSTANCES_SHOWN = 200
GANTT_INSTANCE_ROWS = 10
ELEMENT_PREVIEW = 60  # characters of a mapped instance's element shown in its row
# The order a run's task counts are written in ("98 ✓ 2 ✗"): outcomes first.
TALLY_ORDER = (
    "success",
    "failed",
    "upstream_failed",
    "skipped",
    "cancelled",
    "running",
    "queued",
    "up_for_retry",
    "scheduled",
    "pending",
)
_OPEN_TASK_STATES = (TaskInstance.State.QUEUED, TaskInstance.State.RUNNING)

Progress = Sequence[tuple[str, str, int, int]]  # (task id, state, try number, attempts)


@dataclass(frozen=True)
class Tally:
    """How many of a run's tasks are in `state`, written "98 ✓"."""

    state: str
    count: int
    glyph: str


def _tally(counts: dict[str, int]) -> list[Tally]:
    """The counts in TALLY_ORDER, any state it does not know last; none of 0."""
    known = [s for s in TALLY_ORDER if counts.get(s)]
    other = sorted(s for s in counts if s not in TALLY_ORDER and counts[s])
    return [Tally(s, counts[s], GLYPHS.get(s, "•")) for s in known + other]


# --- the runs ---------------------------------------------------------------------------


def _cursor_id(text: str) -> int:
    """A page cursor: the last run id of the previous page."""
    value = ascii_int(text)
    if value is None:
        raise ValueError(text)
    return value


class RunListPage(TenantPage):
    """Every run of the tenant, newest first, 50 a page by id (keyset: page 10,000 costs
    what page 1 does), each with its task counts from one grouped query for the page."""

    permission = "run.view"
    template_name = "portal/runs/list.html"
    nav = "runs"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        page = keyset_page(
            runs_page_list(**self.filters()),
            key="id",
            descending=True,
            cursor=self.request.GET.get("cursor") or None,
            size=PAGE_SIZE,
            parse=_cursor_id,
        )
        counts = task_summaries([run.pk for run in page.items])
        rows = [(run, _tally(counts[run.pk])) for run in page.items]
        return self.form() | {"page": page, "rows": rows}

    def context_after_error(self, **kwargs: Any) -> dict[str, Any]:
        return self.form()

    def form(self) -> dict[str, Any]:
        query = self.request.GET
        names = ("workflow", "state", "trigger_source", "created_after", "created_before")
        return {
            "states": WorkflowRun.State.values,
            "sources": WorkflowRun.Source.values,
            "filtered": any(query.get(name) for name in names),
        }

    def filters(self) -> dict[str, Any]:
        """The query's filters for run_list; every bad one is reported, by its name."""
        query = self.request.GET
        errors: list[tuple[str, str]] = []
        chosen: dict[str, Any] = {"workflow": query.get("workflow", "").strip() or None}
        for name, accepted in (
            ("state", WorkflowRun.State.values),
            ("trigger_source", WorkflowRun.Source.values),
        ):
            value = query.get(name, "").strip()
            if value and value not in accepted:
                errors.append((name, f"{value!r} is not one; accepted: {', '.join(accepted)}"))
            chosen[name] = value or None
        for name in ("created_after", "created_before"):
            try:
                chosen[name] = time_filter(self.request, name)
            except Invalid as exc:
                errors.extend(exc.errors)
        if errors:
            raise Invalid(errors)
        return chosen


# --- one run ----------------------------------------------------------------------------


def live_fingerprint(state: str, tasks: Progress, now: dt.datetime) -> str:
    """What the run's live part shows, in 16 hex digits: the run's state and each task's
    state, try and attempts (sorted by task id), and while a task is queued or running the
    clock's half-minute too, so open bars and durations advance without a state change."""
    clock = None
    if any(task_state in _OPEN_TASK_STATES for _, task_state, _, _ in tasks):
        clock = int(now.timestamp()) // LIVE_CLOCK_SECONDS
    return fingerprint(state, [tuple(task) for task in sorted(tasks)], clock)


@dataclass(frozen=True)
class InstanceRow:
    """A line of a mapped task's instance list: the instance, a preview of its element,
    how long its current try ran, and its task page (`?map_index=`)."""

    ti: TaskInstance
    element: str
    duration: float | None
    link: str


@dataclass(frozen=True)
class GroupRow:
    """A mapped task on the run page, once: its state as its downstream sees it, its count
    per state, the span from its first start to its last end (to now while unfinished),
    and the first INSTANCES_SHOWN of its instances (`more`: how many are not listed)."""

    task_id: str
    state: str
    count: int
    tally: list[Tally]
    span: float | None
    instances: list[InstanceRow]
    more: int


@dataclass(frozen=True)
class TaskRow:
    """A line of the task table: the instance, its trigger rule, how long its current try
    waited in the queue and ran (so far, while it runs), and a preview of its result. A
    mapped task's line is its `group` (`ti` is then its first instance)."""

    ti: TaskInstance
    trigger_rule: str
    latency: float | None
    duration: float | None
    result: str
    group: GroupRow | None = None


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def _latency(ti: TaskInstance) -> float | None:
    """How long the current try waited in the queue before it started."""
    if ti.queued_at is None or ti.started_at is None or ti.queued_at > ti.started_at:
        return None
    return _seconds(ti.queued_at, ti.started_at)


def _task_row(ti: TaskInstance, tries: list[TaskAttempt], rule: str, now: dt.datetime) -> TaskRow:
    waited = _latency(ti)
    if ti.state == TaskInstance.State.QUEUED:
        waited = _seconds(ti.queued_at, now)  # so far
    last = tries[-1] if tries else None
    duration = _seconds(last.started_at, last.ended_at or now) if last is not None else None
    return TaskRow(ti, rule, waited, duration, _preview(ti.result, RESULT_PREVIEW))


def _gantt_attempts(ti: TaskInstance, tries: list[TaskAttempt]) -> list[GanttAttempt]:
    """The instance's attempts; only the current try knows when it was queued."""
    name = instance_key(ti.task_id, ti.map_index) if ti.map_index >= 0 else None
    return [
        GanttAttempt(
            try_number=a.try_number,
            state=a.state,
            queued_at=ti.queued_at if a.try_number == ti.try_number else None,
            started_at=a.started_at,
            ended_at=a.ended_at,
            name=name,
        )
        for a in tries
    ]


def _gantt_row(ti: TaskInstance, tries: list[TaskAttempt]) -> GanttRow:
    return GanttRow(
        task_id=instance_key(ti.task_id, ti.map_index),
        state=ti.state,
        attempts=_gantt_attempts(ti, tries),
        queued_at=ti.queued_at,
    )


def _gantt_group_row(
    group: GroupRow, instances: list[TaskInstance], tries: dict[int, list[TaskAttempt]]
) -> GanttRow:
    """A mapped task with many instances in one lane: every try of every instance, each
    titled with its index, so the lane shows how the fan-out spread over time."""
    attempts = [a for ti in instances for a in _gantt_attempts(ti, tries[ti.pk])]
    return GanttRow(
        task_id=group.task_id,
        state=group.state,
        attempts=attempts,
        label=f"{group.task_id} \N{MULTIPLICATION SIGN}{group.count}",
    )


def _in_graph_order(instances: list[TaskInstance], dag: DagLayout) -> list[TaskInstance]:
    """Left to right and top to bottom, as the graph draws them (the spec's own order is
    lost: a JSON column keeps its keys in its own order); a mapped task's by index."""
    place = {node.id: (node.layer, node.y) for node in dag.nodes}
    return sorted(
        instances,
        key=lambda ti: (place.get(ti.task_id, (len(place), 0)), ti.task_id, ti.map_index),
    )


def _preview(value: Any, size: int) -> str:
    text = "" if value is None else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= size else text[: size - 1] + "…"


def _group_row(
    task_id: str,
    instances: list[TaskInstance],
    tries: dict[int, list[TaskAttempt]],
    link: str,
    now: dt.datetime,
) -> GroupRow:
    counts: dict[str, int] = {}
    for ti in instances:
        counts[ti.state] = counts.get(ti.state, 0) + 1
    state = task_group_state(counts)
    starts = [ti.started_at for ti in instances if ti.started_at is not None]
    ends = [ti.ended_at for ti in instances if ti.ended_at is not None]
    finished = state in TaskInstance.FINISHED
    span = _seconds(min(starts), max(ends) if finished and ends else now) if starts else None
    shown = [
        InstanceRow(
            ti=ti,
            element=_preview(ti.map_value, ELEMENT_PREVIEW),
            duration=_task_row(ti, tries[ti.pk], "", now).duration,
            link=f"{link}?map_index={ti.map_index}",
        )
        for ti in instances[:INSTANCES_SHOWN]
    ]
    return GroupRow(
        task_id=task_id,
        state=state,
        count=len(instances),
        tally=_tally(counts),
        span=span,
        instances=shown,
        more=max(len(instances) - INSTANCES_SHOWN, 0),
    )


def _live_context(run: WorkflowRun, tenant: str) -> dict[str, Any]:
    """What the run's live part shows: the graph, the task table and the gantt chart, read
    with two queries (the run's task instances, their attempts) whatever the run's size. A
    mapped task (once expanded) is one node, one group row listing its instances, and one
    gantt lane, or a lane per instance when it has at most GANTT_INSTANCE_ROWS."""
    now = timezone.now()
    drawing = version_drawing(run.version_id)
    dag = drawing.dag
    instances = _in_graph_order(run_task_instances(run), dag)
    tries: dict[int, list[TaskAttempt]] = {ti.pk: [] for ti in instances}
    for attempt in run_attempts(run):
        tries[attempt.task_instance_id].append(attempt)
    rules = drawing.trigger_rules
    counts: dict[str, int] = {}
    by_task: dict[str, list[TaskInstance]] = {}
    for ti in instances:
        counts[ti.state] = counts.get(ti.state, 0) + 1
        by_task.setdefault(ti.task_id, []).append(ti)
    progress = [
        (instance_key(ti.task_id, ti.map_index), ti.state, ti.try_number, len(tries[ti.pk]))
        for ti in instances
    ]
    link = {task_id: reverse("portal:task", args=[tenant, run.pk, task_id]) for task_id in by_task}
    rows, gantt_rows, states, badges = [], [], {}, {}
    for task_id, group in by_task.items():
        first = group[0]
        if first.map_index < 0:  # unmapped, or a mapped task not expanded yet
            rows.append(_task_row(first, tries[first.pk], rules.get(task_id, ""), now))
            gantt_rows.append(_gantt_row(first, tries[first.pk]))
            states[task_id] = first.state
            if task_id in drawing.mapped:
                badges[task_id] = "mapped"
            continue
        grouped = _group_row(task_id, group, tries, link[task_id], now)
        row = _task_row(first, tries[first.pk], rules.get(task_id, ""), now)
        rows.append(TaskRow(first, row.trigger_rule, None, grouped.span, "", grouped))
        if len(group) > GANTT_INSTANCE_ROWS:
            gantt_rows.append(_gantt_group_row(grouped, group, tries))
        else:
            gantt_rows.extend(_gantt_row(ti, tries[ti.pk]) for ti in group)
        states[task_id] = grouped.state
        badges[task_id] = f"\N{MULTIPLICATION SIGN}{grouped.count}"
    return {
        "run": run,
        "finished": run.state in WorkflowRun.FINISHED,
        "finished_states": TaskInstance.FINISHED,  # an instance that may be cleared
        "seen": live_fingerprint(run.state, progress, now),
        "dag": dag,
        "states": states,
        "badges": badges,
        "task_types": drawing.task_types,
        "trigger_rules": rules,
        "link": link,
        "tasks": rows,
        "tally": _tally(counts),
        "chart": gantt(gantt_rows, now=now, width=GANTT_WIDTH),
    }


class RunPage(TenantPage):
    """A run: who started it, with what, when; then its live part (graph, tasks, gantt)."""

    permission = "run.view"
    template_name = "portal/runs/run.html"
    nav = "runs"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        run = get_run(kwargs["run"])
        before, after = run_neighbours(run)
        # The datasets it read and wrote: queried only when its spec names any.
        datasets = run_lineage(run, tenant=self.tenant) if run_has_lineage(run) else None
        return _live_context(run, self.tenant.slug) | {
            "before": before,
            "after": after,
            "params": _pretty(run.params),
            "datasets": datasets if datasets and (datasets.read or datasets.produced) else None,
        }


class RunLivePart(TenantPage):
    """The run page's live part, polled with `?seen=<fingerprint>`: 204 while the run's
    progress (one grouped query) has the same fingerprint, else the part read again, with
    the header's state and times swapped in out of band. A finished run's part carries no
    trigger, so the page stops asking."""

    permission = "run.view"
    template_name = "portal/runs/live.html"
    nav = "runs"

    def context(self, **kwargs: Any) -> dict[str, Any] | HttpResponse:
        state, tasks = run_progress(kwargs["run"])
        same = unchanged(self.request, live_fingerprint(state, tasks, timezone.now()))
        if same is not None:
            return same
        return _live_context(get_run(kwargs["run"]), self.tenant.slug) | {"oob": True}


# --- one task ---------------------------------------------------------------------------


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _number_param(query: Any, name: str) -> int | None:
    """A whole number from the query; None when absent, Invalid when it is not one."""
    raw = query.get(name, "")
    if raw == "":
        return None
    value = ascii_int(raw)
    if value is None:
        raise Invalid([(name, f"{raw!r} is not a whole number of 0 or more")])
    return value


@dataclass(frozen=True)
class LogView:
    """The part of an attempt's log a page shows: `text`, bytes `offset` to `next_offset`
    of the `total` written so far; `running` while the attempt runs."""

    text: str
    offset: int
    next_offset: int
    total: int
    running: bool
    tail: bool  # the page opened on the log's end: earlier bytes are not shown

    @property
    def more(self) -> bool:
        """Bytes after the text are already written."""
        return self.next_offset < self.total


def _log_view(ti: TaskInstance, attempt: TaskAttempt, offset: int | None) -> LogView:
    """`LOG_WINDOW` bytes of the attempt's log from `offset`, or its last ones when None
    (from their first whole line, as `tail` shows them)."""
    tail = offset is None and attempt.log_bytes > LOG_WINDOW
    start = max(attempt.log_bytes - LOG_WINDOW, 0) if offset is None else offset
    page = read_log(ti, try_number=attempt.try_number, offset=start, limit=LOG_WINDOW)
    text = page["text"]
    if tail and "\n" in text:
        text = text.split("\n", 1)[1]
    return LogView(
        text=text,
        offset=start,
        next_offset=page["next_offset"],
        total=page["total_bytes"],
        running=page["running"],
        tail=tail,
    )


@dataclass(frozen=True)
class AttemptRow:
    """A line of a task's attempts table."""

    attempt: TaskAttempt
    error: str  # the first lines of its error


class TaskPage(TenantPage):
    """A task of a run: its facts, its attempts, and the log of one (`?try=N`, default the
    latest), followed live while that attempt runs."""

    permission = "run.view"
    template_name = "portal/runs/task.html"
    nav = "runs"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        run = get_run(kwargs["run"])
        map_index = parse_map_index(self.request.GET.get("map_index"))
        ti = get_task_instance(run, kwargs["task"], map_index)
        attempts = task_attempts(ti)
        chosen = self.chosen(ti, attempts)
        offset = _number_param(self.request.GET, "offset")
        task = graph_for(run.version_id).spec.tasks.get(ti.task_id)
        log = _log_view(ti, chosen, offset) if chosen else None
        return {
            "run": run,
            "ti": ti,
            "trigger_rule": task.trigger_rule if task is not None else "",
            "result": None if ti.result is None else _pretty(ti.result),
            "attempts": [AttemptRow(a, _first_lines(a.error)) for a in attempts],
            "attempt": chosen,
            "rendered": _pretty(chosen.rendered) if chosen and chosen.rendered else None,
            "log": log,
            # Follow the end of a running attempt's log; a window before the end pages on.
            "follow": log is not None and log.running and (offset is None or not log.more),
            "latency": _latency(ti),
            # A mapped instance's name, element and the query its own links keep.
            "name": instance_key(ti.task_id, ti.map_index),
            "element": None if ti.map_index < 0 else _pretty(ti.map_value),
            "index_query": f"&map_index={ti.map_index}" if ti.map_index >= 0 else "",
        }

    def chosen(self, ti: TaskInstance, attempts: list[TaskAttempt]) -> TaskAttempt | None:
        """The attempt `?try=N` names (404 if none), else the latest, None before any."""
        raw = self.request.GET.get("try", "")
        if raw == "":
            return attempts[-1] if attempts else None
        wanted = ascii_int(raw)
        found = next((a for a in attempts if a.try_number == wanted), None)
        if found is None:
            raise NotFound(f"task {ti.task_id!r} has no try {raw!r}")
        return found


def _first_lines(text: str) -> str:
    """What the attempts table shows of an error: its first lines, "…" when there is more."""
    lines = text.strip().splitlines()
    head = "\n".join(lines[:ERROR_LINES])
    return head + ("\n…" if len(lines) > ERROR_LINES else "")


class TaskLogPart(TenantPage):
    """The log's follower, polled with `?try=N&offset=K`: 204 while the attempt runs and has
    no byte past K (one query), else the new text (escaped) and a follower from where it
    ends; once the attempt has finished and all is shown, no follower, and the status line
    is swapped out of band."""

    permission = "run.view"
    template_name = "portal/runs/log_part.html"
    nav = "runs"

    def context(self, **kwargs: Any) -> dict[str, Any] | HttpResponse:
        try_number = ascii_int(self.request.GET.get("try", ""))
        if try_number is None:
            raise NotFound("which try? follow the page's own links")
        offset = _number_param(self.request.GET, "offset") or 0
        map_index = parse_map_index(self.request.GET.get("map_index"))
        attempt = get_attempt(
            kwargs["run"], kwargs["task"], try_number, UNMAPPED if map_index is None else map_index
        )
        if attempt.state == TaskAttempt.State.RUNNING and attempt.log_bytes <= offset:
            response = HttpResponse(status=204)
            response["Cache-Control"] = "no-store"
            return response
        log = _log_view(attempt.task_instance, attempt, offset)
        # Still running by either read: one more poll then tells how it ended.
        running = log.running or attempt.state == TaskAttempt.State.RUNNING
        ti = attempt.task_instance
        return {
            "run_id": kwargs["run"],
            "ti": ti,
            "index_query": f"&map_index={ti.map_index}" if ti.map_index >= 0 else "",
            "attempt": attempt,
            "log": log,
            "follow": running or log.more,
        }


urlpatterns = [
    path("runs/", RunListPage.as_view(), name="runs"),
    path("runs/<int:run>/", RunPage.as_view(), name="run"),
    path("runs/<int:run>/live/", RunLivePart.as_view(), name="run-live"),
    path("runs/<int:run>/tasks/<str:task>/", TaskPage.as_view(), name="task"),
    path("runs/<int:run>/tasks/<str:task>/log/", TaskLogPart.as_view(), name="task-log"),
]
