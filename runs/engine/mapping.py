"""Dynamic fan-out (`map` in the spec). A mapped task starts as one instance with
map_index -1; when its trigger rule lets it run, `expand` renders `map.over` and turns it
into one instance per element (map_index 0..n-1, the element in `map_value`). An empty
list skips it; a list longer than the spec's `max` or the tenant's `max_map_length`, or
anything that is not a list, fails it with a message.

Everything that looks at a task's state as its downstream sees it (trigger rules, a run's
retry) sees a mapped task as its group (runs.trigger_rules.group_state)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.utils import timezone
from jinja2 import TemplateError

from orchestrator.tenancy import max_map_length
from runs.engine import events
from runs.graph import VersionGraph
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.trigger_rules import group_state
from workflows.templating import render_value

__all__ = [
    "Expansion",
    "engine_context",
    "expand",
    "finished_group",
    "results_of",
]

logger = logging.getLogger(__name__)
TI = TaskInstance.State


def results_of(run: WorkflowRun, graph: VersionGraph, task_ids: Iterable[str]) -> dict[str, Any]:
    """The results of these tasks of the run: a mapped task's as the list of its
    instances' results in index order (an unexpanded or skipped one: an empty list)."""
    task_ids = list(task_ids)
    rows = (
        TaskInstance.objects.dangerously_unscoped()
        .filter(run=run, task_id__in=task_ids)
        .order_by("map_index")
        .values_list("task_id", "map_index", "result")
    )
    results: dict[str, Any] = {t: [] for t in task_ids if t in graph.mapped}
    for task_id, map_index, result in rows:
        if task_id in graph.mapped:
            if map_index >= 0:
                results[task_id].append(result)
        else:
            results[task_id] = result
    return results


def engine_context(
    run: WorkflowRun, graph: VersionGraph, results: dict[str, Any]
) -> dict[str, Any]:
    """What the engine's own templates (`map.over`, `concurrency.key`) may read:
    workflows.templating.ENGINE_CONTEXT_NAMES."""
    logical = run.logical_date
    return {
        "run": {
            "id": run.pk,
            "logical_date": logical,
            "trigger_source": run.trigger_source,
            "version": graph.number,
        },
        "params": run.params,
        "ds": logical.date().isoformat(),
        "logical_date": logical,
        "data_interval_start": run.data_interval_start or logical,
        "data_interval_end": run.data_interval_end or logical,
        "tasks": {task_id: {"result": result} for task_id, result in results.items()},
        "event": run.event,
    }


class Expansion:
    """What `expand` did with a mapped instance: `ready` instance ids (the fan-out),
    or the state it `settled` in (skipped: an empty list; failed: see the attempt)."""

    def __init__(self, ready: list[int], settled: str | None = None) -> None:
        self.ready, self.settled = ready, settled


def expand(run: WorkflowRun, graph: VersionGraph, ti: TaskInstance) -> Expansion:
    """Fan the (pending, map_index -1) instance out over its rendered `map.over`."""
    spec = graph.task(ti.task_id).map
    assert spec is not None
    try:
        items = _items(run, graph, ti.task_id, spec.over)
    except (TemplateError, TypeError, ValueError) as exc:
        return _fail(run, graph, ti, f"map.over: {exc}")
    cap = min(spec.max, max_map_length(run.tenant.policy))
    if len(items) > cap:
        source = "the spec's map.max" if cap == spec.max else "the tenant's max_map_length"
        return _fail(
            run,
            graph,
            ti,
            f"map.over gave {len(items)} elements, more than {cap} ({source}); raise the "
            "cap or split the list",
        )
    if not items:
        TaskInstance.objects.dangerously_unscoped().filter(pk=ti.pk, state=TI.PENDING).update(
            state=TI.SKIPPED, ended_at=timezone.now()
        )
        return Expansion([], TI.SKIPPED)
    TaskInstance.objects.dangerously_unscoped().filter(pk=ti.pk).update(
        map_index=0, map_value=items[0]
    )
    more = TaskInstance.objects.dangerously_unscoped().bulk_create(
        [
            TaskInstance(
                tenant_id=ti.tenant_id,
                run_id=ti.run_id,
                task_id=ti.task_id,
                task_type=ti.task_type,
                max_tries=ti.max_tries,
                priority=ti.priority,
                pool=ti.pool,
                pool_slots=ti.pool_slots,
                map_index=index,
                map_value=item,
            )
            for index, item in enumerate(items[1:], start=1)
        ]
    )
    return Expansion([ti.pk, *(m.pk for m in more)])


def _items(run: WorkflowRun, graph: VersionGraph, task_id: str, over: Any) -> list[Any]:
    if isinstance(over, list):
        return over
    upstream = graph.upstream[task_id] if graph.reads_results(task_id) else []
    rendered = render_value(
        over, engine_context(run, graph, results_of(run, graph, upstream)), native=True
    )
    if not isinstance(rendered, list):
        raise TypeError(f"rendered to {type(rendered).__name__}, expected a list")
    return rendered


def _fail(run: WorkflowRun, graph: VersionGraph, ti: TaskInstance, error: str) -> Expansion:
    """Fail the mapped task without a worker: one attempt records why, for people and
    alerts."""
    now = timezone.now()
    if (
        TaskInstance.objects.dangerously_unscoped()
        .filter(pk=ti.pk, state=TI.PENDING)
        .update(state=TI.FAILED, try_number=ti.try_number + 1, ended_at=now)
        != 1
    ):
        return Expansion([], None)
    ti.try_number += 1
    attempt = TaskAttempt.objects.dangerously_unscoped().create(
        tenant_id=ti.tenant_id,
        task_instance=ti,
        try_number=ti.try_number,
        state=TaskAttempt.State.FAILED,
        worker="engine",
        started_at=now,
        ended_at=now,
        error=error,
    )
    events.task_failed(
        run, graph, ti, attempt_id=attempt.pk, error=error, exit_code=None, next_try_at=None
    )
    logger.info("mapped task %s of run %s failed: %s", ti.task_id, run.pk, error)
    return Expansion([], TI.FAILED)


def finished_group(run_id: int, task_id: str) -> str | None:
    """A mapped task's group state once all its instances have finished, else None. Read
    under the run's lock: the last instance to finish is the one that sees it."""
    states = list(
        TaskInstance.objects.dangerously_unscoped()
        .filter(run_id=run_id, task_id=task_id)
        .values_list("state", flat=True)
    )
    state = group_state(states)
    return state if state in TaskInstance.FINISHED else None
