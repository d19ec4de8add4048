"""The held-tries registry (runs/engine/holding.py) and the reconciler's step that re-sends
a dead worker's held tries, on PostgreSQL and Redis without workers: this process plays the
worker's main process (`become_holder`), and messages go to a key prefix nobody consumes."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from runs import worker
from runs.engine import holding, repair
from runs.engine.messaging import send
from runs.models import TaskInstance, WorkflowRun
from runs.services import trigger_run
from runs.tasks import hold_received
from tests.runs.engine.helpers import Engine
from tests.workers import Workers, publishing_to

pytestmark = pytest.mark.slow

SINGLE = {"name": "single", "tasks": {"t": {"type": "shell", "command": ["true"]}}}
CHAIN = {
    "name": "chain",
    "tasks": {
        "a": {"type": "noop"},
        "b": {"type": "shell", "command": ["true"], "depends_on": ["a"]},
    },
}


@pytest.fixture
def broker(transactional_db: None) -> Iterator[Workers]:
    """A Redis key prefix of the test's own and no workers: nothing consumes what is sent."""
    pool = Workers()
    with publishing_to(pool):
        yield pool
    holding.stop_holding()
    pool.stop()  # no processes: removes the prefix's keys


@pytest.fixture
def eng(broker: Workers) -> Engine:
    return Engine(workers=None)


@pytest.fixture
def client(broker: Workers) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(broker.redis_url)
    yield connection
    connection.close()


def trigger(engine: Engine, spec: dict[str, Any]) -> WorkflowRun:
    workflow = engine.apply(spec)
    with engine.scope():
        return trigger_run(actor=engine.actor, workflow=workflow).run


def instance(run: WorkflowRun, task_id: str) -> TaskInstance:
    return TaskInstance.objects.dangerously_unscoped().get(run=run, task_id=task_id)


def held(client: redis.Redis, broker: Workers, name: str) -> set[str]:
    holding.settle()  # what this process sent, taken by Redis (hold does not wait)
    return {m.decode() for m in client.zrange(f"{broker.prefix}{holding.HELD}{name}", 0, -1)}


def holders(client: redis.Redis, broker: Workers) -> set[str]:
    return {m.decode() for m in client.zrange(f"{broker.prefix}{holding.HOLDERS}", 0, -1)}


def silence(client: redis.Redis, broker: Workers, name: str, seconds: float = 100) -> None:
    """Make a holder's last beat `seconds` old, as if its worker died then."""
    now = float(client.time()[0])
    client.zadd(f"{broker.prefix}{holding.HOLDERS}", {name: now - seconds})


def message_tries(payload: bytes) -> tuple[str, list[Any]]:
    """The task name and arguments of a raw message in a Redis queue list."""
    message = json.loads(payload)
    body = json.loads(base64.b64decode(message["body"]))
    return message["headers"]["task"], body[0]


class Request:
    """What Celery's `task_received` signal hands over, as much of it as we read."""

    def __init__(self, name: str, args: Any) -> None:
        self.name, self.args = name, args


def test_it_holds_what_the_main_process_receives_and_drops_it_once_claimed(
    eng: Engine, broker: Workers, client: redis.Redis
) -> None:
    run = trigger(eng, SINGLE)
    ti = instance(run, "t")
    name = holding.become_holder("w1@test")
    assert name.startswith("w1@test/")
    assert name in holders(client, broker)
    hold_received(request=Request("runs.execute", [ti.pk, 1]))
    hold_received(request=Request("runs.execute_batch", [[[9001, 1], [9002, 3]]]))
    hold_received(request=Request("runs.reconcile", []))  # not a try: nothing held
    hold_received(request=Request("runs.execute", ["garbage"]))  # malformed: ignored
    assert held(client, broker, name) == {f"{ti.pk}:1", "9001:1", "9002:3"}

    # Nothing of 9001/9002 is queued: the sweep drops them; the queued try stays.
    assert holding.sweep() == 2
    assert held(client, broker, name) == {f"{ti.pk}:1"}
    # Claimed: dropped too.
    assert worker.execute(ti.pk, 1) == "success"
    assert holding.sweep() == 1
    assert held(client, broker, name) == set()


def test_the_sweep_leaves_entries_taken_after_it_read(
    eng: Engine, broker: Workers, client: redis.Redis
) -> None:
    name = holding.become_holder("w1@test")
    key = f"{broker.prefix}{holding.HELD}{name}"
    client.zadd(key, {"9001:1": time.time() + 60})  # taken again after the sweep's read
    assert holding.sweep() == 0
    assert held(client, broker, name) == {"9001:1"}


