"""Executing one claimed try on a worker: render the task's templates, run it (shell and
python in a child process), keep the lease alive, stream the log, report the outcome."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from jinja2 import TemplateError

from orchestrator import tenancy
from runs import engine
from runs.container_task import run_container
from runs.credentials import Credentials
from runs.graph import graph_for
from runs.http_task import run_http
from runs.masking import Masker
from runs.models import TaskAttempt, TaskInstance, TaskLog
from runs.process import OutputSink, ProcessResult, run_process
from runs.resilience import DB_ERRORS, with_db_retry
from runs.sandbox import (
    HOME,
    TMP,
    Limits,
    Sandbox,
    SandboxUnavailable,
    Workspace,
    interpreter,
    limit_hint,
    uid_for,
)
from runs.sensors import run_wait_for
from runs.skip import SKIP_EXIT_CODE
from runs.sql_task import run_sql
from runs.taskapi import Attempt, TaskFailed
from workflows import dag
from workflows.templating import environment

__all__ = ["execute"]

logger = logging.getLogger(__name__)
NATIVE_FIELDS = {"kwargs", "parameters", "json"}  # whole-expression templates keep their type
NOT_RENDERED = {"type", "kind", "depends_on", "trigger_rule", "description", "until"}
WORKER = socket.gethostname()


# --- templates ---------------------------------------------------------------------------


def _render_value(value: Any, context: dict[str, Any], native: bool) -> Any:
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        text = value.strip()
        env = environment()
        if native and text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
            return env.compile_expression(text[2:-2].strip())(**context)
        return env.from_string(value).render(**context)
    if isinstance(value, list):
        return [_render_value(v, context, native) for v in value]
    if isinstance(value, dict):
        return {k: _render_value(v, context, native) for k, v in value.items()}
    return value


def render_task(task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value if key in NOT_RENDERED else _render_value(value, context, key in NATIVE_FIELDS)
        for key, value in task.items()
    }


def build_context(ti: TaskInstance) -> dict[str, Any]:
    run = ti.run
    graph = graph_for(run.version_id)
    upstream = dag.upstream_of(graph.upstream, ti.task_id)
    results = dict(
        TaskInstance.objects.dangerously_unscoped()
        .filter(run=run, task_id__in=upstream)
        .values_list("task_id", "result")
    )
    logical = run.logical_date
    return {
        "run": {
            "id": run.pk,
            "logical_date": logical,
            "trigger_source": run.trigger_source,
            "workflow": run.workflow.name,
            "version": graph.number,
        },
        "params": run.params,
        "ds": logical.date().isoformat(),
        "logical_date": logical,
        "data_interval_start": run.data_interval_start or logical,
        "data_interval_end": run.data_interval_end or logical,
        "tasks": {tid: {"result": results.get(tid)} for tid in upstream},
        "try_number": ti.try_number,
        "task": {"id": ti.task_id, "type": ti.task_type},
    }


# --- executors -----------------------------------------------------------------------------


SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _base_env(a: Attempt, sandboxed: bool) -> dict[str, str]:
    """A clean environment: nothing of the worker's (database URL, keys) reaches a task."""
    return {
        "PATH": SANDBOX_PATH if sandboxed else os.environ.get("PATH", SANDBOX_PATH),
        "LANG": "C.UTF-8",
        "HOME": HOME if sandboxed else tempfile.gettempdir(),
        "ORCHESTRATOR_RUN_ID": str(a.ti.run_id),
        "ORCHESTRATOR_TASK_ID": a.ti.task_id,
        "ORCHESTRATOR_TRY_NUMBER": str(a.ti.try_number),
        "ORCHESTRATOR_LOGICAL_DATE": a.context["logical_date"].isoformat(),
    }


def task_limits(policy: dict[str, Any], requested: dict[str, Any] | None) -> Limits:
    """The tenant's limits (its policy over the platform's defaults), lowered where the
    task's `rlimits` ask for less."""
    values: dict[str, int | None] = {}
    for key, cap in tenancy.task_limits(policy).items():
        asked = (requested or {}).get(key)
        values[key] = min(v for v in (cap, asked) if v) if (cap or asked) else None
    return Limits(**values)


@functools.cache
def _project_packages() -> tuple[str, ...]:
    base = settings.BASE_DIR
    return tuple(sorted(p.name for p in base.iterdir() if (p / "__init__.py").is_file()))


@functools.cache
def _runner_modules(allowed: tuple[str, ...]) -> tuple[str, ...]:
    """Host files of the python runner and of the allow-listed modules of `runs`."""
    here = os.path.dirname(__file__)
    names = ["__init__", "pyrunner", "skip"]
    for module in allowed:
        if module.startswith("runs."):
            names.append(module.removeprefix("runs.").replace(".", os.sep))
    return tuple(os.path.join(here, f"{name}.py") for name in dict.fromkeys(names))


