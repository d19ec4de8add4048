"""Batched tries of tasks that take no time (noop): dispatched several per message,
claimed in one statement and recorded in one transaction per run. Run in-process on
PostgreSQL (messages go to the in-memory broker, which nobody reads)."""

from __future__ import annotations

from typing import Any

import pytest

from runs import engine as engine_module
from runs import worker
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine


@pytest.fixture
def engine(transactional_db: None, settings: Any) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0  # one step at a time: the test drives the run
    return Engine(workers=None)


def _fan(engine: Engine, width: int, leaf: dict[str, Any] | None = None) -> WorkflowRun:
    leaves = {f"l{i:02d}": {"type": "noop", "depends_on": ["root"]} for i in range(width)}
    if leaf:
        leaves["odd"] = {**leaf, "depends_on": ["root"]}
    workflow = engine.apply(
        {
            "name": "fan",
            "max_active_tasks": 100,
            "tasks": {
                "root": {"type": "noop"},
                **leaves,
                "join": {"type": "noop", "depends_on": list(leaves)},
            },
        }
    )
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
        root = TaskInstance.objects.get(run=run, task_id="root")
    worker.execute(root.pk, 1)
    engine_module.take_kept()  # what the root's worker would have run next: left queued
    return run


def _queued(engine: Engine, run: WorkflowRun) -> list[tuple[int, int]]:
    with engine.scope():
        return list(
            TaskInstance.objects.filter(run=run, state="queued")
            .exclude(task_id="join")
            .values_list("id", "try_number")
        )


def test_a_batch_is_claimed_and_recorded_together_and_moves_the_join(engine: Engine) -> None:
    run = _fan(engine, 20)
    tries = _queued(engine, run)
    assert len(tries) == 20
    assert worker.execute_batch(tries[:12]) == 12
    with engine.scope():
        assert TaskInstance.objects.get(run=run, task_id="join").pending_upstreams == 8
    assert worker.execute_batch(tries[12:]) == 8
    with engine.scope():
        join = TaskInstance.objects.get(run=run, task_id="join")
        assert (join.state, join.pending_upstreams) == ("queued", 0)
        assert TaskAttempt.objects.filter(task_instance__run=run, state="success").count() == 21
    worker.execute(join.pk, 1)
    run.refresh_from_db()
    assert run.state == "success"


def test_a_batch_delivered_twice_runs_each_try_once(engine: Engine) -> None:
    run = _fan(engine, 5)
    tries = _queued(engine, run)
    assert worker.execute_batch(tries) == 5
    assert worker.execute_batch(tries) == 0
    with engine.scope():
        assert TaskAttempt.objects.filter(task_instance__run=run).count() == 6  # root + 5


def test_a_batch_leaves_out_what_is_not_an_inline_task(engine: Engine) -> None:
    run = _fan(engine, 3, leaf={"type": "shell", "command": ["true"]})
    tries = _queued(engine, run)
    assert len(tries) == 4
    assert worker.execute_batch(tries) == 3  # the shell task is not run in a batch
    with engine.scope():
        assert TaskInstance.objects.get(run=run, task_id="odd").state == "queued"


def test_a_retried_claim_finds_the_attempts_of_its_token(engine: Engine) -> None:
    run = _fan(engine, 4)
    tries = _queued(engine, run)
    first = engine_module.claim_many(tries, worker="w", pid=1, token="t" * 32)
    again = engine_module.claim_many(tries, worker="w", pid=1, token="t" * 32)
    assert sorted(a.pk for a in again) == sorted(a.pk for a in first)
    assert engine_module.claim_many(tries, worker="w", pid=1, token="u" * 32) == []


def test_dispatch_sends_noops_in_batches_and_others_alone(
    engine: Engine, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, Any]] = []

    def record(name: str, args: Any, **options: Any) -> None:
        sent.append((name, args))

    from orchestrator.celery import app

    monkeypatch.setattr(app, "send_task", record)
    _fan(engine, 40, leaf={"type": "shell", "command": ["true"]})
    batches = [args[0] for name, args in sent if name == "runs.execute_batch"]
    singles = [args for name, args in sent if name == "runs.execute"]
    # Alone: the root (a batch of one), the shell task, and the noop that the root's
    # worker kept to run next but sent, its continuation time (0 here) being up.
    assert len(singles) == 3
    # The other noops: in messages of at least BATCH_MIN (25), so 2, not 8 of 5.
    assert sum(len(b) for b in batches) == 39
    assert sorted(len(b) for b in batches) == [14, 25]


def test_a_large_dispatch_spreads_its_noops_over_several_messages(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, Any]] = []
    from orchestrator.celery import app

    monkeypatch.setattr(app, "send_task", lambda name, args, **o: sent.append((name, args)))
    _fan(engine, 100)  # max_active_tasks 100: the root's end queues 100 noops
    batches = [args[0] for name, args in sent if name == "runs.execute_batch"]
    # One was kept by the root's worker (then sent alone); the others in 4 messages.
    assert [len(b) for b in batches] == [25, 25, 25, 24]


def test_the_app_publishes_again_after_a_test_pointed_it_at_other_workers() -> None:
    """publishing_to closes the broker pools it leaves: none may be handed out again."""
    from types import SimpleNamespace

    from orchestrator.celery import app
    from tests.workers import publishing_to

    def acquire() -> None:
        with app.producer_or_acquire() as producer:
            assert producer is not None

    acquire()  # the default broker's pool exists
    elsewhere = SimpleNamespace(redis_url=app.conf.broker_url, prefix="orc-test-elsewhere:")
    with publishing_to(elsewhere):  # type: ignore[arg-type]
        acquire()
    acquire()  # "Acquire on closed pool" when the closed default pool came back
