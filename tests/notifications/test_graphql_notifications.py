"""Notifications and events over GraphQL: the same roles, tenant isolation, validation paths,
filters and audit events (source "graphql") as REST. A channel's URL is no field at all and
its signing secret only comes back from the mutations that make one."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from notifications import transports
from notifications.models import Delivery
from tests.graphql_harness import MutationCase, MutationSuite
from tests.harness import Team, gql, gql_error, new_audit_events, tenant_state
from tests.notifications.objects import (
    HOOK_PATH,
    HOOK_URL,
    SLACK_PATH,
    SLACK_URL,
    a_delivery,
    a_rule,
    a_run,
    a_slack_channel,
    a_webhook_channel,
    an_email_channel,
    an_event,
    an_sla_miss,
    workflow,
)
from tests.notifications.servers import HttpReceiver

CREATE_CHANNEL = """mutation($t: String!, $n: String!, $k: String!, $u: String, $r: [String!]) {
  createNotificationChannel(tenant: $t, name: $n, kind: $k, url: $u, recipients: $r) {
    channel { name kind enabled urlHint recipients } signingSecret
  }
}"""
UPDATE_CHANNEL = """mutation($t: String!, $n: String!, $u: String, $e: Boolean) {
  updateNotificationChannel(tenant: $t, name: $n, url: $u, enabled: $e) { name enabled urlHint }
}"""
DELETE_CHANNEL = """mutation($t: String!, $n: String!) {
  deleteNotificationChannel(tenant: $t, name: $n)
}"""
TEST_CHANNEL = """mutation($t: String!, $n: String!) {
  testNotificationChannel(tenant: $t, name: $n) { ok answer }
}"""
ROTATE = """mutation($t: String!, $n: String!) {
  rotateNotificationChannelSecret(tenant: $t, name: $n) { channel { name } signingSecret }
}"""
CREATE_RULE = """mutation($t: String!, $n: String!, $c: [String!]!, $e: [String!], $q: String) {
  createNotificationRule(tenant: $t, name: $n, channels: $c, eventTypes: $e, quietPeriod: $q) {
    name channels eventTypes workflows tags quietPeriod enabled
  }
}"""
UPDATE_RULE = """mutation($t: String!, $n: String!, $q: String) {
  updateNotificationRule(tenant: $t, name: $n, quietPeriod: $q, enabled: false) {
    name quietPeriod enabled
  }
}"""
DELETE_RULE = "mutation($t: String!, $n: String!) { deleteNotificationRule(tenant: $t, name: $n) }"
RETRY = """mutation($t: String!, $id: Int!) {
  retryDelivery(tenant: $t, id: $id) { id status attempts channel }
}"""
DELIVERIES = """query($t: String!, $s: String, $c: String, $type: String, $w: String, $r: Int,
                      $after: DateTime, $before: Int, $limit: Int! = 50) {
  deliveries(tenant: $t, status: $s, channel: $c, type: $type, workflow: $w, run: $r,
             createdAfter: $after, beforeId: $before, limit: $limit) {
    id event eventType workflow runId channel channelKind rule kind status attempts lastError
  }
}"""
SLA_MISSES = """query($t: String!, $w: String, $k: String, $r: Int) {
  slaMisses(tenant: $t, workflow: $w, kind: $k, run: $r) { id kind workflow runId sla event }
}"""
EVENTS = """query($t: String!, $types: [String!], $w: String, $r: Int, $since: DateTime,
                  $until: DateTime, $before: Int, $limit: Int! = 50) {
  events(tenant: $t, types: $types, workflow: $w, run: $r, since: $since, until: $until,
         beforeId: $before, limit: $limit) {
    id uid type workflow runId taskId routedAt data cloudevent
  }
}"""
LISTS = {
    "notificationChannels": "notificationChannels(tenant: $t) { name }",
    "notificationRules": "notificationRules(tenant: $t) { name channels }",
    "deliveries": "deliveries(tenant: $t) { id }",
    "slaMisses": "slaMisses(tenant: $t) { id }",
    "events": "events(tenant: $t) { uid }",
}


@pytest.fixture(autouse=True)
def _loopback_allowed(settings: Any) -> None:
    settings.NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]


def _slack(team: Team) -> dict[str, Any]:
    return {"t": team.slug, **{"n": a_slack_channel(team)["channel"]}}


def _hook(team: Team) -> dict[str, Any]:
    return {"t": team.slug, "n": a_webhook_channel(team)["channel"]}


def _rule(team: Team) -> dict[str, Any]:
    return {"t": team.slug, "n": a_rule(team)["rule"], "q": "5m"}


def _new_rule(team: Team) -> dict[str, Any]:
    return {"t": team.slug, "n": "r", "c": [a_slack_channel(team)["channel"]], "q": "10m"}


def _failed(team: Team) -> dict[str, Any]:
    return {"t": team.slug, "id": a_delivery(team).pk}


MUTATIONS = [
    MutationCase(
        "createNotificationChannel", CREATE_CHANNEL,
        lambda t: {"t": t.slug, "n": "team-slack", "k": "slack", "u": SLACK_URL},
        "admin", "notification_channel.create",
    ),
    MutationCase(
        "updateNotificationChannel", UPDATE_CHANNEL,
        lambda t: {**_slack(t), "u": SLACK_URL + "2", "e": False},
        "admin", "notification_channel.update",
    ),
    MutationCase(
        "deleteNotificationChannel", DELETE_CHANNEL, _slack, "admin",
        "notification_channel.delete",
    ),
    MutationCase(
        "rotateNotificationChannelSecret", ROTATE, _hook, "admin",
        "notification_channel.rotate_secret",
    ),
    MutationCase(
        "createNotificationRule", CREATE_RULE, _new_rule, "editor", "notification_rule.create"
    ),
    MutationCase(
        "updateNotificationRule", UPDATE_RULE, _rule, "editor", "notification_rule.update"
    ),
    MutationCase(
        "deleteNotificationRule", DELETE_RULE, _rule, "editor", "notification_rule.delete"
    ),
    MutationCase("retryDelivery", RETRY, _failed, "operator", "delivery.retry"),
]  # fmt: skip


class TestNotificationMutations(MutationSuite):
    cases = MUTATIONS
    never_returned = (SLACK_PATH, HOOK_PATH, "gAAAAA")


def test_a_webhook_secret_comes_back_once_and_signs(
    team: Team, http_receiver: HttpReceiver
) -> None:
    variables = {"t": team.slug, "n": "hook", "k": "webhook", "u": http_receiver.url("/h")}
    created = gql(team.tokens["admin"], CREATE_CHANNEL, variables).json()["data"]
    secret = created["createNotificationChannel"]["signingSecret"]
    assert created["createNotificationChannel"]["channel"] == {
        "name": "hook",
        "kind": "webhook",
        "enabled": True,
        "urlHint": f"http://127.0.0.1:{http_receiver.port}/…",
        "recipients": [],
    }
    assert secret.startswith("whsec_")
    listed = gql(team.tokens["viewer"], "query($t: String!) { " + LISTS["notificationChannels"]
                 + " }", {"t": team.slug})  # fmt: skip
    assert listed.json()["data"] == {"notificationChannels": [{"name": "hook"}]}
    assert secret.encode() not in listed.content
    count = len(new_audit_events(team.tenant, 0))
    tested = gql(team.tokens["admin"], TEST_CHANNEL, {"t": team.slug, "n": "hook"}).json()
    assert tested["data"]["testNotificationChannel"] == {
        "ok": True,
        "answer": "HTTP 200 from 127.0.0.1",
    }
    assert new_audit_events(team.tenant, count) == []  # a test changes nothing
    [post] = http_receiver.wait(1)
    assert transports.verify(secret, post.headers, post.body)


def test_it_has_no_field_for_a_url_or_secret(team: Team) -> None:
    a_webhook_channel(team)
    for field in ("url", "urlEncrypted", "signingSecret", "signingSecretEncrypted"):
        document = f"query($t: String!) {{ notificationChannels(tenant: $t) {{ name {field} }} }}"
        response = gql(team.tokens["owner"], document, {"t": team.slug}).json()
        assert "Cannot query field" in response["errors"][0]["message"]
    assert HOOK_URL not in str(new_audit_events(team.tenant, 0))


def test_every_member_reads_the_lists_and_no_one_else(team: Team, outsider: Team) -> None:
    a_rule(team)
    a_delivery(team)
    an_sla_miss(team)
    a_rule(outsider)
    a_delivery(outsider)
    an_sla_miss(outsider)
    for field, selection in LISTS.items():
        document = f"query($t: String!) {{ {selection} }}"
        mine = gql(team.tokens["viewer"], document, {"t": team.slug}).json()
        assert "errors" not in mine, mine
        assert len(mine["data"][field]) >= 1
        theirs = gql(team.tokens["owner"], document, {"t": outsider.slug})
        assert gql_error(theirs)["extensions"]["code"] == "NOT_FOUND"
    rules = gql(team.tokens["viewer"], f"query($t: String!) {{ {LISTS['notificationRules']} }}",
                {"t": team.slug}).json()  # fmt: skip
    assert rules["data"]["notificationRules"] == [
        {"name": "failures", "channels": ["failures-slack"]}
    ]


def test_testing_a_channel_is_for_admins(team: Team) -> None:
    variables = {"t": team.slug, "n": an_email_channel(team)["channel"]}
    for role in ("viewer", "operator", "editor"):
        response = gql(team.tokens[role], TEST_CHANNEL, variables)
        assert gql_error(response)["extensions"]["code"] == "FORBIDDEN"
    ok = gql(team.tokens["admin"], TEST_CHANNEL, variables).json()["data"]
    assert ok["testNotificationChannel"] == {"ok": True, "answer": "accepted for 1 recipient"}


def test_it_filters_deliveries(team: Team) -> None:
    an_email_channel(team)
    sales, stock = workflow(team, "sales"), workflow(team, "stock")
    run = a_run(team, sales)
    failed = a_delivery(team, event=an_event(team, sales, run))
    sent = a_delivery(team, status="sent", event=an_event(team, stock, type="run.succeeded"))
    mailed = a_delivery(team, status="sent", event=an_event(team, stock), channel="team-mail")

    def ids(**variables: Any) -> list[int]:
        response = gql(team.tokens["viewer"], DELIVERIES, {"t": team.slug, **variables}).json()
        assert "errors" not in response, response
        return [int(d["id"]) for d in response["data"]["deliveries"]]

    assert ids() == [mailed.pk, sent.pk, failed.pk]
    assert ids(s="failed") == [failed.pk]
    assert ids(c="team-mail") == [mailed.pk]
    assert ids(type="run.succeeded") == [sent.pk]
    assert ids(w="sales") == [failed.pk]
    assert ids(r=run.pk) == [failed.pk]
    assert ids(before=mailed.pk, limit=1) == [sent.pk]
    Delivery.objects.dangerously_unscoped().filter(pk=failed.pk).update(
        created_at=timezone.now() - dt.timedelta(days=2)
    )
    assert ids(after=(timezone.now() - dt.timedelta(days=1)).isoformat()) == [mailed.pk, sent.pk]
    one = gql(team.tokens["viewer"], DELIVERIES, {"t": team.slug, "r": run.pk}).json()
    assert one["data"]["deliveries"][0] | {"id": None} == {
        "id": None,
        "event": str(failed.event.uid),
        "eventType": "run.failed",
        "workflow": "sales",
        "runId": run.pk,
        "channel": "team-slack",
        "channelKind": "slack",
        "rule": None,
        "kind": "event",
        "status": "failed",
        "attempts": 3,
        "lastError": failed.last_error,
    }


def test_it_filters_sla_misses_and_events(team: Team) -> None:
    sales, stock = workflow(team, "sales"), workflow(team, "stock")
    run = a_run(team, sales)
    late = an_sla_miss(team, sales, run=run)
    deadline = an_sla_miss(team, stock, kind="deadline")
    misses = gql(team.tokens["viewer"], SLA_MISSES, {"t": team.slug, "k": "deadline"}).json()
    assert misses["data"]["slaMisses"] == [
        {
            "id": str(deadline.pk),
            "kind": "deadline",
            "workflow": "stock",
            "runId": None,
            "sla": "deadline: 1h",
            "event": None,
        }
    ]
    by_run = gql(team.tokens["viewer"], SLA_MISSES, {"t": team.slug, "r": run.pk}).json()
    assert [m["id"] for m in by_run["data"]["slaMisses"]] == [str(late.pk)]

    now = timezone.now()
    old = an_event(team, sales, run, time=now - dt.timedelta(days=2))
    ok = an_event(team, sales, type="run.succeeded", time=now - dt.timedelta(hours=1))
    missed = an_event(team, stock, type="sla.missed", time=now)

    def uids(**variables: Any) -> list[str]:
        response = gql(team.tokens["viewer"], EVENTS, {"t": team.slug, **variables}).json()
        assert "errors" not in response, response
        return [e["uid"] for e in response["data"]["events"]]

    everything = [str(e.uid) for e in (missed, ok, old)]
    assert uids() == everything
    assert uids(types=["run.failed", "sla.missed"]) == [everything[0], everything[2]]
    assert uids(w="sales") == everything[1:]
    assert uids(r=run.pk) == [everything[2]]
    assert uids(since=(now - dt.timedelta(days=1)).isoformat()) == everything[:2]
    assert uids(until=(now - dt.timedelta(minutes=1)).isoformat()) == everything[1:]
    assert uids(before=missed.pk, limit=1) == [everything[1]]
    [event] = gql(team.tokens["viewer"], EVENTS, {"t": team.slug, "r": run.pk}).json()["data"][
        "events"
    ]
    assert (event["type"], event["workflow"], event["runId"]) == ("run.failed", "sales", run.pk)
    cloudevent = event["cloudevent"]
    assert (cloudevent["id"], cloudevent["source"], cloudevent["subject"]) == (
        str(old.uid),
        "/tenants/acme/workflows/sales",
        f"runs/{run.pk}",
    )
    assert cloudevent["data"] == event["data"] == old.data


@pytest.mark.parametrize(
    ("document", "variables", "path"),
    [
        (DELIVERIES, {"s": "lost"}, "status"),
        (DELIVERIES, {"type": "run.exploded"}, "type"),
        (DELIVERIES, {"limit": 0}, "limit"),
        (SLA_MISSES, {"k": "late"}, "kind"),
        (EVENTS, {"types": ["run.failed", "-nope"]}, "type"),
    ],
)
def test_it_refuses_a_bad_filter_naming_it(
    team: Team, document: str, variables: dict[str, Any], path: str
) -> None:
    error = gql_error(gql(team.tokens["viewer"], document, {"t": team.slug, **variables}))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert [e["path"] for e in error["extensions"]["errors"]] == [path]


def test_it_refuses_bad_input_with_paths(team: Team) -> None:
    a_slack_channel(team)
    before = tenant_state(team.tenant)
    variables = {"t": team.slug, "n": "Bad Name", "c": ["team-slack", "nope"], "e": ["x"]}
    error = gql_error(gql(team.tokens["editor"], CREATE_RULE, variables))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert sorted(e["path"] for e in error["extensions"]["errors"]) == [
        "channels[1]",
        "event_types[0]",
        "name",
    ]
    variables = {"t": team.slug, "n": "m", "k": "email", "r": ["not-an-address"]}
    error = gql_error(gql(team.tokens["admin"], CREATE_CHANNEL, variables))
    assert [e["path"] for e in error["extensions"]["errors"]] == ["recipients[0]"]
    assert tenant_state(team.tenant) == before


def test_a_sent_delivery_is_not_retried(team: Team) -> None:
    variables = {"t": team.slug, "id": a_delivery(team, status="sent").pk}
    before = tenant_state(team.tenant)
    assert gql_error(gql(team.tokens["operator"], RETRY, variables))["extensions"]["code"] == (
        "CONFLICT"
    )
    assert tenant_state(team.tenant) == before