def test_a_try_kept_to_run_next_is_held(
    eng: Engine, broker: Workers, client: redis.Redis, settings: Any
) -> None:
    """The child that ends `a` keeps `b` to run it itself: from then until its claim, `b`
    is queued with no message anywhere, and only the registry knows."""
    settings.TASK_CONTINUE_SECONDS = 0  # keep b, then send it instead of running it
    run = trigger(eng, CHAIN)
    name = holding.become_holder("w1@test")
    a = instance(run, "a")
    worker.execute(a.pk, 1, queue="tasks")
    b = instance(run, "b")
    assert (b.state, b.try_number) == ("queued", 1)
    assert held(client, broker, name) == {f"{b.pk}:1"}


def test_a_process_that_is_no_holder_holds_nothing(
    eng: Engine, broker: Workers, client: redis.Redis
) -> None:
    holding.hold([(1, 1)])
    hold_received(request=Request("runs.execute", [1, 1]))
    assert not list(client.scan_iter(f"{broker.prefix}{holding.HELD}*"))


def test_the_reconciler_resends_a_dead_holders_queued_tries_first_in_their_queue(
    eng: Engine, broker: Workers, client: redis.Redis
) -> None:
    lost, done = trigger(eng, SINGLE), trigger(eng, SINGLE)
    lost_ti, done_ti = instance(lost, "t"), instance(done, "t")
    assert worker.execute(done_ti.pk, 1) == "success"
    queue_key = f"{broker.prefix}tasks"
    client.delete(queue_key)
    # A backlog: 1000 messages of other tries, all behind what the dead worker took.
    send(*[(100000 + i, 1) for i in range(1000)], queue="tasks")
    assert client.llen(queue_key) == 1000

    dead = holding.become_holder("dead@test")
    holding.hold([(lost_ti.pk, 1), (done_ti.pk, 1), (lost_ti.pk, 2)])  # 2: not its try
    holding.stop_holding()
    alive = holding.become_holder("alive@test")
    holding.hold([(lost_ti.pk, 1)])
    silence(client, broker, dead)
    stamped = lost_ti.queued_at

    assert repair.resend_held_tries() == 1
    assert client.llen(queue_key) == 1001
    # At the front: the end a worker pops next (kombu consumes with RPOP/BRPOP).
    assert message_tries(client.lindex(queue_key, -1)) == ("runs.execute", [lost_ti.pk, 1])
    assert instance(lost, "t").queued_at > stamped  # the drained-queue re-send waits again
    assert holders(client, broker) == {alive}  # the dead one forgotten, the live one kept
    assert held(client, broker, dead) == set()
    assert held(client, broker, alive) == {f"{lost_ti.pk}:1"}
    assert repair.resend_held_tries() == 0  # nothing twice


def test_a_holder_that_beats_again_is_kept_and_the_step_is_counted(
    eng: Engine, broker: Workers, client: redis.Redis
) -> None:
    run = trigger(eng, SINGLE)
    ti = instance(run, "t")
    name = holding.become_holder("slow@test")
    holding.hold([(ti.pk, 1)])
    silence(client, broker, name)
    done = repair.reconcile()
    assert done["resent_held"] == 1
    assert holders(client, broker) == set()
    # The worker was only slow: its next beat makes it a holder again.
    silence(client, broker, name, seconds=0)
    assert holders(client, broker) == {name}
    assert repair.reconcile()["resent_held"] == 0


def test_a_hold_that_redis_refuses_is_logged_and_the_next_one_is_recorded(
    eng: Engine, broker: Workers, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """`hold` does not wait for Redis' answer: a refusal surfaces at the next command (or
    `settle`) as a warning, never as an error on the engine's path."""
    name = holding.become_holder("w1@test")
    key = f"{broker.prefix}{holding.HELD}{name}"
    client.set(key, "not a sorted set")
    holding.hold([(1, 1)])  # WRONGTYPE, unread yet
    with caplog.at_level(logging.WARNING, logger="runs.engine.holding"):
        holding.settle()
    assert "earlier record of held tries failed" in caplog.text
    client.delete(key)
    holding.hold([(2, 1)])
    assert held(client, broker, name) == {"2:1"}
