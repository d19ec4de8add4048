"""Objects the notification API tests read and change, made in a team's tenant the way the
product makes them: channels and rules through notifications.services, workflows through
apply, runs through trigger_run; events, deliveries and SLA misses as the engine, routing
and the SLA checks write them (rows; nothing here sends a message).

Each `a_...(team)` returns the URL kwargs of what it made, for EndpointCase.setup."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from django.utils import timezone

from notifications import services
from notifications.models import Channel, Delivery, SlaMiss
from orchestrator import crypto
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs import services as run_services
from runs.engine.events import run_link
from runs.models import Event, WorkflowRun
from tests.harness import Team
from workflows.models import Workflow
from workflows.services import apply_workflow

__all__ = [
    "HOOK_PATH",
    "HOOK_URL",
    "SLACK_PATH",
    "SLACK_URL",
    "a_delivery",
    "a_failed_delivery",
    "a_rule",
    "a_run",
    "a_slack_channel",
    "a_webhook_channel",
    "an_email_channel",
    "an_event",
    "an_sla_miss",
    "secrets_of",
    "workflow",
]

# The path of a Slack URL is its key: no answer, audit event or admin page may show it.
SLACK_PATH = "/services/T0ACME/B0ACME/sLaCkKeY7q9Wz"
SLACK_URL = "http://127.0.0.1:9" + SLACK_PATH
HOOK_PATH = "/hooks/acme-hOoKtOkEn4Xy"
HOOK_URL = "http://127.0.0.1:9" + HOOK_PATH
CLI = Actor.cli()
_serial = itertools.count(1)


def a_slack_channel(team: Team, name: str = "team-slack", **fields: Any) -> dict[str, str]:
    services.create_channel(
        actor=CLI, tenant=team.tenant, name=name, kind="slack", url=SLACK_URL, **fields
    )
    return {"channel": name}


def a_webhook_channel(team: Team, name: str = "team-hook") -> dict[str, str]:
    services.create_channel(actor=CLI, tenant=team.tenant, name=name, kind="webhook", url=HOOK_URL)
    return {"channel": name}


def an_email_channel(team: Team, name: str = "team-mail") -> dict[str, str]:
    services.create_channel(
        actor=CLI, tenant=team.tenant, name=name, kind="email", recipients=["data@example.com"]
    )
    return {"channel": name}


def a_rule(team: Team, name: str = "failures", **fields: Any) -> dict[str, str]:
    channel = a_slack_channel(team, name=f"{name}-slack")["channel"]
    fields.setdefault("event_types", ["run.failed"])
    with tenant_scope([team.tenant]):  # a rule's channels are read in the tenant's scope
        services.create_rule(actor=CLI, tenant=team.tenant, name=name, channels=[channel], **fields)
    return {"rule": name}


def workflow(team: Team, name: str = "sales", **spec: Any) -> Workflow:
    with tenant_scope([team.tenant]):
        return apply_workflow(
            actor=CLI,
            tenant=team.tenant,
            data={"name": name, "tasks": {"a": {"type": "noop"}}, **spec},
        ).workflow


def a_run(team: Team, wf: Workflow) -> WorkflowRun:
    with tenant_scope([team.tenant]):
        return run_services.trigger_run(actor=CLI, workflow=wf).run


def an_event(
    team: Team,
    wf: Workflow | None = None,
    run: WorkflowRun | None = None,
    type: str = "run.failed",
    time: dt.datetime | None = None,
) -> Event:
    """An event as the engine writes it (a run's, when a run is given)."""
    data: dict[str, Any] = {"tenant": team.slug, "workflow": wf.name if wf else None}
    if run is not None:
        data.update(run={"id": run.pk, "state": "failed"}, url=run_link(team.slug, run.pk))
    return Event.objects.dangerously_unscoped().create(
        tenant=team.tenant,
        type=type,
        time=time or timezone.now(),
        workflow=wf,
        run=run,
        data=data,
    )


def a_delivery(
    team: Team,
    status: str = Delivery.Status.FAILED,
    event: Event | None = None,
    channel: str = "team-slack",
) -> Delivery:
    """A delivery of a failed run's event to a Slack channel, as routing and sending left it."""
    if not Channel.objects.dangerously_unscoped().filter(tenant=team.tenant, name=channel):
        a_slack_channel(team, name=channel)
    target = Channel.objects.dangerously_unscoped().get(tenant=team.tenant, name=channel)
    event = event or an_event(team, workflow(team, f"wf-{next(_serial)}"))
    failed = status == Delivery.Status.FAILED
    return Delivery.objects.dangerously_unscoped().create(
        tenant=team.tenant,
        key=f"e{event.pk}:c{target.pk}",
        event=event,
        channel=target,
        status=status,
        attempts=3 if failed else 1,
        last_error="HTTP 500 from 127.0.0.1 (gave up after 3 attempts)" if failed else "",
        sent_at=None if failed else timezone.now(),
    )


def a_failed_delivery(team: Team) -> dict[str, str]:
    return {"delivery_id": str(a_delivery(team).pk)}


def an_sla_miss(
    team: Team, wf: Workflow | None = None, kind: str = "run_duration", run: Any = None
) -> SlaMiss:
    wf = wf or workflow(team)
    run_id = run.pk if run is not None else None
    return SlaMiss.objects.dangerously_unscoped().create(
        tenant=team.tenant,
        key=f"{kind}:{wf.pk}:{run_id}:{next(_serial)}",
        kind=kind,
        workflow=wf,
        run=run,
        sla=f"{kind}: 1h",
        due_at=timezone.now() - dt.timedelta(minutes=5),
    )


def secrets_of(channel_name: str, team: Team) -> list[str]:
    """What must never be shown of a channel: its URL's secret path and its signing secret
    (and the encrypted forms)."""
    row = Channel.objects.dangerously_unscoped().get(tenant=team.tenant, name=channel_name)
    found = [SLACK_PATH, HOOK_PATH, "sLaCkKeY", "hOoKtOkEn"]
    if row.url_encrypted:
        found.append(row.url_encrypted)
    if row.signing_secret_encrypted:
        found += [row.signing_secret_encrypted, crypto.decrypt(row.signing_secret_encrypted)]
    return found
