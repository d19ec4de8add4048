"""The sender retries like notification deliveries: a temporary error (5xx, 429) is tried
again after a backoff kept in the row, and the event goes out once; a refusal (4xx) ends
the row `failed`. An attempt's events go out in order: its end waits for its START."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from events import openlineage
from runs.models import LineageEvent, TaskInstance
from runs.services import trigger_run
from tests.events.openlineage_support import enable, events_of, receiver, send_all
from tests.events.support import drain
from tests.notifications.servers import Answer, HttpReceiver
from tests.runs.engine.helpers import Engine

__all__ = ["receiver"]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def engine(transactional_db: None, settings: Any, receiver: HttpReceiver) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    settings.NOTIFY_RETRY_DELAY_SECONDS = 30.0
    enable(settings, receiver.url(""))
    return Engine(workers=None)


def one_task_run(engine: Engine) -> None:
    workflow = engine.apply({"name": "one", "tasks": {"a": {"type": "noop"}}})
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    assert drain(engine, run).state == "success"


def rows() -> list[LineageEvent]:
    return list(LineageEvent.objects.dangerously_unscoped().order_by("id"))


def make_due() -> None:
    LineageEvent.objects.dangerously_unscoped().filter(status="pending").update(
        next_attempt_at=timezone.now()
    )


def test_a_5xx_is_retried_later_and_sent_once(engine: Engine, receiver: HttpReceiver) -> None:
    one_task_run(engine)
    receiver.answer(Answer(500))
    before = timezone.now()
    assert send_all() == 0
    start, complete = rows()
    assert start.status == "pending"
    assert start.attempts == 1
    assert start.last_error == "the OpenLineage endpoint answered 500"
    assert start.next_attempt_at is not None
    assert start.next_attempt_at >= before + dt.timedelta(seconds=30)  # the backoff
    # The end waits behind its START: not sent, not even tried.
    assert (complete.status, complete.attempts) == ("pending", 0)
    assert len(receiver.posts) == 1
    assert send_all() == 0  # not due yet
    make_due()
    assert openlineage.resend_due() == 1  # queued again by the reconciler's repair...
    assert send_all() == 2  # ...and sent, START first
    assert [(r.status, r.attempts, r.last_error) for r in rows()] == [
        ("sent", 2, ""),
        ("sent", 1, ""),
    ]
    posted = events_of(receiver.wait(3))
    assert [e["eventType"] for e in posted] == ["START", "START", "COMPLETE"]
    assert posted[0] == posted[1]  # the same event again


def test_a_429_waits_as_long_as_asked(engine: Engine, receiver: HttpReceiver) -> None:
    one_task_run(engine)
    receiver.answer(Answer(429, {"Retry-After": "600"}))
    before = timezone.now()
    send_all()
    start = rows()[0]
    assert start.status == "pending"
    assert start.next_attempt_at is not None
    assert start.next_attempt_at >= before + dt.timedelta(seconds=600)


def test_a_refusal_is_not_retried(engine: Engine, receiver: HttpReceiver) -> None:
    one_task_run(engine)
    receiver.answer(Answer(400))
    assert send_all() == 1  # START refused for good; COMPLETE goes on
    start, complete = rows()
    assert (start.status, start.attempts) == ("failed", 1)
    assert start.last_error == "the OpenLineage endpoint answered 400"
    assert complete.status == "sent"
    make_due()
    assert openlineage.resend_due() == 0


def test_it_gives_up_after_the_last_attempt(
    engine: Engine, receiver: HttpReceiver, settings: Any
) -> None:
    settings.OPENLINEAGE_MAX_ATTEMPTS = 2
    one_task_run(engine)
    receiver.answer(Answer(503), Answer(503))
    send_all()
    make_due()
    assert send_all() == 1  # the START given up, then its COMPLETE sent
    start, complete = rows()
    assert start.status == "failed"
    assert start.last_error == "the OpenLineage endpoint answered 503 (gave up after 2 attempts)"
    assert complete.status == "sent"


def test_a_claimed_row_is_not_sent_twice(engine: Engine, receiver: HttpReceiver) -> None:
    """Another worker has it (its lease runs): nothing to do here, not even its end."""
    workflow = engine.apply({"name": "one", "tasks": {"a": {"type": "noop"}}})
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    drain(engine, run)
    LineageEvent.objects.dangerously_unscoped().filter(kind="START").update(
        next_attempt_at=timezone.now() + openlineage.claim_timeout(), attempts=1
    )
    assert send_all() == 0
    assert receiver.posts == []
    with engine.scope():
        assert TaskInstance.objects.get(run=run).state == "success"
