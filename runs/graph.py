"""A version's spec as the engine needs it: parsed once per process (versions never
change), with upstream/downstream maps and each task's effective settings."""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from typing import Any

from runs.trigger_rules import Counts, evaluate
from workflows import dag
from workflows.models import WorkflowVersion
from workflows.spec import TaskBase, WorkflowSpec

__all__ = ["Effective", "VersionGraph", "graph_for"]

DEFAULT_RETRY_DELAY = 30
DEFAULT_MAX_RETRY_DELAY = 3600


@dataclass(frozen=True)
class Effective:
    """A task's settings after the workflow's `defaults` are applied."""

    retries: int
    retry_delay: int
    retry_backoff: float
    max_retry_delay: int
    timeout: int | None
    priority: int


@dataclass(frozen=True)
class VersionGraph:
    spec: WorkflowSpec
    number: int
    upstream: dict[str, list[str]]
    downstream: dict[str, list[str]]
    # The team code pinned when the version was applied: {task id: {package, version, digest}}.
    code: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    def task(self, task_id: str) -> TaskBase:
        return self.spec.tasks[task_id]  # type: ignore[return-value]

    def effective(self, task_id: str) -> Effective:
        task = self.task(task_id)
        defaults = self.spec.defaults

        def pick(name: str, fallback: Any) -> Any:
            value = getattr(task, name)
            if value is None and defaults is not None:
                value = getattr(defaults, name)
            return fallback if value is None else value

        return Effective(
            retries=pick("retries", 0),
            retry_delay=pick("retry_delay", DEFAULT_RETRY_DELAY),
            retry_backoff=pick("retry_backoff", 1.0),
            max_retry_delay=pick("max_retry_delay", DEFAULT_MAX_RETRY_DELAY),
            timeout=pick("timeout", None),
            priority=pick("priority", 0),
        )

    def reads_results(self, task_id: str) -> bool:
        """Whether any template of the task may read its upstreams' results (names
        `tasks`): if none does, the worker need not query them. Conservative: a mere
        mention counts."""
        return task_id in self._result_readers

    @functools.cached_property
    def _result_readers(self) -> frozenset[str]:
        readers = set()
        for task_id, task in self.spec.tasks.items():
            text = json.dumps(task.model_dump(mode="json", exclude={"description"}))
            if "tasks" in text and ("{{" in text or "{%" in text):
                readers.add(task_id)
        return frozenset(readers)

    @functools.cached_property
    def mapped(self) -> frozenset[str]:
        """Tasks that fan out at run time (`map`)."""
        return frozenset(t for t, task in self.spec.tasks.items() if task.map is not None)

    @functools.cached_property
    def constrained(self) -> frozenset[str]:
        """Tasks that take shared slots (a `pool`, a `concurrency` key): they are queued by
        runs.engine.slots across runs, never by a run's own dispatch."""
        return frozenset(
            t
            for t, task in self.spec.tasks.items()
            if task.pool is not None or task.concurrency is not None
        )

    @functools.cached_property
    def starts_plainly(self) -> bool:
        """Whether a new run's first wave may be queued as it is inserted: none of it fans
        out or waits for shared slots."""
        return not (self.mapped | self.constrained).intersection(self.first_wave)

    @functools.cached_property
    def first_wave(self) -> list[str]:
        """The tasks a new run starts at once (roots, and `always` whatever its upstreams),
        highest priority first and in spec order among equals: the order dispatch queues
        them in. With no upstream finished yet, no trigger rule settles a task early
        (tests/runs/test_trigger_rules.py holds that), so the rest simply wait."""
        order = {task_id: index for index, task_id in enumerate(self.spec.tasks)}
        ready = [
            task_id
            for task_id, ups in self.upstream.items()
            if evaluate(self.task(task_id).trigger_rule, Counts(len(ups))) == "run"
        ]
        return sorted(ready, key=lambda t: (-self.effective(t).priority, order[t]))


_cache: dict[int, VersionGraph] = {}
_CACHE_SIZE = 512


def graph_for(version_id: int) -> VersionGraph:
    """The graph of a WorkflowVersion, cached by id: a version's spec never changes, so it
    is read from the database (and parsed) once per process."""
    graph = _cache.get(version_id)
    if graph is None:
        raw, number, code = (
            WorkflowVersion.objects.dangerously_unscoped()
            .filter(pk=version_id)
            .values_list("spec", "number", "code")
            .get()
        )
        spec = WorkflowSpec.model_validate(raw)
        upstream = {tid: list(task.depends_on) for tid, task in spec.tasks.items()}
        graph = VersionGraph(
            spec=spec,
            number=number,
            upstream=upstream,
            downstream=dag.downstream(upstream),
            code=code or {},
        )
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[version_id] = graph
    return graph
