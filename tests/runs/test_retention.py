"""Retention (docs/retention.md): finished runs older than their tenant's retention go,
with their task instances, tries, logs, results and lineage events, in small audited
batches; events go once both consumers have taken them and no delivery is still to be
sent; webhook deliveries go by age. Queued and running runs, runs of a live backfill,
young runs, dataset updates and the audit log stay."""

from __future__ import annotations

import datetime as dt
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone

from events.models import Webhook, WebhookDelivery
from notifications import routing
from notifications.models import Channel, Delivery
from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.audit import chain_key, verify_chain
from orchestrator.celery import app
from orchestrator.errors import Invalid
from orchestrator.models import AuditEvent, Tenant
from orchestrator.tenancy import retention_days, validate_policy
from runs import retention
from runs.models import (
    Backfill,
    DatasetUpdate,
    Event,
    LineageEvent,
    TaskAttempt,
    TaskInstance,
    TaskLog,
    WorkflowRun,
)
from runs.periodic import ensure_periodic_tasks
from runs.services import trigger_run
from runs.tasks import purge_aged
from tests.events.openlineage_support import enable
from tests.events.support import dispatch_pending, run_once
from tests.harness import set_policy
from tests.runs.engine.helpers import Engine

pytestmark = pytest.mark.django_db(transaction=True)

SALES = {
    "name": "sales",
    "tasks": {
        "extract": {
            "type": "python",
            "callable": "runs.library:echo",  # prints: a task log
            "outlets": ["staging.orders"],  # a dataset update and its event
        },
        "load": {"type": "noop", "depends_on": ["extract"]},
    },
}
SLOW = {
    "name": "slow",
    "max_active_runs": 1,
    "tasks": {"wait": {"type": "noop"}},
}

TABLES: dict[str, Any] = {
    "runs": WorkflowRun,
    "task_instances": TaskInstance,
    "attempts": TaskAttempt,
    "task_logs": TaskLog,
    "lineage_events": LineageEvent,
    "events": Event,
    "dataset_updates": DatasetUpdate,
    "webhook_deliveries": WebhookDelivery,
    "deliveries": Delivery,
    "audit_events": AuditEvent,
}


@pytest.fixture
def engine(transactional_db: None, settings: Any) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    settings.RETENTION_DAYS_DEFAULT = 90
    settings.RETENTION_DAYS_MAX = 3650
    enable(settings, "http://127.0.0.1:9")  # lineage events are written (never sent here)
    # What events and notifications register in their AppConfig.ready: webhook deliveries
    # purged by age, events with a delivery still pending kept.
    assert retention.registrations() == {
        "purges": ["webhook_deliveries"],
        "event_holds": ["pending_deliveries"],
    }
    return Engine(workers=None)


def other_tenant(slug: str) -> Engine:
    """A second tenant with its own owner, used like `Engine`."""
    other = Engine.__new__(Engine)
    other.workers = None
    other.user = User.objects.create_user(f"{slug}-owner")
    other.tenant = services.create_tenant(actor=Actor.cli(), slug=slug, name=slug, owner=other.user)
    other.actor = Actor(user=other.user, source="api")
    return other


def counts(**filters: Any) -> dict[str, int]:
    return {
        name: model.objects.dangerously_unscoped().filter(**filters).count()
        for name, model in TABLES.items()
    }


def finished_run(engine: Engine, days_ago: float, spec: dict[str, Any] = SALES) -> WorkflowRun:
    """A run the engine executed, routed and dispatched, then aged: it ended (and its
    events were written) `days_ago` days ago."""
    run = run_once(engine, engine.apply(spec))
    assert run.state == "success"
    routing.route(
        Event.objects.dangerously_unscoped()
        .filter(routed_at__isnull=True)
        .values_list("id", flat=True)
    )
    dispatch_pending()
    return age(run, days_ago)


