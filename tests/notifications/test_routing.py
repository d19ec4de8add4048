"""Routing: an event becomes one delivery per chosen channel, once, by the tenant's rules
and the workflow spec's `notify`; quiet periods collapse a storm into one message and a
count. No messages go out here (the tests run in one transaction that never commits)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from notifications import routing
from notifications.models import Channel, Delivery, QuietWindow, Rule
from orchestrator import crypto
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.engine import events
from runs.models import Event
from tests.harness import Team, make_team
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db


def channel(team: Team, name: str, **fields: Any) -> Channel:
    fields.setdefault("kind", "webhook")
    if fields["kind"] != "email":
        fields.setdefault("url_encrypted", crypto.encrypt("http://127.0.0.1:9/hook"))
    return Channel.objects.dangerously_unscoped().create(tenant=team.tenant, name=name, **fields)


def rule(team: Team, name: str, channels: list[Channel], **fields: Any) -> Rule:
    made = Rule.objects.dangerously_unscoped().create(tenant=team.tenant, name=name, **fields)
    with tenant_scope([team.tenant]):
        made.channels.set(channels)
    return made


def workflow(team: Team, name: str = "sales", **spec: Any) -> Any:
    with tenant_scope([team.tenant]):
        return apply_workflow(
            actor=Actor.cli(),
            tenant=team.tenant,
            data={"name": name, "tasks": {"a": {"type": "noop"}}, **spec},
        ).workflow


def event(team: Team, wf: Any, type: str = "run.failed") -> Event:
    return events.emit(
        tenant_id=team.tenant.pk,
        type=type,
        workflow_id=wf.pk if wf is not None else None,
        data={"tenant": team.slug, "workflow": wf.name if wf is not None else None},
    )


def deliveries(team: Team) -> list[tuple[str, str, str]]:
    return sorted(
        Delivery.objects.dangerously_unscoped()
        .filter(tenant=team.tenant)
        .values_list("channel__name", "status", "kind")
    )


@pytest.fixture
def team(db: None) -> Team:
    return make_team("acme", roles=[])


def test_it_makes_one_pending_delivery_per_channel_and_routes_once(team: Team) -> None:
    slack, hook = channel(team, "slack", kind="slack"), channel(team, "hook")
    rule(team, "failures", [slack, hook], event_types=["run.failed"])
    first = event(team, workflow(team))
    assert routing.route_one(first.pk) == 2
    assert deliveries(team) == [("hook", "pending", "event"), ("slack", "pending", "event")]
    first.refresh_from_db()
    assert first.routed_at is not None
    assert routing.route_one(first.pk) == 0  # a redelivered message routes nothing
    assert len(deliveries(team)) == 2


@pytest.mark.parametrize(
    ("fields", "routed"),
    [
        ({}, True),
        ({"event_types": ["run.succeeded"]}, False),
        ({"event_types": ["run.succeeded", "run.failed"]}, True),
        ({"workflows": ["other"]}, False),
        ({"workflows": ["sales"]}, True),
        ({"tags": ["finance"]}, False),
        ({"tags": ["finance", "nightly"]}, True),
        ({"enabled": False}, False),
    ],
)
def test_rules_match_by_type_workflow_and_tag(
    team: Team, fields: dict[str, Any], routed: bool
) -> None:
    rule(team, "r", [channel(team, "hook")], **fields)
    made = routing.route_one(event(team, workflow(team, tags=["nightly"])).pk)
    assert made == (1 if routed else 0)


def test_two_rules_naming_one_channel_make_one_delivery(team: Team) -> None:
    hook = channel(team, "hook")
    rule(team, "all", [hook])
    rule(team, "failures", [hook], event_types=["run.failed"])
    assert routing.route_one(event(team, workflow(team)).pk) == 1


def test_a_disabled_channel_gets_nothing(team: Team) -> None:
    rule(team, "all", [channel(team, "hook", enabled=False)])
    assert routing.route_one(event(team, workflow(team)).pk) == 0


def test_the_spec_notify_routes_to_its_channels(team: Team) -> None:
    hook = channel(team, "team-data-hook")
    wf = workflow(team, notify={"on": ["run.failed"], "channels": ["team-data-hook"]})
    assert routing.route_one(event(team, wf, "run.failed").pk) == 1
    assert routing.route_one(event(team, wf, "run.succeeded").pk) == 0
    [row] = Delivery.objects.dangerously_unscoped().filter(channel=hook)
    assert row.rule is None


def test_another_tenants_rules_and_channels_are_never_used(team: Team) -> None:
    other = make_team("globex", roles=[])
    rule(other, "all", [channel(other, "hook")])
    assert routing.route_one(event(team, workflow(team)).pk) == 0


def test_a_storm_inside_a_quiet_period_is_one_message_then_a_count(team: Team) -> None:
    hook = channel(team, "hook")
    rule(team, "quiet", [hook], quiet_period=600)
    wf = workflow(team)
    for _ in range(50):
        routing.route_one(event(team, wf).pk)
    statuses = [s for _, s, _ in deliveries(team)]
    assert statuses.count("pending") == 1
    assert statuses.count("suppressed") == 49
    assert routing.flush_quiet_windows() == 0  # the period has not ended
    QuietWindow.objects.dangerously_unscoped().update(
        ends_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert routing.flush_quiet_windows() == 1
    [summary] = Delivery.objects.dangerously_unscoped().filter(kind="summary")
    assert summary.suppressed_count == 49
    assert summary.status == "pending"
    assert summary.channel == hook
    assert routing.flush_quiet_windows() == 0  # counted once


def test_a_quiet_period_is_per_workflow(team: Team) -> None:
    rule(team, "quiet", [channel(team, "hook")], quiet_period=600)
    routing.route_one(event(team, workflow(team, "one")).pk)
    routing.route_one(event(team, workflow(team, "two")).pk)
    assert [s for _, s, _ in deliveries(team)] == ["pending", "pending"]


def test_an_event_after_the_period_sends_the_count_first(team: Team) -> None:
    rule(team, "quiet", [channel(team, "hook")], quiet_period=600)
    wf = workflow(team)
    for _ in range(3):
        routing.route_one(event(team, wf).pk)
    QuietWindow.objects.dangerously_unscoped().update(
        ends_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert routing.route_one(event(team, wf).pk) == 2  # the count of 2, and this event
    kinds = sorted(
        Delivery.objects.dangerously_unscoped()
        .filter(status="pending")
        .values_list("kind", "suppressed_count")
    )
    assert kinds == [("event", 0), ("event", 0), ("summary", 2)]


def test_the_reconciler_routes_what_a_crash_left(team: Team) -> None:
    rule(team, "all", [channel(team, "hook")])
    left = event(team, workflow(team))
    assert routing.route_leftovers() == 0  # too young: its message may still come
    Event.objects.dangerously_unscoped().filter(pk=left.pk).update(
        time=timezone.now() - dt.timedelta(seconds=30)
    )
    assert routing.route_leftovers() == 1
    left.refresh_from_db()
    assert left.routed_at is not None
    assert len(deliveries(team)) == 1
