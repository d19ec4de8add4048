"""Where a tenant's tries are sent (its policy's `task_queue`, else the shared queue), on
every path: trigger, a queued run started later, the next try of a chain, continuation
from a message of another queue, and the reconciler's re-send with its backlog judged per
queue. In-process on PostgreSQL, messages into Redis under a key prefix that no worker
consumes, so each queue's messages can be counted."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.db import transaction
from django.utils import timezone

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs import engine as engine_module
from runs import worker
from runs.engine import repair
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.harness import set_policy
from tests.runs.engine.helpers import Engine
from tests.workers import Workers, publishing_to
from workflows.services import apply_workflow

pytestmark = pytest.mark.slow

QUEUE = "tenant-acme"
SHARED = "tasks"
CHAIN = {
    "name": "chain",
    "tasks": {
        "a": {"type": "noop"},
        "b": {"type": "noop", "depends_on": ["a"]},
        "c": {"type": "noop", "depends_on": ["b"]},
    },
}


@pytest.fixture
def broker(transactional_db: None) -> Iterator[Workers]:
    """A Redis key prefix of the test's own and no workers: nothing consumes what is sent."""
    pool = Workers()
    with publishing_to(pool):
        yield pool
    pool.stop()  # no processes: removes the prefix's keys


@pytest.fixture
def shared(broker: Workers) -> Engine:
    """Tenant `eng`, on the shared queue."""
    return Engine(workers=None)


@pytest.fixture
def acme(shared: Engine) -> Tenant:
    """Tenant `acme`, with a dedicated pool (task_queue)."""
    tenant = services.create_tenant(
        actor=Actor.cli(), slug="acme", name="Acme", owner=shared.user, quotas={}
    )
    return set_queue(tenant, QUEUE)


def set_queue(tenant: Tenant, queue: str | None) -> Tenant:
    return set_policy(tenant, task_queue=queue)


def apply(engine: Engine, tenant: Tenant, spec: dict[str, Any]) -> Any:
    with tenant_scope([tenant]):
        return apply_workflow(actor=engine.actor, tenant=tenant, data=spec).workflow


def trigger(engine: Engine, workflow: Any) -> WorkflowRun:
    with tenant_scope([workflow.tenant]):
        return trigger_run(actor=engine.actor, workflow=workflow).run


def instance(run: WorkflowRun, task_id: str) -> TaskInstance:
    return TaskInstance.objects.dangerously_unscoped().get(run=run, task_id=task_id)


def waiting(*queues: str) -> list[int]:
    return [repair.broker_backlog(queue) for queue in queues]


def test_it_sends_each_tenants_tries_to_its_own_queue(shared: Engine, acme: Tenant) -> None:
    fan = {
        "name": "fan",
        "max_active_tasks": 20,
        "tasks": {
            **{f"n{i}": {"type": "noop"} for i in range(16)},  # one runs.execute_batch
            "s": {"type": "shell", "command": ["true"]},  # alone: runs.execute
        },
    }
    trigger(shared, apply(shared, shared.tenant, fan))
    assert waiting(SHARED, QUEUE) == [2, 0]  # a batch of the 16 noops, one shell try
    trigger(shared, apply(shared, acme, fan))
    assert waiting(SHARED, QUEUE) == [2, 2]


def test_a_run_started_later_sends_to_the_queue_of_its_tenant(shared: Engine, acme: Tenant) -> None:
    workflow = apply(shared, acme, CHAIN)
    with tenant_scope([acme]), transaction.atomic():  # queued, not started by the trigger
        run = engine_module.create_run(workflow=workflow, params={}, source="api", user_id=None)
    assert waiting(SHARED, QUEUE) == [0, 0]
    assert engine_module.start_queued_runs(workflow.pk) == [run.pk]
    assert waiting(SHARED, QUEUE) == [0, 1]


def test_a_worker_runs_on_the_next_try_of_its_own_queue(
    shared: Engine, acme: Tenant, settings: Any
) -> None:
    settings.TASK_CONTINUE_SECONDS = 60
    run = trigger(shared, apply(shared, acme, CHAIN))
    assert waiting(QUEUE) == [1]  # a's message (this test runs a in its place)
    worker.execute(instance(run, "a").pk, 1, queue=QUEUE)
    run.refresh_from_db()
    assert run.state == "success"  # b and c ran on in this process
    assert waiting(SHARED, QUEUE) == [0, 1]  # nothing more was sent