def age(run: WorkflowRun, days_ago: float) -> WorkflowRun:
    when = timezone.now() - dt.timedelta(days=days_ago)
    WorkflowRun.objects.dangerously_unscoped().filter(pk=run.pk).update(ended_at=when)
    Event.objects.dangerously_unscoped().filter(run=run).update(time=when)
    run.refresh_from_db()
    return run


def rows_of(run: WorkflowRun) -> dict[str, int]:
    """The rows that go with a run."""
    return {
        "runs": 1,
        "task_instances": TaskInstance.objects.dangerously_unscoped().filter(run=run).count(),
        "attempts": TaskAttempt.objects.dangerously_unscoped()
        .filter(task_instance__run=run)
        .count(),
        "task_logs": TaskLog.objects.dangerously_unscoped()
        .filter(attempt__task_instance__run=run)
        .count(),
        "lineage_events": LineageEvent.objects.dangerously_unscoped()
        .filter(attempt__task_instance__run=run)
        .count(),
        "events": Event.objects.dangerously_unscoped().filter(run=run).count(),
    }


def webhook_delivery(engine: Engine, key: str, days_ago: float) -> WebhookDelivery:
    workflow = engine.apply(SALES)
    hook, _ = Webhook.objects.dangerously_unscoped().get_or_create(
        tenant=engine.tenant, workflow=workflow, name="landed", defaults={"uid": "u" * 40}
    )
    row = WebhookDelivery.objects.dangerously_unscoped().create(
        tenant=engine.tenant, webhook=hook, key=key
    )
    WebhookDelivery.objects.dangerously_unscoped().filter(pk=row.pk).update(
        received_at=timezone.now() - dt.timedelta(days=days_ago)
    )
    return row


def exists(run: WorkflowRun) -> bool:
    return WorkflowRun.objects.dangerously_unscoped().filter(pk=run.pk).exists()


# --- what goes, what stays ---------------------------------------------------------------


def test_it_deletes_old_finished_runs_with_every_row_of_theirs(engine: Engine) -> None:
    old = finished_run(engine, days_ago=91)
    young = finished_run(engine, days_ago=89)
    expected = rows_of(old)
    # The run really had something in every table retention empties.
    assert expected == {
        "runs": 1,
        "task_instances": 2,
        "attempts": 2,
        "task_logs": expected["task_logs"],
        "lineage_events": 4,
        "events": 2,  # dataset.updated, run.succeeded
    }
    assert expected["task_logs"] >= 1
    old_hook = webhook_delivery(engine, "a" * 64, days_ago=100)
    young_hook = webhook_delivery(engine, "b" * 64, days_ago=10)
    updates = DatasetUpdate.objects.dangerously_unscoped().filter(run=old)
    assert updates.count() == 1
    update_id = updates.get().pk
    before = counts()

    [done] = retention.purge()

    assert done.tenant == "eng"
    assert done.days == 90
    assert done.counts == {**expected, "webhook_deliveries": 1}
    after = counts()
    gone = {name: before[name] - after[name] for name in TABLES}
    assert gone == {
        **expected,
        "dataset_updates": 0,  # a dataset's history: kept, its run left out
        "webhook_deliveries": 1,
        "deliveries": 0,
        "audit_events": -done.batches,  # one audit event per batch, none deleted
    }
    assert not exists(old)
    assert exists(young)
    assert rows_of(young)["task_instances"] == 2
    assert DatasetUpdate.objects.dangerously_unscoped().get(pk=update_id).run_id is None
    assert not WebhookDelivery.objects.dangerously_unscoped().filter(pk=old_hook.pk).exists()
    assert WebhookDelivery.objects.dangerously_unscoped().filter(pk=young_hook.pk).exists()
    assert verify_chain(chain_key(engine.tenant.pk)).ok
    out = StringIO()
    call_command("verify_audit", stdout=out)
    assert "tenant eng: OK" in out.getvalue()
    audit = AuditEvent.objects.dangerously_unscoped().filter(action="retention.delete")
    assert {(a.source, a.object_type) for a in audit} == {
        ("system", "workflowrun"),
        ("system", "event"),
        ("system", "webhookdelivery"),
    }