def task_sandbox(a: Attempt, *, python: bool) -> Sandbox | None:
    """The sandbox of the attempt's tenant, or None where the platform turned it off."""
    if settings.TASK_SANDBOX == "off":
        return None
    policy = _policy(a)
    return Sandbox(
        uid=uid_for(a.ti.tenant_id, settings.TASK_SANDBOX_UIDS),
        network=tenancy.task_network(policy),
        limits=task_limits(policy, a.task.get("rlimits")),
        bwrap=settings.TASK_SANDBOX_BWRAP,
        root=Path(settings.TASK_SANDBOX_ROOT or Path(tempfile.gettempdir()) / "orc-sandbox"),
        readonly=tuple(settings.TASK_SANDBOX_READONLY_PATHS),
        mounts=tuple(tenancy.task_mounts(policy)),
        python=python,
        runner_modules=_runner_modules(tuple(settings.PYTHON_TASK_MODULES)) if python else (),
        hidden_packages=_project_packages() if python else (),
    )


def _workspace(sandbox: Sandbox | None, cwd: str | None) -> Workspace | None:
    """The sandbox's private directories, with a relative `cwd` made inside them."""
    if sandbox is None:
        return None
    if cwd and not cwd.startswith("/") and ".." in Path(cwd).parts:
        raise TaskFailed(f"cwd {cwd!r}: a relative working directory may not contain '..'")
    space = sandbox.workspace()
    if cwd and not cwd.startswith("/"):
        path = space.work / cwd
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            for part in [path, *path.parents]:
                if part == space.work:
                    break
                os.chown(part, sandbox.uid, sandbox.gid)
    return space


