"""The engine never waits for the OpenLineage backend: with the receiver down (or hanging)
runs go on at full speed, their events stay pending in the outbox, and the sender records
a temporary error and tries again later; staff see why in the admin."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from events import openlineage
from runs.models import LineageEvent
from runs.services import trigger_run
from tests.events.openlineage_support import enable, receiver, send_all
from tests.events.support import drain
from tests.notifications.servers import Answer, HttpReceiver, free_port
from tests.runs.engine.helpers import Engine

__all__ = ["receiver"]

pytestmark = pytest.mark.django_db(transaction=True)

CHAIN = {
    "name": "chain",
    "tasks": {
        "a": {"type": "noop", "outlets": ["x"]},
        "b": {"type": "noop", "depends_on": ["a"], "inlets": ["x"]},
    },
}


@pytest.fixture
def engine(transactional_db: None, settings: Any) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    return Engine(workers=None)


def test_runs_go_on_while_the_receiver_is_down(engine: Engine, settings: Any) -> None:
    enable(settings, f"http://127.0.0.1:{free_port()}")
    workflow = engine.apply(CHAIN)
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    assert drain(engine, run).state == "success"
    pending = LineageEvent.objects.dangerously_unscoped().filter(status="pending")
    assert pending.count() == 4
    assert send_all() == 0
    # The first event of each attempt was tried, its end waits behind it.
    tried = list(pending.filter(attempts=1).values_list("kind", "last_error", "next_attempt_at"))
    assert [kind for kind, _, _ in tried] == ["START", "START"]
    for _, error, next_at in tried:
        assert error.startswith("no answer from the OpenLineage endpoint")
        assert next_at is not None
        assert next_at > timezone.now()
    assert pending.count() == 4


def test_a_hanging_receiver_does_not_hold_the_engine(
    engine: Engine, settings: Any, receiver: HttpReceiver
) -> None:
    enable(settings, receiver.url(""))
    receiver.answer(Answer(200, delay=3), Answer(200, delay=3))
    workflow = engine.apply(CHAIN)
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    started = time.monotonic()
    assert drain(engine, run).state == "success"
    assert time.monotonic() - started < 3  # sending is not the engine's work
    assert receiver.posts == []
    settings.OPENLINEAGE_TIMEOUT = 1.0
    send_all()  # each START's answer comes too late: a timeout, tried again later
    timed_out = LineageEvent.objects.dangerously_unscoped().filter(attempts=1, status="pending")
    assert sorted(timed_out.values_list("kind", flat=True)) == ["START", "START"]
    for row in timed_out:
        assert row.last_error.startswith("no answer from the OpenLineage endpoint")
    assert openlineage.resend_due() == 0  # not due yet


def test_staff_see_the_events_and_why_they_wait_in_the_admin(
    engine: Engine, settings: Any, client: Client
) -> None:
    enable(settings, f"http://127.0.0.1:{free_port()}")
    workflow = engine.apply(CHAIN)
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    drain(engine, run)
    send_all()
    row = LineageEvent.objects.dangerously_unscoped().filter(attempts=1).first()
    assert row is not None
    client.force_login(User.objects.create_superuser("root", password=None))
    listing = client.get(reverse("admin:runs_lineageevent_changelist") + "?status__exact=pending")
    assert listing.status_code == 200
    assert "4 lineage events" in listing.content.decode()  # each START and its end
    page = client.get(reverse("admin:runs_lineageevent_change", args=[row.pk]))
    assert page.status_code == 200
    assert "no answer from the OpenLineage endpoint" in page.content.decode()
    assert client.get(reverse("admin:runs_lineageevent_add")).status_code == 403
    assert client.get(reverse("admin:runs_lineageevent_delete", args=[row.pk])).status_code == 403