def test_it_never_touches_queued_or_running_runs_or_a_live_backfills(engine: Engine) -> None:
    workflow = engine.apply(SLOW)
    with engine.scope():
        running = trigger_run(actor=engine.actor, workflow=workflow).run
        queued = trigger_run(actor=engine.actor, workflow=workflow).run
    running.refresh_from_db()
    queued.refresh_from_db()
    assert (running.state, queued.state) == ("running", "queued")
    age(running, 400)  # an ended_at long ago would not make them finished
    age(queued, 400)
    backfilled = finished_run(engine, days_ago=400)
    backfill = Backfill.objects.dangerously_unscoped().create(
        tenant=engine.tenant,
        workflow=backfilled.workflow,
        start=timezone.now() - dt.timedelta(days=500),
        end=timezone.now() - dt.timedelta(days=400),
    )
    WorkflowRun.objects.dangerously_unscoped().filter(pk=backfilled.pk).update(backfill=backfill)

    [done] = retention.purge()

    assert done.counts["runs"] == 0
    assert exists(running)
    assert exists(queued)
    assert exists(backfilled)
    assert TaskInstance.objects.dangerously_unscoped().filter(run=running).count() == 1

    # Once the backfill has ended, its old runs go like any other.
    Backfill.objects.dangerously_unscoped().filter(pk=backfill.pk).update(state="completed")
    [done] = retention.purge()
    assert done.counts["runs"] == 1
    assert not exists(backfilled)
    assert exists(running)
    assert exists(queued)


def test_it_keeps_events_a_consumer_has_not_taken_or_a_delivery_still_needs(
    engine: Engine,
) -> None:
    run = finished_run(engine, days_ago=100)
    [succeeded] = Event.objects.dangerously_unscoped().filter(run=run, type="run.succeeded")
    [updated] = Event.objects.dangerously_unscoped().filter(run=run, type="dataset.updated")
    Event.objects.dangerously_unscoped().filter(pk=updated.pk).update(dispatched_at=None)
    channel = Channel.objects.dangerously_unscoped().create(
        tenant=engine.tenant, name="ops", kind="email", recipients=["ops@example.com"]
    )
    delivery = Delivery.objects.dangerously_unscoped().create(
        tenant=engine.tenant, key="e1:c1", event=succeeded, channel=channel
    )

    [done] = retention.purge()

    assert done.counts["runs"] == 1
    assert done.counts["events"] == 0
    assert (
        Event.objects.dangerously_unscoped().filter(pk__in=[succeeded.pk, updated.pk]).count() == 2
    )
    assert Event.objects.dangerously_unscoped().get(pk=succeeded.pk).run_id is None

    Delivery.objects.dangerously_unscoped().filter(pk=delivery.pk).update(status="sent")
    [done] = retention.purge()
    assert done.counts == {"events": 1, "notifications.Delivery": 1}
    assert not Delivery.objects.dangerously_unscoped().exists()
    assert list(Event.objects.dangerously_unscoped().values_list("pk", flat=True)) == [updated.pk]


# --- the policy --------------------------------------------------------------------------


def test_each_tenant_keeps_its_own_policys_days_up_to_the_platform_maximum(
    engine: Engine, settings: Any
) -> None:
    other = other_tenant("acme")
    set_policy(engine.tenant, retention_days=10)
    mine = finished_run(engine, days_ago=20)
    theirs = finished_run(other, days_ago=20)

    done = {d.tenant: d for d in retention.purge()}

    assert (done["eng"].days, done["acme"].days) == (10, 90)
    assert not exists(mine)
    assert exists(theirs)

    # The platform's maximum caps every tenant, whatever its policy or the default says.
    settings.RETENTION_DAYS_MAX = 15
    done = {d.tenant: d for d in retention.purge()}
    assert done["acme"].days == 15
    assert done["acme"].counts["runs"] == 1
    assert not exists(theirs)