def _last_line_result(output: bytes) -> Any:
    """A shell task's result: its last line of output, as JSON when it parses."""
    lines = [line for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return None
    try:
        return json.loads(lines[-1])
    except ValueError:
        return lines[-1]


def _process_outcome(
    result: ProcessResult,
    a: Attempt,
    skip_code: int,
    timeout: int | None,
    value: Callable[[], Any],
    limits: Limits | None = None,
) -> engine.Outcome:
    if result.error:
        return engine.Outcome("failed", error=result.error)
    if result.timed_out:
        return engine.Outcome(
            "failed",
            exit_code=result.exit_code,
            error=f"timed out after {timeout}s; the process group was killed",
        )
    if result.cancelled:
        return engine.Outcome(
            "failed",
            exit_code=result.exit_code,
            error="stopped: the attempt was cancelled or lost its lease",
        )
    if result.exit_code == 0:
        return engine.Outcome("success", exit_code=0, result=value())
    if result.exit_code == skip_code:
        return engine.Outcome("skipped", exit_code=result.exit_code)
    code = result.exit_code
    how = f"killed by signal {signal.Signals(-code).name}" if code and code < 0 else ""
    error = how or f"exit code {code}"
    tail = a.sink.tail if isinstance(a.sink, _Tail) else b""
    hint = limit_hint(limits, exit_code=code, tail=tail) if limits else None
    return engine.Outcome("failed", exit_code=code, error=f"{error}: {hint}" if hint else error)


class _Tail(OutputSink):
    """The attempt's sink: remembers the last bytes written (for the shell result) and masks
    secret values on the way out. A value split between two drains is caught by holding the
    last raw bytes back until the next drain (or the final one), and never cutting inside
    a value."""

    def __init__(self, limit: int, masker: Masker | None = None) -> None:
        super().__init__(limit)
        self.tail = b""
        self.masker = masker or Masker()
        self._held = b""

    def write(self, data: bytes) -> None:
        if self.kept + len(data) > self.limit:
            # The cap cuts this chunk: mask it first, or half a value would be kept.
            data = self.masker.mask_bytes(data)
        super().write(data)
        self.tail = (self.tail + data)[-settings.TASK_RESULT_MAX_BYTES :]

    def drain(self, final: bool = False) -> bytes:
        raw = self._held + super().drain()
        cut = len(raw) if final else max(0, len(raw) - max(0, self.masker.longest - 1))
        cut = self.masker.safe_cut(raw, cut)
        self._held = raw[cut:]
        return self.masker.mask_bytes(raw[:cut])

    def unread(self, data: bytes) -> None:
        super().unread(data + self._held)
        self._held = b""


def run_shell(a: Attempt) -> engine.Outcome:
    task = a.task
    command = task["command"]
    argv = (
        ["/bin/sh", "-c", command if isinstance(command, str) else " ".join(command)]
        if (task.get("shell"))
        else list(command)
    )
    timeout = task.get("timeout")
    sandbox = _sandbox_or_fail(a, python=False)
    limits = sandbox.limits if sandbox else task_limits(_policy(a), task.get("rlimits"))
    space = _workspace(sandbox, task.get("cwd"))
    try:
        with _scratch(sandbox) as scratch:
            result = run_process(
                argv,
                env={**_base_env(a, sandbox is not None), **task.get("env", {})},
                cwd=task.get("cwd") if sandbox else task.get("cwd") or scratch,
                timeout=timeout,
                sink=a.sink,
                should_stop=a.should_stop,
                rlimits=limits.as_dict(),
                sandbox=sandbox,
                workspace=space,
            )
    finally:
        if space is not None:
            space.remove()
    tail = a.sink.tail if isinstance(a.sink, _Tail) else b""
    return _process_outcome(
        result,
        a,
        task.get("skip_exit_code", SKIP_EXIT_CODE),
        timeout,
        lambda: _last_line_result(tail),
        limits,
    )


def _scratch(sandbox: Sandbox | None) -> contextlib.AbstractContextManager[str]:
    """An unsandboxed task's scratch directory; a sandboxed one has its workspace."""
    if sandbox is not None:
        return contextlib.nullcontext("")
    return tempfile.TemporaryDirectory(prefix="orc-task-")


def _policy(a: Attempt) -> dict[str, Any]:
    policy: dict[str, Any] = a.ti.run.workflow.tenant.policy
    return policy


def _sandbox_or_fail(a: Attempt, *, python: bool) -> Sandbox | None:
    try:
        return task_sandbox(a, python=python)
    except SandboxUnavailable as exc:
        raise TaskFailed(f"the task sandbox is unavailable: {exc}") from None


RESULT_NAME = "orchestrator-result.json"


def run_python(a: Attempt) -> engine.Outcome:
    task = a.task
    module = task["callable"].partition(":")[0]
    allowed: list[str] = settings.PYTHON_TASK_MODULES
    if not any(module == p or module.startswith(p + ".") for p in allowed):
        return engine.Outcome(
            "failed",
            error=(
                f"module {module!r} is not allowed for python tasks; allowed: {', '.join(allowed)} "
                "(platform setting PYTHON_TASK_MODULES)"
            ),
            retryable=False,
        )
    timeout = task.get("timeout")
    payload = json.dumps(
        {"callable": task["callable"], "kwargs": task.get("kwargs", {}), "allowed": allowed},
        default=str,
    ).encode()
    sandbox = _sandbox_or_fail(a, python=True)
    limits = sandbox.limits if sandbox else task_limits(_policy(a), None)
    space = _workspace(sandbox, None)
    try:
        with _scratch(sandbox) as scratch:
            if sandbox is not None and space is not None:
                result_file = str(space.tmp / RESULT_NAME)
                env = {
                    **_base_env(a, True),
                    "ORCHESTRATOR_RESULT_FILE": f"{TMP}/{RESULT_NAME}",
                    "PYTHONPATH": sandbox.python_path(),
                    "PYTHONNOUSERSITE": "1",
                }
                argv = [interpreter(), "-m", "runs.pyrunner"]
            else:
                result_file = os.path.join(scratch, RESULT_NAME)
                env = {
                    **_base_env(a, False),
                    "ORCHESTRATOR_RESULT_FILE": result_file,
                    "PYTHONPATH": os.pathsep.join(sys.path),
                }
                argv = [sys.executable, "-m", "runs.pyrunner"]
            result = run_process(
                argv,
                env=env,
                cwd=None if sandbox else scratch,
                timeout=timeout,
                sink=a.sink,
                should_stop=a.should_stop,
                stdin=payload,
                rlimits=limits.as_dict(),
                sandbox=sandbox,
                workspace=space,
            )
            return _process_outcome(
                result, a, SKIP_EXIT_CODE, timeout, lambda: _read_result(result_file), limits
            )
    finally:
        if space is not None:
            space.remove()


def _read_result(path: str) -> Any:
    """The task's JSON result. The file is the task's (its uid wrote it): never follow a
    link it may have put there instead, never read more than the cap allows."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise TaskFailed(f"the task left no readable result file: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TaskFailed("the task's result is not a regular file")
        data = handle.read(settings.TASK_RESULT_MAX_BYTES * 4 + 1)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise TaskFailed(f"the task's result is not JSON: {exc}") from None


def run_noop(a: Attempt) -> engine.Outcome:
    return engine.Outcome("success")


EXECUTORS: dict[str, Callable[[Attempt], engine.Outcome]] = {
    "noop": run_noop,
    "shell": run_shell,
    "python": run_python,
    "http": run_http,
    "sql": run_sql,
    "container": run_container,
    "wait_for": run_wait_for,
}


# --- the attempt's life ----------------------------------------------------------------


class Heartbeat(threading.Thread):
    """Renews the lease and writes new output to the log while the attempt runs. When the
    lease cannot be renewed (cancelled, or expired and given away), it asks the executor to
    stop, which kills the child's process group."""

    def __init__(self, attempt_id: int, tenant_id: int, sink: OutputSink) -> None:
        super().__init__(name=f"heartbeat-{attempt_id}", daemon=True)
        self.attempt_id, self.tenant_id, self.sink = attempt_id, tenant_id, sink
        self.lost = threading.Event()
        self.done = threading.Event()
        self.offset = 0

    def run(self) -> None:
        # Renewing also notices a cancelled attempt, so do it at least every second.
        interval = max(0.2, min(1.0, settings.TASK_LEASE_SECONDS / 3))
        renewed = time.monotonic()
        waited = 0.0
        try:
            while not self.done.wait(settings.TASK_LOG_FLUSH_SECONDS):
                waited += settings.TASK_LOG_FLUSH_SECONDS
                try:
                    self.flush()
                    if waited >= interval:
                        waited = 0.0
                        if not engine.renew_lease(self.attempt_id):
                            self.lost.set()
                        renewed = time.monotonic()
                except Exception as exc:
                    # The database is away (or anything else went wrong): keep the output
                    # and try again; the thread must not die, or the lease would lapse under
                    # a live task. Past the lease, the reconciler may give the try away, so
                    # stop the task ourselves: two copies of a try must not run side by side.
                    if isinstance(exc, DB_ERRORS):
                        logger.warning("heartbeat of attempt %s: %s", self.attempt_id, exc)
                    else:
                        logger.exception("heartbeat of attempt %s failed", self.attempt_id)
                    connection.close()
                    if time.monotonic() - renewed >= settings.TASK_LEASE_SECONDS:
                        self.lost.set()
        finally:
            connection.close()

    def flush(self, final: bool = False) -> None:
        sink = self.sink
        data = sink.drain(final) if isinstance(sink, _Tail) else sink.drain()
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
        self.done.set()
        if self.is_alive():
            self.join()
        with_db_retry(self.flush, True)


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
    _run_on(started, queue)
    return done


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
    masker = Masker()
    sink = _Tail(settings.TASK_LOG_MAX_BYTES, masker)
    heartbeat = Heartbeat(attempt.pk, attempt.tenant_id, sink)
    credentials = Credentials(attempt.tenant_id, masker)
    rendered: dict[str, Any] = {}
    claimed: TaskAttempt | None = None
    try:
        ti, task, context = with_db_retry(_prepare, ti_id)
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
            outcome = engine.Outcome("failed", error=f"template error: {exc}")
        except TaskFailed as exc:
            outcome = engine.Outcome("failed", error=str(exc), retryable=exc.retryable)
        outcome = _check_result(outcome)
    except Exception:  # an executor bug must still end the attempt, with the traceback
        outcome = engine.Outcome("failed", error=f"internal error:\n{traceback.format_exc()}")
    finally:
        heartbeat.stop()
    # Whatever a secret reached is recorded masked: the rendered task, the result, the error.
    return with_db_retry(
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


def _finish_keeping_next(
    attempt_id: int, claimed: TaskAttempt | None, outcome: engine.Outcome
) -> str | None:
    with engine.keeping_next():
        return engine.finish(attempt_id, outcome, claimed)


def _prepare(ti_id: int) -> tuple[TaskInstance, dict[str, Any], dict[str, Any]]:
    """The instance, its task as plain data (with the effective timeout), its context."""
    ti = (
        TaskInstance.objects.dangerously_unscoped()
        .select_related("run", "run__workflow", "run__workflow__tenant")
        .get(pk=ti_id)
    )
    graph = graph_for(ti.run.version_id)
    # Python mode: durations as seconds (JSON mode would format them as "1m30s").
    task = graph.task(ti.task_id).model_dump(by_alias=True, exclude_none=True)
    task["timeout"] = graph.effective(ti.task_id).timeout
    # A noop renders nothing: spare it the query for its upstream results.
    return ti, task, build_context(ti) if ti.task_type != "noop" else {}


def _check_result(outcome: engine.Outcome) -> engine.Outcome:
    if outcome.result is None:
        return outcome
    size = len(json.dumps(outcome.result))
    cap = settings.TASK_RESULT_MAX_BYTES
    if size > cap:
        return engine.Outcome(
            "failed",
            exit_code=outcome.exit_code,
            error=f"the result is {size} bytes of JSON; the cap is {cap}",
        )
    return outcome
