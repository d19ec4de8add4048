"""How the reconciler tells a broker that lost its data (restart without persistence,
FLUSHALL, eviction) from one that is merely busy: a marker key that only a loss removes.
After a loss every queued try is re-sent at once, even while a backlog would otherwise
hold re-sends back for QUEUED_RESEND_MAX_SECONDS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from runs.engine import repair
from runs.models import TaskInstance
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine
from tests.runs.reliability.conftest import RedisServer
from tests.workers import Workers, publishing_to

pytestmark = pytest.mark.slow


@pytest.fixture
def broker(tmp_path: Path, transactional_db: None) -> Iterator[RedisServer]:
    """A Redis of the test's own and no workers: nothing consumes what is sent."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        with publishing_to(Workers(redis_url=server.url)):
            yield server
    finally:
        server.stop()


def test_the_marker_reports_a_loss_once(broker: RedisServer) -> None:
    assert repair.broker_lost_data()  # a new broker: nothing was there before
    assert not repair.broker_lost_data()
    assert not repair.broker_lost_data()
    broker.flush()
    assert repair.broker_lost_data()
    assert not repair.broker_lost_data()
    broker.restart(down_for=0)
    assert repair.broker_lost_data()


def _queued_messages(server: RedisServer) -> int:
    client = redis.Redis(port=server.port)
    return sum(
        int(client.llen(key)) for key in client.scan_iter("*tasks") if client.type(key) == b"list"
    )


def test_after_a_loss_every_queued_try_is_resent_despite_a_backlog(
    broker: RedisServer, settings: Any
) -> None:
    settings.QUEUED_RESEND_AFTER_SECONDS = 0
    settings.QUEUED_RESEND_MAX_SECONDS = 3600
    engine = Engine(workers=None)
    shell = {"type": "shell", "command": ["true"]}  # one message each (noops share one)
    workflow = engine.apply({"name": "w", "tasks": {f"t{i}": dict(shell) for i in range(5)}})
    with engine.scope():
        trigger_run(actor=engine.actor, workflow=workflow)
        assert TaskInstance.objects.filter(state="queued").count() == 5
    assert _queued_messages(broker) == 5
    assert repair.broker_lost_data()  # first look: leaves the marker

    # A backlog and no loss: nothing is re-sent before QUEUED_RESEND_MAX_SECONDS.
    assert repair.resend_lost_messages() == 0
    assert _queued_messages(broker) == 5

    broker.flush()
    assert _queued_messages(broker) == 0
    assert repair.resend_lost_messages() == 5
    assert _queued_messages(broker) == 5
    # The marker is back: the next pass sees the backlog again and waits.
    assert repair.resend_lost_messages() == 0
