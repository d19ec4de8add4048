"""Read queries of runs. Callers are inside the tenant's scope."""

from __future__ import annotations

import codecs
import datetime as dt
import functools
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Max, Min, OuterRef, Q, QuerySet, Subquery

from orchestrator.context import current_tenant_ids
from orchestrator.errors import Invalid, NotFound
from orchestrator.fastsql import Columns, attach, in_tenants, quote, statement
from orchestrator.integers import ascii_int
from runs.graph import graph_for
from runs.models import Event, TaskAttempt, TaskInstance, TaskLog, WorkflowRun
from runs.trigger_rules import group_state
from workflows import dag
from workflows.models import Workflow, WorkflowVersion
from workflows.spec import EVENT_TYPE_PATTERN

__all__ = [
    "LOG_PAGE_MAX",
    "UNMAPPED",
    "RecentRun",
    "TaskGroup",
    "event_list",
    "get_attempt",
    "get_event",
    "get_run",
    "get_task_instance",
    "instance_key",
    "last_error",
    "latest_runs",
    "latest_runs_by_workflow",
    "parse_map_index",
    "read_log",
    "run_attempts",
    "run_detail",
    "run_list",
    "run_neighbours",
    "run_progress",
    "run_task_instances",
    "runs_page_list",
    "runs_started_by",
    "task_attempts",
    "task_group_state",
    "task_groups",
    "task_instance_list",
    "task_states_of_runs",
    "task_summaries",
    "task_summary",
    "tasks_decided_again",
    "tasks_to_clear",
    "tasks_to_retry",
    "with_latest_runs_start",
]


def run_list(
    *,
    workflow: str | None = None,
    state: str | None = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
    trigger_source: str | None = None,
    triggered_by: str | None = None,
) -> QuerySet[WorkflowRun]:
    qs = WorkflowRun.objects.select_related("workflow", "version", "triggered_by")
    if trigger_source:
        qs = qs.filter(trigger_source=trigger_source)
    if triggered_by:
        qs = qs.filter(triggered_by__username=triggered_by)
    if workflow:
        qs = qs.filter(workflow__name=workflow, workflow__deleted_at__isnull=True)
    if state:
        qs = qs.filter(state=state)
    if created_after:
        qs = qs.filter(created_at__gte=created_after)
    if created_before:
        qs = qs.filter(created_at__lt=created_before)
    return qs


def with_latest_runs_start(workflows: QuerySet[Workflow], *, count: int) -> QuerySet[Workflow]:
    """Each workflow annotated with `latest_runs_start`, the id of its `count`-th newest run
    (None with fewer), for latest_runs_by_workflow: one index probe per workflow, in the
    statement that reads the workflows."""
    nth = WorkflowRun.objects.filter(workflow_id=OuterRef("pk")).order_by("-id")
    return workflows.annotate(latest_runs_start=Subquery(nth.values("id")[count - 1 : count]))


class RecentRun(NamedTuple):
    """What a strip of runs shows of each: a tuple, not a model (a list page has 1,000)."""

    id: int
    state: str
    created_at: dt.datetime


def latest_runs_by_workflow(
    starts: Mapping[int, int | None], *, per_workflow: int
) -> dict[int, list[RecentRun]]:
    """The newest `per_workflow` runs of each workflow, oldest first (a list page's strips),
    in one statement for all of them. `starts` (workflow id -> with_latest_runs_start's
    id) bounds each workflow's range, so the statement reads those runs and no older one,
    however many a workflow has."""
    found: dict[int, list[RecentRun]] = {wid: [] for wid in starts}
    if not starts:
        return found
    ranges = Q()
    for wid, start in starts.items():
        ranges |= Q(workflow_id=wid, id__gte=start) if start is not None else Q(workflow_id=wid)
    rows = (
        WorkflowRun.objects.filter(ranges)
        .order_by("workflow_id", "id")
        .values_list("workflow_id", "id", "state", "created_at")
    )
    for workflow_id, run_id, state, created_at in rows:
        found[workflow_id].append(RecentRun(run_id, state, created_at))
    return {wid: runs[-per_workflow:] for wid, runs in found.items()}


