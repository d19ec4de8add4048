"""A worker's side of one try: claim it, render the task's templates, run its type's
executor (runs.tasktypes.registry), keep the lease alive, stream the log, record the
outcome with the engine, and run on the next try of a chain it made ready."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from jinja2 import TemplateError

from orchestrator import tracing
from orchestrator.logs import log_context
from runs import engine
from runs.graph import VersionGraph, graph_for
from runs.models import TaskAttempt, TaskInstance, TaskLog, WorkflowRun
from runs.tasktypes.contract import Attempt, Outcome, TaskFailed
from runs.tasktypes.credentials import Credentials
from runs.tasktypes.local import TaskOutput
from runs.tasktypes.masking import Masker
from runs.tasktypes.process import OutputSink
from runs.tasktypes.registry import EXECUTORS
from runs.tasktypes.resilience import DB_ERRORS, with_db_retry
from workflows import dag
from workflows.templating import render_value

__all__ = ["build_context", "execute", "execute_batch", "name_worker", "render_task"]

logger = logging.getLogger(__name__)
NATIVE_FIELDS = {"kwargs", "parameters", "json"}  # whole-expression templates keep their type
NOT_RENDERED = {
    "type",
    "kind",
    "depends_on",
    "trigger_rule",
    "description",
    "until",
    "code",
    "inlets",
    "outlets",
    "map",  # the engine's own (runs.engine.mapping, runs.engine.slots)
    "pool",
    "pool_slots",
    "concurrency",
}
# What an attempt records as its `worker`: the Celery node's name (worker1@host) once the
# worker starts (`name_worker`), so that two workers of one host tell apart; the host's
# name where no worker started (the embedded mode's first steps, scripts).
WORKER = socket.gethostname()


def name_worker(nodename: str) -> None:
    """Record `nodename` on the attempts this process (and the pool processes it forks
    after this) claims."""
    global WORKER
    WORKER = nodename[:255] or WORKER


# --- templates ---------------------------------------------------------------------------


def render_task(task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value
        if key in NOT_RENDERED
        else render_value(value, context, native=key in NATIVE_FIELDS)
        for key, value in task.items()
    }


def build_context(ti: TaskInstance) -> dict[str, Any]:
    run = ti.run
    graph = graph_for(run.version_id)
    upstream = dag.upstream_of(graph.upstream, ti.task_id)
    results: dict[str, Any] = {}
    if graph.reads_results(ti.task_id):  # a query spared for the tasks whose templates don't
        # A mapped upstream's result is the list of its instances' results, in index order.
        results = engine.results_of(run, graph, upstream)
    # What the engine's own templates read, and what only a worker's may.
    context = engine.engine_context(run, graph, {tid: results.get(tid) for tid in upstream})
    context["run"]["workflow"] = run.workflow.name
    if (spec := graph.task(ti.task_id).map) is not None:
        context.update({"map_index": ti.map_index, spec.as_: ti.map_value})
    context["try_number"] = ti.try_number
    context["task"] = {"id": ti.task_id, "type": ti.task_type}
    return context


# --- the attempt's life ----------------------------------------------------------------


class Heartbeat:
    """Renews the lease and writes new output to the log while the attempt runs. When the
    lease cannot be renewed (cancelled, or expired and given away), it asks the executor to
    stop, which kills the child's process group.

    Not a thread of its own: the worker process's one LEASE_KEEPER beats every running
    attempt's heartbeat, so a task that ends within a log flush interval (most shell
    tasks) costs no thread start and no statement until its final flush."""

    def __init__(self, attempt_id: int, tenant_id: int, sink: OutputSink) -> None:
        self.attempt_id, self.tenant_id, self.sink = attempt_id, tenant_id, sink
        self.lost = threading.Event()
        self.offset = 0
        self.renewed = time.monotonic()
        self._lock = threading.Lock()  # one flush at a time: the keeper's or the final one
        self._stopped = False
        self._started = False

    def start(self) -> None:
        self.renewed = time.monotonic()
        self._started = True
        LEASE_KEEPER.add(self)

    def beat(self) -> None:
        """The keeper's visit: flush the output; renew the lease when it is due. Renewing
        also notices a cancelled attempt, so it happens at least every second."""
        interval = max(0.2, min(1.0, settings.TASK_LEASE_SECONDS / 3))
        with self._lock:
            if self._stopped:
                return
            try:
                self._flush()
                # Due up to one keeper tick early, so that it is never more than `interval`.
                if time.monotonic() - self.renewed >= interval - settings.TASK_LOG_FLUSH_SECONDS:
                    if not engine.renew_lease(self.attempt_id):
                        self.lost.set()
                    self.renewed = time.monotonic()
            except Exception as exc:
                # The database is away (or anything else went wrong): keep the output and
                # try again at the next beat. Past the lease, the reconciler may give the
                # try away, so stop the task ourselves: two copies of a try must not run
                # side by side.
                if isinstance(exc, DB_ERRORS):
                    logger.warning("heartbeat of attempt %s: %s", self.attempt_id, exc)
                else:
                    logger.exception("heartbeat of attempt %s failed", self.attempt_id)
                connection.close()
                if time.monotonic() - self.renewed >= settings.TASK_LEASE_SECONDS:
                    self.lost.set()

    def flush(self, final: bool = False) -> None:
        with self._lock:
            self._flush(final)

    def _flush(self, final: bool = False) -> None:
        sink = self.sink
        data = sink.drain(final) if isinstance(sink, TaskOutput) else sink.drain()
        if not data:
            return
        try:
            with transaction.atomic():
                TaskLog.objects.dangerously_unscoped().create(
                    tenant_id=self.tenant_id,
                    attempt_id=self.attempt_id,
                    offset=self.offset,
                    data=data,
                )
                TaskAttempt.objects.dangerously_unscoped().filter(pk=self.attempt_id).update(
                    log_bytes=self.offset + len(data)
                )
        except BaseException:
            self.sink.unread(data)
            raise
        self.offset += len(data)

    def stop(self) -> None:
        if self._started:
            LEASE_KEEPER.discard(self)
            with self._lock:  # waits for a beat under way
                self._stopped = True
        with_db_retry(self.flush, True)


class LeaseKeeper:
    """The worker process's one heartbeat thread: every TASK_LOG_FLUSH_SECONDS it beats
    the heartbeats of the attempts running in this process. Started at the first attempt
    that needs it, in the process that runs it (a prefork child, never its parent);
    between attempts it holds no database connection."""

    def __init__(self) -> None:
        self._beating: set[Heartbeat] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pid = 0

    def add(self, heartbeat: Heartbeat) -> None:
        with self._lock:
            self._beating.add(heartbeat)
            if self._pid != os.getpid():  # first use here (a forked child starts its own)
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="lease-keeper", daemon=True).start()
            self._wake.notify()

    def discard(self, heartbeat: Heartbeat) -> None:
        with self._lock:
            self._beating.discard(heartbeat)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._beating:
                    self._wake.wait()
            time.sleep(settings.TASK_LOG_FLUSH_SECONDS)
            with self._lock:
                beating = list(self._beating)
            for heartbeat in beating:
                heartbeat.beat()
            with self._lock:
                idle = not self._beating
            if idle:
                connection.close()  # this thread's own; reopened by the next long attempt


LEASE_KEEPER = LeaseKeeper()


def execute(ti_id: int, try_number: int, queue: str | None = None) -> str | None:
    """Run one try if it is still ours to run; returns the instance's new state. Then, for
    up to CONTINUE_SECONDS, run the next try its end made ready (see engine.keeping_next)
    instead of sending it through the broker; past that, send it. `queue`: the queue the
    message came from; a next try of another queue (another tenant's pool) is sent there,
    never run here. None: no message (a caller running tries in-process)."""
    close_old_connections()
    started = time.monotonic()
    state = _execute_one(ti_id, try_number)
    _run_on(started, queue)
    return state


def _run_on(started: float, queue: str | None) -> None:
    """Run the tries kept back for this worker (engine.keeping_next), one after another,
    while they belong to `queue` (engine.take_kept sends any other to its own) and until
    CONTINUE_SECONDS have passed since the delivery began; then send the last one."""
    while time.monotonic() - started < settings.TASK_CONTINUE_SECONDS:
        kept = engine.take_kept(queue)
        if kept is None:
            return
        _execute_one(*kept)
    engine.release_kept()  # autocommit here: goes out at once, to its queue


def execute_batch(tries: list[tuple[int, int]], queue: str | None = None) -> int:
    """Tries of INLINE_TYPES (noop): claimed in one statement, recorded in one transaction
    per run. Then, as `execute` does, run on with what their end made ready (`queue`: the
    one the message came from)."""
    close_old_connections()
    started = time.monotonic()
    token = uuid.uuid4().hex
    claimed = with_db_retry(engine.claim_many, tries, worker=WORKER, pid=os.getpid(), token=token)
    if not claimed:
        return 0
    done = with_db_retry(_finish_inline_keeping_next, [a.pk for a in claimed])
    if tracing.enabled():
        _inline_spans(claimed)
    _run_on(started, queue)
    return done


def _inline_spans(claimed: list[TaskAttempt]) -> None:
    """Each inline try (recorded in a batch) as a span of its run, from its claim to now."""
    rows = (
        TaskAttempt.objects.dangerously_unscoped()
        .filter(pk__in=[a.pk for a in claimed])
        .values_list(
            "started_at",
            "state",
            "try_number",
            "task_instance__task_id",
            "task_instance__task_type",
            "task_instance__run_id",
            "task_instance__run__trace_context",
            "task_instance__run__workflow__name",
        )
    )
    for started_at, state, try_number, task_id, task_type, run_id, traceparent, workflow in rows:
        attributes = {
            "orc.workflow": workflow,
            "orc.run": run_id,
            "orc.task": task_id,
            "orc.task_type": task_type,
            "orc.try": try_number,
        }
        start = int(started_at.timestamp() * 1e9)
        with tracing.span(f"task {task_id}", traceparent, attributes, start_time=start) as span:
            tracing.end_state(span, state)


def _finish_inline_keeping_next(attempt_ids: list[int]) -> int:
    with engine.keeping_next():
        return engine.finish_inline(attempt_ids)


def _execute_one(ti_id: int, try_number: int) -> str | None:
    token = uuid.uuid4().hex
    attempt = with_db_retry(
        engine.claim, ti_id, try_number, worker=WORKER, pid=os.getpid(), token=token
    )
    if attempt is None:
        logger.info("task instance %s try %s is not queued any more; skipping", ti_id, try_number)
        return None
    claimed_ti = attempt.task_instance
    recent = _recent_runs.get(claimed_ti.run_id)
    if claimed_ti.task_type == "noop" and recent is not None:
        return _record_noop(attempt, recent[1])
    with contextlib.ExitStack() as about:  # the try's log context, once known
        masker = Masker()
        sink = TaskOutput(settings.TASK_LOG_MAX_BYTES, masker)
        heartbeat = Heartbeat(attempt.pk, attempt.tenant_id, sink)
        credentials = Credentials(attempt.tenant_id, masker)
        rendered: dict[str, Any] = {}
        claimed: TaskAttempt | None = None
        attempt_span = None
        try:
            ti, task, context = with_db_retry(_prepare, ti_id, claimed_ti)
            about.enter_context(
                log_context(
                    tenant=ti.run.workflow.tenant.slug,
                    workflow=ti.run.workflow.name,
                    run=ti.run_id,
                    task=ti.task_id,
                    try_=attempt.try_number,
                )
            )
            attempt_span = about.enter_context(
                tracing.span(
                    f"task {ti.task_id}",
                    ti.run.trace_context,
                    {
                        "orc.tenant": ti.run.workflow.tenant.slug,
                        "orc.workflow": ti.run.workflow.name,
                        "orc.run": ti.run_id,
                        "orc.task": ti.task_id,
                        "orc.task_type": ti.task_type,
                        "orc.try": attempt.try_number,
                    },
                )
            )
            if ti.try_number == attempt.try_number:  # read after the claim: finish needs no more
                attempt.task_instance = ti
                claimed = attempt
            if ti.task_type != "noop":  # nothing to keep alive or to log: done in microseconds
                heartbeat.start()
            try:
                if context:
                    context.update(credentials.template_names())
                    rendered = render_task(task, context)
                else:
                    rendered = task
                policy = ti.run.workflow.tenant.policy
                a = Attempt(
                    attempt.pk,
                    ti,
                    rendered,
                    context,
                    sink,
                    heartbeat.lost.is_set,
                    connection=credentials.connection,
                    allowed_hosts=tuple(policy.get("http_allowed_hosts", [])),
                    sql_allowed_hosts=tuple(policy.get("sql_allowed_hosts", [])),
                )
                outcome = EXECUTORS[ti.task_type](a)
            except TemplateError as exc:
                outcome = Outcome("failed", error=f"template error: {exc}")
            except TaskFailed as exc:
                outcome = Outcome("failed", error=str(exc), retryable=exc.retryable)
            outcome = _check_result(outcome)
        except Exception:  # an executor bug must still end the attempt, with the traceback
            outcome = Outcome("failed", error=f"internal error:\n{traceback.format_exc()}")
        finally:
            heartbeat.stop()
        # Whatever a secret reached is recorded masked: the rendered task, the result, the error.
        state = with_db_retry(
            _finish_keeping_next,
            attempt.pk,
            claimed,
            dataclasses.replace(
                outcome,
                error=masker.mask(outcome.error),
                result=masker.mask_json(outcome.result),
                rendered=masker.mask_json(rendered),
                uses=credentials.uses,
            ),
        )
        tracing.end_state(attempt_span, outcome.state, outcome.error)
        logger.info("attempt %s ended %s", attempt.pk, outcome.state)
        return state


def _finish_keeping_next(
    attempt_id: int, claimed: TaskAttempt | None, outcome: Outcome
) -> str | None:
    with engine.keeping_next():
        return engine.finish(attempt_id, outcome, claimed)


def _record_noop(attempt: TaskAttempt, run: WorkflowRun) -> str | None:
    """A noop of a run this process has worked on (`_recent_runs`, however long ago: it
    reads only what never changes in a run's life): recorded as `_execute_one` would,
    without reading its instance, run and workflow again (the claim handed the instance
    back; the rest is the run as read then)."""
    ti = attempt.task_instance
    tenant, workflow = run.workflow.tenant.slug, run.workflow.name
    with (
        log_context(
            tenant=tenant,
            workflow=workflow,
            run=ti.run_id,
            task=ti.task_id,
            try_=attempt.try_number,
        ),
        tracing.span(
            f"task {ti.task_id}",
            run.trace_context,
            {
                "orc.tenant": tenant,
                "orc.workflow": workflow,
                "orc.run": ti.run_id,
                "orc.task": ti.task_id,
                "orc.task_type": ti.task_type,
                "orc.try": attempt.try_number,
            },
        ) as span,
    ):
        rendered = _task_data(graph_for(run.version_id), ti)
        outcome = Outcome("success", rendered=rendered)
        state = with_db_retry(_finish_keeping_next, attempt.pk, attempt, outcome)
        tracing.end_state(span, outcome.state, outcome.error)
        logger.info("attempt %s ended %s", attempt.pk, outcome.state)
        return state


def _task_data(graph: VersionGraph, ti: TaskInstance) -> dict[str, Any]:
    """The instance's task as plain data, with its effective timeout."""
    # Python mode: durations as seconds (JSON mode would format them as "1m30s").
    task = graph.task(ti.task_id).model_dump(by_alias=True, exclude_none=True)
    task["timeout"] = graph.effective(ti.task_id).timeout
    return task


# A run's row, with its workflow and tenant, as read for one of its tries serves the tries
# of the same run this process claims in the next RUN_REUSE_SECONDS: a chain's steps are
# spared the read (a 4-table join whose ORM instances cost about 2 ms per try on the 2-core
# machine). What a try reads of them does not change in a run's life (its parameters,
# dates, event, trace context; the workflow's name), but the tenant's policy may: a change
# reaches the tries that start at most RUN_REUSE_SECONDS later.
RUN_REUSE_SECONDS = 2.0
# run id -> (read at, the run with its workflow and tenant), the last RECENT_RUNS runs read
_recent_runs: dict[int, tuple[float, WorkflowRun]] = {}
RECENT_RUNS = 256


def _prepare(
    ti_id: int, claimed: TaskInstance | None = None
) -> tuple[TaskInstance, dict[str, Any], dict[str, Any]]:
    """The instance, its task as plain data (with the effective timeout), its context.
    `claimed`: the instance as the claim returned it, which serves when its run was read
    lately (`RUN_REUSE_SECONDS`)."""
    recent = _recent_runs.get(claimed.run_id) if claimed is not None else None
    if (
        claimed is not None
        and recent is not None
        and time.monotonic() - recent[0] < RUN_REUSE_SECONDS
        and recent[1].tenant_id == claimed.tenant_id
    ):
        ti = claimed
        ti.run = recent[1]
    else:
        ti = (
            TaskInstance.objects.dangerously_unscoped()
            .select_related("run", "run__workflow", "run__workflow__tenant")
            .get(pk=ti_id)
        )
        if len(_recent_runs) >= RECENT_RUNS:
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                _recent_runs.pop(next(iter(_recent_runs)))
        _recent_runs[ti.run_id] = (time.monotonic(), ti.run)
    graph = graph_for(ti.run.version_id)
    task = _task_data(graph, ti)
    if ti.task_type == "python":
        # The package pinned at apply ({package, version, digest}), not the spec's request.
        task.pop("code", None)
        if (pinned := graph.code.get(ti.task_id)) is not None:
            task["code"] = pinned
    # A noop renders nothing: spare it the query for its upstream results.
    return ti, task, build_context(ti) if ti.task_type != "noop" else {}


def _check_result(outcome: Outcome) -> Outcome:
    if outcome.result is None:
        return outcome
    size = len(json.dumps(outcome.result))
    cap = settings.TASK_RESULT_MAX_BYTES
    if size > cap:
        return Outcome(
            "failed",
            exit_code=outcome.exit_code,
            error=f"the result is {size} bytes of JSON; the cap is {cap}",
        )
    return outcome
