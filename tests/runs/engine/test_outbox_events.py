"""The engine writes its events (the outbox) in the transaction of the change: one per run
end, per failed try, with the documented payload, and nothing when nothing changed."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from runs import engine as engine_module
from runs import worker
from runs.engine import events
from runs.models import Event, TaskInstance, WorkflowRun
from runs.services import cancel_run, trigger_run
from tests.runs.engine.helpers import Engine

pytestmark = pytest.mark.django_db(transaction=True)

FAILING = {
    "name": "flaky",
    "tasks": {
        "extract": {"type": "noop"},
        "load": {
            "type": "python",
            "callable": "runs.library:fail",
            "kwargs": {"message": "no such table: sales\nline two\nline three"},
            "depends_on": ["extract"],
            "retries": 1,
            "retry_delay": 0,
        },
    },
}


@pytest.fixture
def engine(transactional_db: None, settings: Any) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    settings.PUBLIC_URL = "https://orc.example.com/"
    return Engine(workers=None)


def drain(engine: Engine, run: WorkflowRun) -> WorkflowRun:
    """Run the run's tries in this process until it ends (retries made due by the
    reconciler, as on a real deployment)."""
    for _ in range(50):
        with engine.scope():
            queued = list(TaskInstance.objects.filter(run=run, state="queued"))
        for ti in queued:
            worker.execute(ti.pk, ti.try_number)
        engine_module.reconcile()
        run.refresh_from_db()
        if run.state in WorkflowRun.FINISHED:
            return run
    raise AssertionError(f"run {run.pk} did not end: {run.state}")


def trigger(engine: Engine, spec: dict[str, Any]) -> WorkflowRun:
    workflow = engine.apply(spec)
    with engine.scope():
        return trigger_run(actor=engine.actor, workflow=workflow).run


def events_of(run: WorkflowRun) -> list[Event]:
    return list(Event.objects.dangerously_unscoped().filter(run=run).order_by("id"))


def test_it_writes_run_succeeded_with_the_run_and_its_link(engine: Engine) -> None:
    run = drain(engine, trigger(engine, {"name": "ok", "tasks": {"a": {"type": "noop"}}}))
    [event] = events_of(run)
    assert event.type == "run.succeeded"
    assert event.tenant_id == engine.tenant.pk
    assert event.workflow_id == run.workflow_id
    assert event.routed_at is None  # nobody routes it in this test
    assert event.data["tenant"] == "eng"
    assert event.data["workflow"] == "ok"
    assert event.data["run"]["id"] == run.pk
    assert event.data["run"]["state"] == "success"
    assert event.data["run"]["ended_at"] == run.ended_at.isoformat()
    assert event.data["run"]["duration_seconds"] >= 0
    assert event.data["url"] == f"https://orc.example.com/t/eng/runs/{run.pk}/"
    assert "failed_tasks" not in event.data


def test_a_failing_task_gives_retrying_then_failed_then_run_failed(engine: Engine) -> None:
    run = drain(engine, trigger(engine, FAILING))
    assert run.state == "failed"
    kinds = [(e.type, e.task_id) for e in events_of(run)]
    assert kinds == [
        ("task.retrying", "load"),
        ("task.failed", "load"),
        ("run.failed", ""),
    ]
    retrying, failed, ended = events_of(run)
    assert retrying.data["task"]["try_number"] == 1
    assert retrying.data["task"]["next_try_at"] is not None
    assert failed.data["task"]["try_number"] == 2
    assert failed.data["task"]["next_try_at"] is None
    assert failed.data["task"]["error"] == "exit code 1"
    # What went wrong is at the end of the log (the traceback), not in the exit code.
    assert failed.data["task"]["log_tail"].endswith(
        "RuntimeError: no such table: sales\nline two\nline three"
    )
    [shown] = ended.data["failed_tasks"]
    assert shown["task_id"] == "load"
    assert shown["try_number"] == 2
    assert "RuntimeError: no such table: sales" in shown["log_tail"]


def test_the_first_success_after_a_failure_is_also_run_recovered(engine: Engine) -> None:
    drain(engine, trigger(engine, FAILING))
    fixed = {**FAILING, "tasks": {"extract": {"type": "noop"}}}
    first = drain(engine, trigger(engine, fixed))
    second = drain(engine, trigger(engine, fixed))
    assert [e.type for e in events_of(first)] == ["run.succeeded", "run.recovered"]
    assert [e.type for e in events_of(second)] == ["run.succeeded"]


def test_a_cancelled_run_gives_run_cancelled_once(engine: Engine) -> None:
    run = trigger(engine, {"name": "slow", "tasks": {"a": {"type": "noop"}}})
    with engine.scope():
        cancel_run(actor=engine.actor, run=run)
        with pytest.raises(Exception):  # noqa: B017, PT011 (cancelling twice is refused)
            cancel_run(actor=engine.actor, run=run)
    [event] = events_of(run)
    assert event.type == "run.cancelled"
    assert event.data["run"]["state"] == "cancelled"
    assert event.data["reason"] == "cancelled by request"


@transaction.atomic
def emit_then_fail(tenant_id: int, run_id: int) -> None:
    events.emit(tenant_id=tenant_id, type="run.failed", data={}, run_id=run_id)
    raise RuntimeError("rolled back")


def test_an_event_exists_only_if_its_change_committed(engine: Engine) -> None:
    heard: list[list[int]] = []
    stop = events.on_events(heard.append)
    try:
        run = trigger(engine, {"name": "ok", "tasks": {"a": {"type": "noop"}}})
        with pytest.raises(RuntimeError, match="rolled back"):
            emit_then_fail(engine.tenant.pk, run.pk)
        assert events_of(run) == []
        assert heard == []  # consumers hear only of committed events
        with transaction.atomic():
            event = events.emit(
                tenant_id=engine.tenant.pk, type="run.failed", data={}, run_id=run.pk
            )
        assert heard == [[event.pk]]
    finally:
        stop()


def test_the_cloudevent_has_the_required_attributes(engine: Engine) -> None:
    run = drain(engine, trigger(engine, FAILING))
    failed = events_of(run)[1]
    envelope = events.cloudevent(failed, "eng")
    assert envelope["specversion"] == "1.0"
    assert envelope["id"] == str(failed.uid)
    assert envelope["source"] == "/tenants/eng/workflows/flaky"
    assert envelope["type"] == "task.failed"
    assert envelope["subject"] == f"runs/{run.pk}/tasks/load"
    assert envelope["time"] == failed.time.isoformat()
    assert envelope["datacontenttype"] == "application/json"
    assert envelope["data"] == failed.data