def latest_runs(workflow: Workflow, *, count: int) -> list[WorkflowRun]:
    """The workflow's newest `count` runs, oldest first, with their versions' numbers."""
    runs = list(
        WorkflowRun.objects.filter(workflow=workflow)
        .select_related("version")
        .only("id", "state", "created_at", "logical_date", "version__number")
        .order_by("-id")[:count]
    )
    return runs[::-1]


def task_states_of_runs(run_ids: Sequence[int]) -> dict[int, dict[str, tuple[str, int]]]:
    """run id -> task id -> (state, try number) of the runs' (unmapped) task instances, in
    one statement: a grid of runs x tasks."""
    rows = (
        TaskInstance.objects.filter(run_id__in=list(run_ids), map_index=-1)
        .order_by()
        .values_list("run_id", "task_id", "state", "try_number")
    )
    found: dict[int, dict[str, tuple[str, int]]] = {rid: {} for rid in run_ids}
    for run_id, task_id, state, try_number in rows:
        found[run_id][task_id] = (state, try_number)
    return found


def event_list(
    *,
    base: QuerySet[Event] | None = None,
    types: Sequence[str] = (),
    workflow: str | None = None,
    run_id: int | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> QuerySet[Event]:
    """The outbox's events, newest first; `base` narrows further (an interface's queryset).
    `types`: any of these (all when empty); a malformed type is refused."""
    unknown = [t for t in types if not re.fullmatch(EVENT_TYPE_PATTERN, t)]
    if unknown:
        why = (
            f"{unknown[0]!r} is not an event type: one matches {EVENT_TYPE_PATTERN} (letters, "
            "digits and . _ : / -, at most 200 characters); the service's own are "
            f"{', '.join(Event.Type.values)}; published ones are like com.acme.file.landed"
        )
        raise Invalid([("type", why)])
    qs = (Event.objects.all() if base is None else base).select_related("workflow")
    if types:
        qs = qs.filter(type__in=list(types))
    if workflow:
        qs = qs.filter(workflow__name=workflow, workflow__deleted_at__isnull=True)
    if run_id is not None:
        qs = qs.filter(run_id=run_id)
    if since:
        qs = qs.filter(time__gte=since)
    if until:
        qs = qs.filter(time__lt=until)
    return qs.order_by("-id")


def get_event(uid: str) -> Event:
    """An event by its id as a CloudEvent (its uid)."""
    try:
        key = uuid.UUID(uid)
    except (TypeError, ValueError):
        key = None
    event = event_list().filter(uid=key).first() if key is not None else None
    if event is None:
        raise NotFound(f"event {uid!r} not found")
    return event


def runs_started_by(uids: Sequence[str]) -> dict[str, list[int]]:
    """The ids of the scoped tenant's runs that these events (by CloudEvent id) started,
    oldest first, by event: what an event log page shows beside each event."""
    started: dict[str, list[int]] = {}
    if not uids:
        return started
    rows = (
        WorkflowRun.objects.filter(
            trigger_source=WorkflowRun.Source.EVENT, event__id__in=list(uids)
        )
        .order_by("id")
        .values_list("event__id", "id")
    )
    for uid, run_id in rows:
        started.setdefault(str(uid), []).append(run_id)
    return started


_MAX_ID = 2**63 - 1  # bigint: a larger id names no run (and SQLite could not take it)
_RUN = Columns(WorkflowRun)
_RUN_WORKFLOW = Columns(Workflow)
_RUN_VERSION = Columns(WorkflowVersion, only=["workflow_id", "number"])  # what runs show
_RUN_USER = Columns(get_user_model(), only=["username"])


@functools.cache
def _run_query(vendor: str, tenants: int, with_tasks: bool) -> str:
    """One run of the tenants in scope with what run_list() selects with it, written once:
    every run endpoint reads its run here (see orchestrator/fastsql.py). `with_tasks`: one
    row per state of its task instances, with their count (the run repeated on each)."""
    id_ = quote("id")
    tasks, join = "", ""
    if with_tasks:
        tasks = ", s.state, s.n"
        join = (
            f"LEFT JOIN (SELECT state, COUNT(*) AS n FROM {quote(TaskInstance._meta.db_table)} "  # noqa: S608
            "WHERE run_id = %s GROUP BY state) s ON TRUE "
        )
    return (
        f"SELECT {_RUN.select('r')}, {_RUN_WORKFLOW.select('w')}, "  # noqa: S608
        f"{_RUN_VERSION.select('v')}, {_RUN_USER.select('u')}{tasks} FROM {_RUN.table} r "
        f"JOIN {_RUN_WORKFLOW.table} w ON w.{id_} = r.{quote('workflow_id')} "
        f"JOIN {_RUN_VERSION.table} v ON v.{id_} = r.{quote('version_id')} "
        f"LEFT JOIN {_RUN_USER.table} u ON u.{id_} = r.{quote('triggered_by_id')} {join}"
        f"WHERE r.{id_} = %s AND {in_tenants('r', tenants)}"
    )


def get_run(run_id: str | int) -> WorkflowRun:
    """The run with its workflow, and its version and who triggered it with the fields a
    run's representation shows (any other is read when used)."""
    return _read_run(run_id, with_tasks=False)[0]


def run_detail(run_id: str | int) -> tuple[WorkflowRun, dict[str, int]]:
    """`get_run` and `task_summary` in one statement: what a run's endpoint shows."""
    return _read_run(run_id, with_tasks=True)


@statement("run_by_id")
def _read_run(run_id: str | int, with_tasks: bool) -> tuple[WorkflowRun, dict[str, int]]:
    tenant_ids = sorted(current_tenant_ids())
    rows: list[Any] = []
    text = str(run_id)
    if (pk := ascii_int(text, maximum=_MAX_ID)) and tenant_ids:
        with connection.cursor() as cursor:
            cursor.execute(
                _run_query(connection.vendor, len(tenant_ids), with_tasks),
                [*([pk] if with_tasks else []), pk, *tenant_ids],
            )
            rows = cursor.fetchall()
    if not rows:
        raise NotFound(f"run {run_id!r} not found")
    row = rows[0]
    run = _RUN.build(row)
    at = len(_RUN)
    attach(run, "workflow", _RUN_WORKFLOW.build(row, at))
    at += len(_RUN_WORKFLOW)
    attach(run, "version", _RUN_VERSION.build(row, at))
    at += len(_RUN_VERSION)
    attach(run, "triggered_by", _RUN_USER.build_or_none(row, at))
    at += len(_RUN_USER)
    tasks = {r[at]: r[at + 1] for r in rows if with_tasks and r[at] is not None}
    return run, tasks


@statement("task_state_counts")
def task_summary(run: WorkflowRun) -> dict[str, int]:
    """Task instance count per state."""
    table = quote(TaskInstance._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT i.state, COUNT(*) FROM {table} i WHERE i.run_id = %s "  # noqa: S608
            f"AND {in_tenants('i', 1)} GROUP BY i.state",
            [run.pk, run.tenant_id],
        )
        return dict(cursor.fetchall())


# --- mapped tasks ---------------------------------------------------------------------
# A mapped task (`map` in the spec) is one instance of map_index -1 until the engine expands
# it into instances 0..n-1 (an empty list leaves the -1 one, skipped). An unmapped task
# keeps its single instance of map_index -1.

UNMAPPED = -1
_MAX_MAP_INDEX = 2**31 - 1  # the column is an integer: a larger index names no instance
# What a group with unfinished instances shows: the most advanced state among them (the
# engine's trigger rules only ask whether it has finished: runs.trigger_rules.group_state).
_UNFINISHED_SHOWN = ("running", "queued", "up_for_retry", "scheduled", "pending")


def parse_map_index(raw: str | None) -> int | None:
    """A `map_index` from a request: None when absent or empty (the unmapped instance, or
    the whole task); -1 or a whole number; Invalid naming the parameter otherwise."""
    if raw is None or raw == "":
        return None
    value = UNMAPPED if raw == "-1" else ascii_int(raw, maximum=_MAX_MAP_INDEX)
    if value is None:
        raise Invalid(
            [("map_index", f"{raw!r} is not a map index; accepted: -1 (unmapped) or 0 and up")]
        )
    return value


def instance_key(task_id: str, map_index: int) -> str:
    """How pages name one instance: the task id, with "[3]" for a mapped task's index 3."""
    return f"{task_id}[{map_index}]" if map_index >= 0 else task_id


def task_group_state(counts: Mapping[str, int]) -> str:
    """A task's state from its instances' count per state, as the engine sees the group
    (runs.trigger_rules.group_state) once all have finished; before, the most advanced
    unfinished state among them, so that 300 instances waiting do not read "running"."""
    present = [state for state, n in counts.items() if n]
    unfinished = [s for s in _UNFINISHED_SHOWN if s in present]
    if unfinished:
        return unfinished[0]
    return group_state(present) if present else str(TaskInstance.State.PENDING)


def get_task_instance(run: WorkflowRun, task_id: str, map_index: int | None = None) -> TaskInstance:
    """One instance of the run's task: the unmapped one when `map_index` is None (or -1),
    else that index of a mapped task. Not found says which indexes there are."""
    wanted = UNMAPPED if map_index is None else map_index
    ti = TaskInstance.objects.filter(run=run, task_id=task_id, map_index=wanted).first()
    if ti is None:
        raise NotFound(_no_instance(run, task_id, map_index))
    return ti


def _no_instance(run: WorkflowRun, task_id: str, map_index: int | None) -> str:
    """Why no instance answers: no such task, a mapped task asked without an index, or an
    index it does not have. Read only on this error path."""
    found = TaskInstance.objects.filter(run=run, task_id=task_id).aggregate(
        n=Count("id"), top=Max("map_index")
    )
    count, top = found["n"], found["top"]
    task = f"task {task_id!r} of run {run.pk}"
    if not count:
        return f"run {run.pk} has no task {task_id!r}"
    if top is None or top < 0:
        return (
            f"{task} has no map_index {map_index}: it is not mapped (or not expanded "
            "yet); leave map_index out"
        )
    if map_index is None or map_index == UNMAPPED:
        return f"{task} is mapped into {count} instances: name one with map_index (0 to {top})"
    return f"{task} has no map_index {map_index}; its instances are 0 to {top}"


def task_instance_list(
    run: WorkflowRun,
    *,
    task_id: str | None = None,
    map_index: int | None = None,
    state: str | None = None,
) -> QuerySet[TaskInstance]:
    """The run's instances, narrowed by task, map index and state, each with its last
    try's error (`last_error`)."""
    last = TaskAttempt.objects.filter(task_instance=OuterRef("pk")).order_by("-try_number")
    qs = TaskInstance.objects.filter(run=run).annotate(
        last_error=Subquery(last.values("error")[:1])
    )
    if task_id:
        qs = qs.filter(task_id=task_id)
    if map_index is not None:
        qs = qs.filter(map_index=map_index)
    if state:
        qs = qs.filter(state=state)
    return qs


def last_error(ti: TaskInstance) -> str:
    """The instance's last try's error ('' when it has none): `task_instance_list`
    annotated it, or it is read."""
    if hasattr(ti, "last_error"):
        return str(ti.last_error or "")
    last = ti.attempts.order_by("-try_number").values_list("error", flat=True).first()
    return last or ""


@dataclass(frozen=True)
class TaskGroup:
    """A task of a run seen whole: its state as its downstream sees it, and for a mapped
    task how many instances it has (0 before it is expanded) and how many per state.
    `instance_id`: its single instance's id when it has one (unmapped or not expanded);
    `started_at` the earliest start, `ended_at` the last end once all have finished."""

    task_id: str
    task_type: str
    state: str
    mapped: bool
    count: int
    states: dict[str, int]
    instance_id: int | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None


def task_groups(run: WorkflowRun, *, task_id: str | None = None) -> list[TaskGroup]:
    """Each task of the run once, upstream before downstream (ties by name), from one
    statement grouped by task and state (however many instances a task fans out to)."""
    qs = TaskInstance.objects.filter(run=run)
    if task_id is not None:
        qs = qs.filter(task_id=task_id)
    rows = (
        qs.order_by()
        .values_list("task_id", "task_type", "state")
        .annotate(
            n=Count("id"),
            first=Min("id"),
            top=Max("map_index"),
            started=Min("started_at"),
            ended=Max("ended_at"),
        )
    )
    graph = graph_for(run.version_id)
    mapped_tasks = graph.mapped
    order = {
        t: i
        for i, t in enumerate(
            dag.topological_order({t: graph.upstream[t] for t in sorted(graph.upstream)})
        )
    }
    folded: dict[str, dict[str, Any]] = {}
    for task, task_type, state, n, first, top, started, ended in rows:
        group = folded.setdefault(
            task,
            {"type": task_type, "states": {}, "first": first, "top": top, "start": [], "end": []},
        )
        group["states"][state] = n
        group["first"] = min(group["first"], first)
        group["top"] = max(group["top"], top)
        group["start"] += [started] if started is not None else []
        group["end"] += [ended] if ended is not None else []
    groups = []
    for task, group in sorted(
        folded.items(), key=lambda item: (order.get(item[0], len(order)), item[0])
    ):
        states, expanded = group["states"], group["top"] >= 0
        count = sum(states.values())
        state = task_group_state(states)
        finished = state in TaskInstance.FINISHED
        groups.append(
            TaskGroup(
                task_id=task,
                task_type=group["type"],
                state=state,
                mapped=task in mapped_tasks or expanded,
                count=count if expanded else 0,
                states=dict(states) if expanded else {},
                instance_id=None if expanded else group["first"],
                started_at=min(group["start"], default=None),
                ended_at=max(group["end"], default=None) if finished else None,
            )
        )
    return groups


def task_summaries(run_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Task instance count per state of each run, in one grouped statement: what a page of
    runs shows beside each one."""
    rows = (
        TaskInstance.objects.filter(run_id__in=list(run_ids))
        .order_by()
        .values_list("run_id", "state")
        .annotate(n=Count("id"))
    )
    found: dict[int, dict[str, int]] = {rid: {} for rid in run_ids}
    for run_id, state, n in rows:
        found[run_id][state] = n
    return found


def runs_page_list(*, workflow: str | None = None, **filters: Any) -> QuerySet[WorkflowRun]:
    """`run_list` for a page of runs: the workflow is found by its name first (a scalar
    subquery), so the planner walks the (tenant, workflow, -id) index newest first however
    many runs the workflow has; and the versions' specs are left unread (a list shows none)."""
    runs = run_list(**filters).defer("version__spec")
    if workflow:
        live = Workflow.objects.filter(name=workflow, deleted_at__isnull=True).values("id")[:1]
        runs = runs.filter(workflow_id=Subquery(live))
    return runs


def run_neighbours(run: WorkflowRun) -> tuple[int | None, int | None]:
    """The ids of the workflow's runs just before and just after this one, in one
    statement (two index probes of (tenant, workflow, -id))."""
    same = WorkflowRun.objects.filter(workflow_id=run.workflow_id).order_by()
    before = same.filter(pk__lt=run.pk).order_by("-pk").values("pk")[:1]
    after = same.filter(pk__gt=run.pk).order_by("pk").values("pk")[:1]
    found = (
        WorkflowRun.objects.filter(pk=run.pk)
        .annotate(before=Subquery(before), after=Subquery(after))
        .values_list("before", "after")
        .first()
    )
    return found if found is not None else (None, None)


def run_task_instances(run: WorkflowRun) -> list[TaskInstance]:
    """The run's task instances, in the order they were created."""
    return list(TaskInstance.objects.filter(run=run).order_by("id"))


def run_attempts(run: WorkflowRun) -> list[TaskAttempt]:
    """Every try of the run's tasks, by task and try, with only what a run's page shows of
    them (not the rendered task or what it used)."""
    return list(
        TaskAttempt.objects.filter(task_instance__run=run)
        .only("task_instance_id", "try_number", "state", "started_at", "ended_at", "log_bytes")
        .order_by("task_instance_id", "try_number")
    )


def task_attempts(ti: TaskInstance) -> list[TaskAttempt]:
    """The task instance's tries, first to last."""
    return list(TaskAttempt.objects.filter(task_instance=ti).order_by("try_number"))


# --- what an operation would do (the portal's confirmations) ------------------------------
# Previews of runs.operations, read without a lock: the operation itself decides again.
# `upstream` is the run's version graph's (runs.graph.graph_for(run.version_id).upstream).

_RETRIED = (
    TaskInstance.State.FAILED,
    TaskInstance.State.UPSTREAM_FAILED,
    TaskInstance.State.CANCELLED,
)
_SETTLED_WITHOUT_RUNNING = (TaskInstance.State.UPSTREAM_FAILED, TaskInstance.State.SKIPPED)


def _instance_states(run: WorkflowRun) -> dict[str, tuple[str, int]]:
    """Each task's (state, try number): a mapped task's as its group (task_group_state),
    with the most tries any of its instances had."""
    rows = TaskInstance.objects.filter(run=run).values_list("task_id", "state", "try_number")
    counts: dict[str, dict[str, int]] = {}
    tries: dict[str, int] = {}
    for task_id, state, try_number in rows:
        counts.setdefault(task_id, {})
        counts[task_id][state] = counts[task_id].get(state, 0) + 1
        tries[task_id] = max(tries.get(task_id, 0), try_number)
    return {t: (task_group_state(c), tries[t]) for t, c in counts.items()}


def tasks_to_retry(run: WorkflowRun, upstream: dag.Graph) -> list[str]:
    """What `retry` would run again now: the failed, upstream_failed and cancelled tasks
    and every task downstream of them, sorted."""
    failed = {t for t, (state, _) in _instance_states(run).items() if state in _RETRIED}
    if not failed:
        return []
    return sorted(failed | dag.downstream_of(upstream, failed))


def tasks_to_clear(
    run: WorkflowRun, task_id: str, upstream: dag.Graph
) -> tuple[list[str], list[str]]:
    """What `clear` with `downstream` would add to the task: the finished tasks downstream
    of it, and those it leaves alone as they have not finished (both sorted). The task's
    own instance is the caller's (get_task_instance)."""
    states = _instance_states(run)
    below = dag.downstream_of(upstream, [task_id])
    finished = sorted(t for t in below if states.get(t, ("", 0))[0] in TaskInstance.FINISHED)
    return finished, sorted(below - set(finished))


def tasks_decided_again(run: WorkflowRun, task_id: str, upstream: dag.Graph) -> list[str]:
    """The tasks downstream of `task_id` that its trigger rules settled without running
    them (upstream_failed or skipped, never tried): marking the task success or failed
    decides them again."""
    states = _instance_states(run)
    return sorted(
        t
        for t in dag.downstream_of(upstream, [task_id])
        if t in states and states[t][0] in _SETTLED_WITHOUT_RUNNING and states[t][1] == 0
    )


def get_attempt(
    run_id: int, task_id: str, try_number: int, map_index: int = UNMAPPED
) -> TaskAttempt:
    """One try of a run's task (of one index of a mapped task), with its task instance, in
    one statement: what a followed log asks about every second."""
    found = None
    if 0 < run_id <= _MAX_ID and 0 < try_number <= _MAX_ID:
        found = (
            TaskAttempt.objects.filter(
                task_instance__run_id=run_id,
                task_instance__task_id=task_id,
                task_instance__map_index=map_index,
                try_number=try_number,
            )
            .select_related("task_instance")
            .first()
        )
    if found is None:
        name = instance_key(task_id, map_index)
        raise NotFound(f"run {run_id} has no try {try_number} of task {name!r}")
    return found


def run_progress(run_id: int) -> tuple[str, list[tuple[str, str, int, int]]]:
    """The run's state and each instance's (instance_key, state, try number, attempts), in
    one small grouped statement: what a live view compares to see whether anything moved."""
    rows = (
        list(
            WorkflowRun.objects.filter(pk=run_id)
            .order_by()
            .values_list(
                "state",
                "task_instances__task_id",
                "task_instances__map_index",
                "task_instances__state",
                "task_instances__try_number",
            )
            .annotate(attempts=Count("task_instances__attempts"))
        )
        if 0 < run_id <= _MAX_ID
        else []
    )
    if not rows:
        raise NotFound(f"run {run_id!r} not found")
    tasks = sorted((instance_key(t, i), s, n, a) for _, t, i, s, n, a in rows if t is not None)
    return rows[0][0], tasks


LOG_PAGE_MAX = 1024 * 1024


def read_log(
    ti: TaskInstance, *, try_number: int | None, offset: int, limit: int
) -> dict[str, Any]:
    """Bytes [offset, offset + limit) of one attempt's log, cut back to a whole UTF-8
    character (a first character longer than `limit` comes whole), so a client that asks
    again from `next_offset` gets every byte once."""
    attempts = TaskAttempt.objects.filter(task_instance=ti)
    attempt = (
        attempts.filter(try_number=try_number).first()
        if try_number is not None
        else attempts.order_by("-try_number").first()
    )
    if attempt is None:
        if try_number is not None:
            raise NotFound(f"task {ti.task_id!r} has no try {try_number}")
        return {
            "try_number": None,
            "offset": offset,
            "next_offset": offset,
            "text": "",
            "running": ti.state not in TaskInstance.FINISHED,
            "total_bytes": 0,
            "cap_bytes": settings.TASK_LOG_MAX_BYTES,
        }
    end = offset + limit
    logs = TaskLog.objects.filter(attempt=attempt)
    first = logs.filter(offset__lte=offset).order_by("-offset").first()
    chunks = ([first] if first else []) + list(
        logs.filter(offset__gt=offset, offset__lt=end + _CHARACTER_REST).order_by("offset")
    )
    data = b""
    start = chunks[0].offset if chunks else offset
    for chunk in chunks:
        data += bytes(chunk.data)
    data = data[offset - start : end + _CHARACTER_REST - start]
    running = attempt.state == TaskAttempt.State.RUNNING
    # Fewer bytes than asked for (with the look-ahead): the log ends within this page.
    complete = not running and len(data) < limit + _CHARACTER_REST
    text, used = _whole_characters(data, limit, complete=complete)
    return {
        "try_number": attempt.try_number,
        "offset": offset,
        "next_offset": offset + used,
        "text": text,
        "running": running,
        "total_bytes": attempt.log_bytes,
        "cap_bytes": settings.TASK_LOG_MAX_BYTES,
    }


# Bytes read past the limit: the rest of a character the limit cuts (UTF-8: up to 4 bytes).
_CHARACTER_REST = 3


def _whole_characters(data: bytes, limit: int, *, complete: bool) -> tuple[str, int]:
    """Decode the first `limit` bytes of `data` (which holds up to 3 more). A character cut
    by the limit is left for the next page, unless it is the page's first: then it comes
    whole, or a reader asking for fewer bytes than one character would never advance. Bad
    bytes read as U+FFFD, and so does a character cut by the end of a `complete` log."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    used = min(limit, len(data))
    text = decoder.decode(data[:used], final=complete and used == len(data))
    while not text and used < len(data):
        used += 1
        text = decoder.decode(data[used - 1 : used], final=complete and used == len(data))
    held: bytes = decoder.getstate()[0]
    return text, used - len(held)
