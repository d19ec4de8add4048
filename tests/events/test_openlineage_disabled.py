"""OpenLineage is off unless configured: then the engine writes no lineage event and
spends no query on it, and the sender and its repair do nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings as live_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from events import openlineage
from runs.engine import lineage
from runs.models import LineageEvent, TaskAttempt
from runs.services import cancel_run, trigger_run
from tests.events.support import drain
from tests.runs.engine.helpers import Engine

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {
    "name": "sales",
    "tasks": {
        "a": {"type": "noop", "inlets": ["raw.orders"], "outlets": ["staging.orders"]},
        "b": {"type": "python", "callable": "runs.library:fail", "depends_on": ["a"]},
    },
}


@pytest.fixture
def engine(transactional_db: None, settings: Any) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    return Engine(workers=None)


def test_it_is_off_by_default() -> None:
    assert live_settings.OPENLINEAGE_TRANSPORT == "off"
    assert live_settings.OPENLINEAGE_ENABLED is False


def test_runs_write_no_lineage_events(engine: Engine) -> None:
    workflow = engine.apply(SPEC)
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    assert drain(engine, run).state == "failed"
    with engine.scope():
        cancel_run(actor=engine.actor, run=trigger_run(actor=engine.actor, workflow=workflow).run)
    assert LineageEvent.objects.dangerously_unscoped().count() == 0
    attempts = list(TaskAttempt.objects.dangerously_unscoped().values_list("id", flat=True))
    assert openlineage.send(attempts) == 0
    assert openlineage.resend_due() == 0


def test_the_hooks_cost_no_query(engine: Engine) -> None:
    attempts = TaskAttempt.objects.dangerously_unscoped().all()
    with CaptureQueriesContext(connection) as captured:
        lineage.started([], [])
        lineage.ended("failed", attempts, timezone.now())  # a queryset: not even read
        openlineage.resend_due()
    assert captured.captured_queries == []
