"""Two SLA checkers at once (two reconcilers, or one slow tick overlapping the next) record
a miss once: the second one's insert waits for the first one's transaction and then loses
on the unique key, leaving no second event. Real PostgreSQL connections, committed data."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import F

from notifications import sla
from notifications.models import SlaMiss
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import Event, WorkflowRun
from runs.services import trigger_run
from tests.harness import make_team
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_checkers_at_once_record_one_miss_and_one_event(
    transactional_db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    team = make_team("acme", roles=[])
    data = {"name": "slow", "sla": {"run_duration": "1m"}, "tasks": {"a": {"type": "noop"}}}
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data).workflow
        run = trigger_run(actor=Actor.cli(), workflow=workflow).run
    WorkflowRun.objects.dangerously_unscoped().filter(pk=run.pk).update(
        created_at=F("created_at") - dt.timedelta(minutes=2),
        queued_at=F("queued_at") - dt.timedelta(minutes=2),
    )
    counts: dict[str, int] = {}
    recorded = threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                counts["first"] = sla.check()
                recorded.set()
                time.sleep(0.5)  # the miss is inserted, not committed, while the other looks
        finally:
            recorded.set()
            connection.close()

    def second() -> None:
        try:
            recorded.wait(10)
            counts["second"] = sla.check()
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert counts == {"first": 1, "second": 0}
    # The loser saw the duplicate key and stood back: no error.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert SlaMiss.objects.dangerously_unscoped().filter(key=f"run:{run.pk}").count() == 1
    assert Event.objects.dangerously_unscoped().filter(type="sla.missed").count() == 1
