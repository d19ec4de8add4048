"""`triggers: [{event: ...}]`: each event of the tenant's log that matches (type, the
workflow it came from, subject and source globs) starts one run of the subscriber, with
the event in its context and params rendered from it. A refused run (bad params) is in
the subscriber's audit log; a paused or deleted subscriber, or an archived tenant's, gets
nothing; dispatching an event twice starts nothing more."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from events.dispatch import dispatch_one
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent, Tenant
from runs.models import Event, WorkflowRun
from tests.events.support import dispatch_pending, drain, run_once
from tests.runs.engine.helpers import Engine
from workflows.services import delete_workflow, set_paused

pytestmark = pytest.mark.django_db(transaction=True)

INGEST = {"name": "ingest", "tasks": {"load": {"type": "noop"}}}
REPORT = {
    "name": "report",
    "params": {"upstream_run": {"type": "integer", "default": 0}},
    "triggers": [
        {
            "event": {
                "type": "run.succeeded",
                "workflow": "ingest",
                "params": {"upstream_run": "{{ event.data.run.id }}"},
            }
        }
    ],
    "tasks": {
        "build": {
            "type": "python",
            "callable": "runs.library:echo",
            "kwargs": {"subject": "{{ event.subject }}", "upstream": "{{ params.upstream_run }}"},
        }
    },
}


@pytest.fixture
def engine(transactional_db: None, settings: Any) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    return Engine(workers=None)


def reports(engine: Engine) -> list[WorkflowRun]:
    with engine.scope():
        return list(WorkflowRun.objects.filter(workflow__name="report").order_by("id"))


def test_a_run_end_starts_the_subscriber_with_the_event(engine: Engine) -> None:
    ingest = engine.apply(INGEST)
    engine.apply(REPORT)
    upstream = run_once(engine, ingest)
    assert dispatch_pending() == 1
    [run] = reports(engine)
    assert run.trigger_source == "event"
    assert run.params == {"upstream_run": upstream.pk}  # a whole expression keeps its type
    assert run.event is not None
    assert (run.event["type"], run.event["subject"]) == ("run.succeeded", f"runs/{upstream.pk}")
    drain(engine, run)
    with engine.scope():
        result = run.task_instances.get(task_id="build").result
    assert result == {"subject": f"runs/{upstream.pk}", "upstream": upstream.pk}
    with engine.scope():
        audit = (
            AuditEvent.objects.filter(tenant=engine.tenant, action="run.trigger")
            .order_by("seq")
            .last()
        )
    assert audit is not None
    assert audit.changes["extra"]["event"]["type"] == "run.succeeded"


def test_other_workflows_and_types_do_not_match(engine: Engine) -> None:
    other = engine.apply({**INGEST, "name": "other"})
    engine.apply(REPORT)
    run_once(engine, other)  # run.succeeded of another workflow
    failing = engine.apply(
        {"name": "ingest", "tasks": {"load": {"type": "python", "callable": "runs.library:fail"}}}
    )
    run_once(engine, failing)  # run.failed of ingest
    assert dispatch_pending() == 0
    assert reports(engine) == []


def test_subject_and_source_globs_filter(engine: Engine) -> None:
    from runs.engine.events import emit

    engine.apply(
        {
            "name": "on-file",
            "params": {"path": {"type": "string", "default": ""}},
            "triggers": [
                {
                    "event": {
                        "type": "com.acme.file.landed",
                        "filter": {"subject": "s3://bucket/in/*", "source": "/uploader*"},
                        "params": {"path": "{{ event.subject }}"},
                    }
                }
            ],
            "tasks": {"a": {"type": "noop"}},
        }
    )
    for subject, source in [
        ("s3://bucket/in/a.csv", "/uploader/eu"),
        ("s3://bucket/out/b.csv", "/uploader/eu"),
        ("s3://bucket/in/c.csv", "/elsewhere"),
    ]:
        with engine.scope():
            from django.db import transaction

            with transaction.atomic():
                emit(
                    tenant_id=engine.tenant.pk,
                    type="com.acme.file.landed",
                    data={},
                    subject=subject,
                    source=source,
                )
    assert dispatch_pending() == 1
    with engine.scope():
        [run] = WorkflowRun.objects.filter(workflow__name="on-file")
    assert run.params == {"path": "s3://bucket/in/a.csv"}


def test_bad_params_are_refused_and_audited(engine: Engine) -> None:
    ingest = engine.apply(INGEST)
    spec = {**REPORT, "params": {"upstream_run": {"type": "integer", "default": 0, "maximum": 0}}}
    engine.apply(spec)
    run_once(engine, ingest)
    assert dispatch_pending() == 0
    assert reports(engine) == []
    with engine.scope():
        refused = AuditEvent.objects.get(tenant=engine.tenant, action="run.trigger_refused")
    assert refused.changes["extra"]["trigger"] == "triggers[0]"
    assert "params.upstream_run" in str(refused.changes["extra"]["error"])


def test_a_paused_or_deleted_subscriber_gets_nothing(engine: Engine) -> None:
    ingest = engine.apply(INGEST)
    report = engine.apply(REPORT)
    with engine.scope():
        set_paused(actor=engine.actor, workflow=report, paused=True)
    run_once(engine, ingest)
    assert dispatch_pending() == 0
    with engine.scope():
        set_paused(actor=engine.actor, workflow=report, paused=False)
        report.refresh_from_db()
        delete_workflow(actor=engine.actor, workflow=report)
    run_once(engine, ingest)
    assert dispatch_pending() == 0
    assert reports(engine) == []


def test_an_archived_tenants_subscriptions_get_nothing(engine: Engine) -> None:
    ingest = engine.apply(INGEST)
    engine.apply(REPORT)
    run_once(engine, ingest)  # its run.succeeded waits in the log, not dispatched yet
    Tenant.objects.filter(pk=engine.tenant.pk).update(archived_at=timezone.now())
    assert dispatch_pending() == 0
    assert reports(engine) == []


def test_an_event_dispatched_twice_starts_one_run(engine: Engine) -> None:
    ingest = engine.apply(INGEST)
    engine.apply(REPORT)
    run_once(engine, ingest)
    event = Event.objects.dangerously_unscoped().get(type="run.succeeded", workflow=ingest)
    assert dispatch_one(event.pk) == 1
    assert dispatch_one(event.pk) == 0
    Event.objects.dangerously_unscoped().filter(pk=event.pk).update(dispatched_at=None)
    assert dispatch_one(event.pk) == 0  # the idempotency key remembers it
    with tenant_scope([engine.tenant]):
        assert len(reports(engine)) == 1
