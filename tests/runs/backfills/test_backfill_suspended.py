"""A suspended tenant's running backfill creates no run (its runs are new runs, which a
suspension stops); it goes on where it stopped once the tenant is resumed."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import services
from orchestrator.actors import Actor
from runs import backfills
from runs.models import WorkflowRun
from tests.runs.engine.helpers import Engine

pytestmark = pytest.mark.django_db(transaction=True)

SPEC: dict[str, Any] = {
    "name": "nightly",
    "schedule": {"cron": "0 2 * * *", "timezone": "UTC"},
    "tasks": {"load": {"type": "noop"}},
}


def runs_of(backfill: Any) -> int:
    return WorkflowRun.objects.dangerously_unscoped().filter(backfill=backfill).count()


def test_a_suspended_tenants_backfill_waits_and_goes_on_when_resumed(settings: Any) -> None:
    settings.TASK_CONTINUE_SECONDS = 0
    engine = Engine(workers=None)
    workflow = engine.apply(SPEC)
    staff = Actor.system()
    services.suspend_tenant(actor=staff, tenant=engine.tenant, reason="unpaid invoice")
    with engine.scope():
        backfill = backfills.create_backfill(
            actor=engine.actor,
            workflow=workflow,
            start="2026-01-01",
            end="2026-01-05",
            max_active_runs=2,
        )
    assert runs_of(backfill) == 0
    assert backfills.feed_running() == 0  # the reconciler's step, while suspended
    assert runs_of(backfill) == 0

    engine.tenant.refresh_from_db()
    services.resume_tenant(actor=staff, tenant=engine.tenant)
    assert backfills.feed_running() == 2
    assert runs_of(backfill) == 2
