"""Races and fairness around schedules and backfills, on PostgreSQL: a pause during a tick
and a backfill cancel during its feeding do not deadlock (foreign keys are checked at
commit with a KEY SHARE lock, so serialising locks are NO KEY UPDATE); a backfill does not
take the tenant's last run slot from another workflow's waiting run; a spec applied before
schedules were kept gets its schedule when applied again."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from orchestrator import audit
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs import backfills, engine, scheduling
from runs.models import WorkflowRun
from runs.services import trigger_run
from tests.harness import Team, make_team
from workflows import services
from workflows.models import Schedule, Workflow

# Tests look across tenants: every use says so.
unscoped_runs = WorkflowRun.objects.dangerously_unscoped

T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
SPEC = {"name": "w", "schedule": {"cron": "0 * * * *"}, "tasks": {"only": {"type": "noop"}}}


def apply(team: Team, data: dict[str, Any]) -> Workflow:
    with tenant_scope([team.tenant]):
        return services.apply_workflow(
            actor=Actor.cli(), tenant=team.tenant, data=data, now=T0
        ).workflow


def _in_thread(fn: Callable[[], Any], errors: list[str]) -> threading.Thread:
    def body() -> None:
        try:
            fn()
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    thread = threading.Thread(target=body)
    thread.start()
    return thread


def _meanwhile(
    monkeypatch: pytest.MonkeyPatch, module: Any, fn: Callable[[], Any]
) -> tuple[list[str], list[threading.Thread]]:
    """Run `fn` in another transaction just before `module` audits (its locks held)."""
    errors: list[str] = []
    threads: list[threading.Thread] = []
    real = audit.record

    def record(**kwargs: Any) -> Any:
        if not threads:
            threads.append(_in_thread(fn, errors))
            time.sleep(0.5)
        return real(**kwargs)

    monkeypatch.setattr(module.audit, "record", record)
    return errors, threads


@pytest.mark.django_db(transaction=True)
def test_it_pauses_while_a_tick_fires_without_deadlock(monkeypatch: pytest.MonkeyPatch) -> None:
    team = make_team("acme", roles=[])
    workflow = apply(team, SPEC)
    errors, threads = _meanwhile(
        monkeypatch, services, lambda: scheduling.tick(now=T0 + dt.timedelta(hours=1, seconds=1))
    )
    with tenant_scope([team.tenant]):
        services.set_paused(actor=Actor.cli(), workflow=workflow, paused=True)
    threads[0].join()
    assert errors == []
    assert Workflow.objects.dangerously_unscoped().get(pk=workflow.pk).paused


@pytest.mark.django_db(transaction=True)
def test_it_cancels_a_backfill_while_it_is_fed_without_deadlock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    team = make_team("acme", roles=[])
    workflow = apply(team, SPEC)
    with tenant_scope([team.tenant]):
        backfill = backfills.create_backfill(
            actor=Actor.cli(), workflow=workflow, start="2026-02-01", end="2026-02-01T05:00",
            max_active_runs=1, now=T0,
        )  # fmt: skip
    errors, threads = _meanwhile(monkeypatch, backfills, lambda: backfills.feed(backfill.pk))
    with tenant_scope([team.tenant]):
        backfills.cancel_backfill(actor=Actor.cli(), backfill=backfills.get_backfill(backfill.pk))
    threads[0].join()
    assert errors == []
    backfill.refresh_from_db()
    assert backfill.state == "cancelled"


@pytest.mark.django_db(transaction=True)
def test_it_leaves_the_tenants_last_slot_to_another_workflows_waiting_run() -> None:
    team = make_team("acme", roles=[])
    Tenant.objects.filter(pk=team.tenant.pk).update(quotas={"max_concurrent_runs": 1})
    team.tenant.refresh_from_db()
    shell = {"t": {"type": "shell", "command": ["true"]}}
    a = apply(team, {**SPEC, "name": "a", "tasks": shell})
    b = apply(team, {"name": "b", "tasks": shell})
    with tenant_scope([team.tenant]):
        backfill = backfills.create_backfill(
            actor=Actor.cli(), workflow=a, start="2026-02-01", end="2026-02-01T05:00",
            max_active_runs=1, now=T0,
        )  # fmt: skip
        waiting = trigger_run(actor=Actor.cli(), workflow=b).run
    assert unscoped_runs().get(pk=waiting.pk).state == "queued"  # the backfill's run holds the slot
    first = unscoped_runs().get(backfill_id=backfill.pk, state="running")
    unscoped_runs().filter(pk=first.pk).update(state="success", ended_at=T0)
    backfills.feed(backfill.pk)  # what the run's end does: the next interval's run
    engine.start_queued_runs(a.pk)
    assert not unscoped_runs().filter(backfill_id=backfill.pk, state="running").exists()
    engine.start_queued_runs(b.pk)  # the reconciler's repair
    assert unscoped_runs().get(pk=waiting.pk).state == "running"


@pytest.mark.django_db
def test_it_starts_the_schedule_of_a_spec_applied_before_schedules_were_kept() -> None:
    team = make_team("acme", roles=[])
    workflow = apply(team, SPEC)
    Schedule.objects.dangerously_unscoped().filter(workflow=workflow).delete()
    apply(team, SPEC)  # the same spec: unchanged, but its schedule is made
    schedule = Schedule.objects.dangerously_unscoped().get(workflow=workflow)
    assert schedule.next_run_at == dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)