def test_a_policy_over_the_platform_maximum_is_refused_naming_the_field(
    engine: Engine, settings: Any
) -> None:
    with pytest.raises(Invalid) as caught:
        validate_policy({"retention_days": 4000})
    assert caught.value.errors == [
        ("policy.retention_days", "must be between 1 and 3650 days (platform limit)")
    ]
    for bad in (0, -1, "90", True, 1.5):
        with pytest.raises(Invalid) as caught:
            validate_policy({"retention_days": bad})
        [(where, _)] = caught.value.errors
        assert where == "policy.retention_days"
    with pytest.raises(Invalid):
        set_policy(engine.tenant, retention_days=4000)
    assert Tenant.objects.get(pk=engine.tenant.pk).policy.get("retention_days") is None
    assert validate_policy({"retention_days": 3650}) == {"retention_days": 3650}
    # No platform maximum: a tenant may keep everything (0).
    settings.RETENTION_DAYS_MAX = 0
    assert validate_policy({"retention_days": 0}) == {"retention_days": 0}
    assert retention_days({"retention_days": 0}) == 0
    settings.RETENTION_DAYS_DEFAULT = 0
    assert retention_days({}) == 0


def test_a_tenant_kept_forever_loses_nothing(engine: Engine, settings: Any) -> None:
    settings.RETENTION_DAYS_MAX = 0
    set_policy(engine.tenant, retention_days=0)
    run = finished_run(engine, days_ago=5000)
    out = StringIO()
    call_command("retention", stdout=out)
    assert out.getvalue() == "eng: kept forever (retention 0 days)\n"
    assert exists(run)


# --- batches, the command, the daily job -------------------------------------------------


def test_it_deletes_in_small_batches_each_audited(engine: Engine) -> None:
    runs = [finished_run(engine, days_ago=100 + i) for i in range(5)]
    before = counts()

    [done] = retention.purge(batch_size=2)

    assert done.counts["runs"] == 5
    assert done.counts["events"] == 10
    assert done.batches == 3 + 5  # runs: 2, 2, 1; events: 2 x 5
    assert not any(exists(run) for run in runs)
    assert counts()["audit_events"] == before["audit_events"] + 8
    batches = AuditEvent.objects.dangerously_unscoped().filter(
        action="retention.delete", object_type="workflowrun"
    )
    assert [b.changes["extra"]["deleted"]["runs"] for b in batches.order_by("seq")] == [2, 2, 1]
    firsts = [b.changes["extra"]["first_id"] for b in batches.order_by("seq")]
    assert firsts == sorted(firsts) == [runs[0].pk, runs[2].pk, runs[4].pk]