@pytest.mark.parametrize(("before", "after"), [(None, QUEUE), (QUEUE, None)])
def test_a_kept_try_of_another_queue_is_sent_there_not_run(
    shared: Engine, acme: Tenant, settings: Any, before: str | None, after: str | None
) -> None:
    """The policy changes while `a` runs on a worker of the old queue: `b`, queued when `a`
    ends, belongs to the new queue, so that worker sends it there instead of running it."""
    settings.TASK_CONTINUE_SECONDS = 60
    acme = set_queue(acme, before)
    run = trigger(shared, apply(shared, acme, CHAIN))
    old, new = before or SHARED, after or SHARED
    assert waiting(old, new) == [1, 0]
    set_queue(acme, after)
    worker.execute(instance(run, "a").pk, 1, queue=old)
    b = instance(run, "b")
    assert (b.state, b.try_number) == ("queued", 1)
    assert not TaskAttempt.objects.dangerously_unscoped().filter(task_instance=b).exists()
    assert waiting(old, new) == [1, 1]  # a's message (never consumed here), and b's
    worker.execute(b.pk, 1, queue=new)  # b's worker runs it, and c after it
    run.refresh_from_db()
    assert run.state == "success"


def test_a_message_says_which_queue_it_came_from(broker: Workers) -> None:
    """What a worker compares a kept try's queue with (runs.tasks): the routing key of the
    message it got, which is the name of the queue for the shared queue and a tenant's."""
    from orchestrator.celery import app

    engine_module.send((1, 1), queue=SHARED)
    engine_module.send((2, 1), queue=QUEUE)
    with app.connection_for_read() as conn:
        for queue in (SHARED, QUEUE):
            message = conn.default_channel.basic_get(queue, no_ack=True)
            assert message is not None
            assert message.delivery_info["routing_key"] == queue


def test_a_message_from_an_unknown_queue_runs_nothing_on(
    shared: Engine, acme: Tenant, settings: Any
) -> None:
    settings.TASK_CONTINUE_SECONDS = 60
    run = trigger(shared, apply(shared, acme, CHAIN))
    worker.execute(instance(run, "a").pk, 1, queue="")
    assert instance(run, "b").state == "queued"
    assert waiting(QUEUE) == [2]


def test_the_reconciler_judges_each_queues_backlog_on_its_own(
    shared: Engine, acme: Tenant, broker: Workers, settings: Any
) -> None:
    settings.QUEUED_RESEND_AFTER_SECONDS = 60
    settings.QUEUED_RESEND_MAX_SECONDS = 1800
    single = {"name": "single", "tasks": {"t": {"type": "shell", "command": ["true"]}}}
    ours = trigger(shared, apply(shared, shared.tenant, single))
    theirs = trigger(shared, apply(shared, acme, single))
    assert waiting(SHARED, QUEUE) == [1, 1]
    assert repair.broker_lost_data()  # the first look leaves the marker: no loss after
    two_minutes_ago = timezone.now() - dt.timedelta(minutes=2)
    TaskInstance.objects.dangerously_unscoped().update(queued_at=two_minutes_ago)

    # Both queues have a backlog: waiting two minutes is no sign of a lost message.
    assert repair.resend_lost_messages() == 0
    # The dedicated pool drained its queue (the message was lost, say): only its try is
    # re-sent, although the shared queue still has a backlog.
    client = redis.Redis.from_url(broker.redis_url)
    client.delete(f"{broker.prefix}{QUEUE}")
    assert waiting(SHARED, QUEUE) == [1, 0]
    assert repair.resend_lost_messages() == 1
    assert waiting(SHARED, QUEUE) == [1, 1]
    assert instance(theirs, "t").queued_at != two_minutes_ago  # stamped: re-sent
    assert instance(ours, "t").queued_at == two_minutes_ago
    assert repair.resend_lost_messages() == 0  # its queue has a backlog again


def test_after_a_policy_change_a_lost_try_is_resent_to_the_new_queue(
    shared: Engine, acme: Tenant, broker: Workers, settings: Any
) -> None:
    settings.QUEUED_RESEND_AFTER_SECONDS = 60
    run = trigger(shared, apply(shared, acme, CHAIN))
    assert repair.broker_lost_data()
    client = redis.Redis.from_url(broker.redis_url)
    client.delete(f"{broker.prefix}{QUEUE}")  # the dedicated pool is gone, its queue too
    set_queue(acme, None)
    TaskInstance.objects.dangerously_unscoped().filter(run=run).update(
        queued_at=timezone.now() - dt.timedelta(minutes=2)
    )
    assert repair.resend_lost_messages() == 1
    assert waiting(SHARED, QUEUE) == [1, 0]