def test_a_batch_of_wide_runs_is_bounded_by_their_task_rows(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = sum(1 for _ in SALES["tasks"])
    monkeypatch.setattr(retention, "TASK_ROWS_PER_BATCH", 2 * tasks)
    runs = [finished_run(engine, days_ago=100 + i) for i in range(5)]

    [done] = retention.purge(batch_size=500)

    assert done.counts["runs"] == 5
    batches = AuditEvent.objects.dangerously_unscoped().filter(
        action="retention.delete", object_type="workflowrun"
    )
    per_batch = [b.changes["extra"]["deleted"] for b in batches.order_by("seq")]
    assert [d["runs"] for d in per_batch] == [2, 2, 1]
    assert all(d["task_instances"] <= 2 * tasks for d in per_batch)
    assert not any(exists(run) for run in runs)


def test_a_dry_run_counts_and_deletes_nothing_and_a_second_pass_deletes_nothing(
    engine: Engine,
) -> None:
    old = finished_run(engine, days_ago=120)
    finished_run(engine, days_ago=3)
    expected = rows_of(old)
    before = counts()

    out = StringIO()
    call_command("retention", "--dry-run", stdout=out)
    text = out.getvalue()
    assert text.startswith("eng: would delete ")
    assert f"runs {expected['runs']}" in text
    assert f"task_instances {expected['task_instances']}" in text
    assert f"attempts {expected['attempts']}" in text
    assert f"events {expected['events']}" in text
    assert counts() == before

    out = StringIO()
    call_command("retention", "--batch-size", "100", stdout=out)
    assert out.getvalue().startswith(f"eng: deleted {sum(expected.values())} rows ended before ")
    assert not exists(old)

    out = StringIO()
    call_command("retention", "--tenant", "eng", stdout=out)
    assert out.getvalue().startswith("eng: deleted 0 rows ended before ")
    assert (
        AuditEvent.objects.dangerously_unscoped()
        .filter(source="cli", action="retention.delete")
        .count()
        == 2  # runs, events: one batch each
    )


def test_the_command_takes_one_tenant(engine: Engine) -> None:
    other = other_tenant("acme")
    mine = finished_run(engine, days_ago=100)
    theirs = finished_run(other, days_ago=100)
    out = StringIO()
    call_command("retention", "--tenant", "acme", "--dry-run", stdout=out)
    assert out.getvalue().startswith("acme: would delete ")
    assert exists(theirs)
    out = StringIO()
    call_command("retention", "--tenant", "acme", stdout=out)
    assert out.getvalue().startswith("acme: deleted ")
    assert exists(mine)
    assert not exists(theirs)
    with pytest.raises(CommandError, match="unknown or archived tenant 'nobody'"):
        call_command("retention", "--tenant", "nobody")


def test_the_daily_job_runs_on_the_housekeeping_queue(engine: Engine) -> None:
    from django_celery_beat.models import PeriodicTask

    ensure_periodic_tasks()
    entry = PeriodicTask.objects.get(name="runs.retention")
    assert (entry.task, entry.queue) == ("runs.retention", "housekeeping")
    assert (entry.crontab.minute, entry.crontab.hour, entry.crontab.day_of_month) == (
        "30",
        "3",
        "*",
    )
    assert app.amqp.router.route({}, "runs.retention")["queue"].name == "housekeeping"
    old = finished_run(engine, days_ago=100)
    expected = sum(rows_of(old).values())
    assert purge_aged() == {"eng": expected}
    assert not exists(old)


def test_the_benchmarks_aged_runs_are_what_retention_deletes(engine: Engine) -> None:
    """devtools/bench/retention.py seeds aged runs by copying a template row; retention
    deletes every one of them (the benchmark itself runs with `make bench`)."""
    from devtools.bench import retention as bench
    from devtools.bench.scenarios import Engine as BenchEngine

    seeded = BenchEngine(engine.tenant, engine.actor, "", "", [])
    assert bench.seed_aged(seeded, rows=95, per_run=10) == 90
    assert TaskAttempt.objects.dangerously_unscoped().count() == 90
    [done] = retention.purge(batch_size=4)
    assert done.counts == {"runs": 9, "task_instances": 90, "attempts": 90}
    assert done.batches == 3
    assert bench.seeded_rows(seeded) == 0


def test_a_tenant_whose_pass_fails_does_not_stop_the_others(engine: Engine) -> None:
    other = other_tenant("acme")
    Tenant.objects.filter(pk=other.tenant.pk).update(policy={"retention_days": "soon"})
    mine = finished_run(engine, days_ago=100)
    out = StringIO()
    with pytest.raises(CommandError, match="retention failed for acme: see the log"):
        call_command("retention", stdout=out)
    assert out.getvalue().startswith("eng: deleted ")
    assert not exists(mine)
    assert [done.tenant for done in retention.purge()] == ["eng"]
