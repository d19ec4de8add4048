"""Idempotent triggers: for 24 hours an `Idempotency-Key` with the same body returns the run
it first made (201, then 200), with another body it is 409; concurrent requests with one
key make exactly one run."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent
from runs.models import IdempotencyKey, WorkflowRun
from tests.harness import Team, api, assert_problem, make_team, tenant_state
from workflows.models import Workflow
from workflows.services import apply_workflow

SPEC: dict[str, Any] = {
    "name": "etl",
    "params": {"table": {"type": "string", "default": "sales"}},
    "tasks": {"extract": {"type": "noop"}},
}


def apply(team: Team) -> None:
    with tenant_scope([team.tenant]):
        apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=SPEC)


def trigger(team: Team, key: str, body: Any = None, client: Client | None = None) -> Any:
    client = client or api(team.tokens["operator"], **{"Idempotency-Key": key})
    url = f"/api/v1/tenants/{team.slug}/workflows/etl/runs/"
    return client.post(
        url, body if body is not None else {"params": {}}, content_type="application/json"
    )


def run_count() -> int:
    return WorkflowRun.objects.dangerously_unscoped().count()


def test_it_returns_the_first_run_for_the_same_key_and_body(team: Team) -> None:
    apply(team)
    first = trigger(team, "nightly-1", {"params": {"table": "orders"}})
    assert first.status_code == 201, first.content
    again = trigger(team, "nightly-1", {"params": {"table": "orders"}})
    assert again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["params"] == {"table": "orders"}
    assert run_count() == 1


def test_it_treats_reordered_keys_of_a_body_as_the_same_body(team: Team) -> None:
    apply(team)
    first = trigger(team, "k", '{"params": {"table": "x"}}')
    again = trigger(team, "k", '{"params":{"table":"x"}}')
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


def test_it_refuses_the_same_key_with_another_body_and_makes_no_run(team: Team) -> None:
    apply(team)
    first = trigger(team, "nightly-1", {"params": {"table": "orders"}})
    before = tenant_state(team.tenant)
    problem = assert_problem(trigger(team, "nightly-1", {"params": {"table": "users"}}), 409)
    assert str(first.json()["id"]) in problem["detail"]
    assert tenant_state(team.tenant) == before
    assert run_count() == 1


def test_it_compares_every_field_of_the_body_force_included(team: Team) -> None:
    apply(team)
    first = trigger(team, "nightly-1", {"params": {}})
    assert first.status_code == 201, first.content
    before = tenant_state(team.tenant)
    problem = assert_problem(trigger(team, "nightly-1", {"params": {}, "force": True}), 409)
    assert str(first.json()["id"]) in problem["detail"]
    assert tenant_state(team.tenant) == before
    # An explicit default is the same body as an omitted field.
    again = trigger(team, "nightly-1", {"params": {}, "force": False})
    assert again.status_code == 200, again.content
    assert run_count() == 1


def test_it_replays_a_forced_trigger_of_a_paused_workflow_with_force_only(team: Team) -> None:
    apply(team)
    Workflow.objects.dangerously_unscoped().filter(name="etl").update(paused=True)
    forced = trigger(team, "catch-up", {"params": {}, "force": True})
    assert forced.status_code == 201, forced.content
    again = trigger(team, "catch-up", {"params": {}, "force": True})
    assert (again.status_code, again.json()["id"]) == (200, forced.json()["id"])
    assert_problem(trigger(team, "catch-up", {"params": {}}), 409)
    assert run_count() == 1


def test_it_makes_a_run_per_key(team: Team) -> None:
    apply(team)
    first, second = trigger(team, "a"), trigger(team, "b")
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert run_count() == 2


def test_it_makes_a_run_per_request_without_a_key(team: Team) -> None:
    apply(team)
    url = f"/api/v1/tenants/{team.slug}/workflows/etl/runs/"
    client = api(team.tokens["operator"])
    ids = {client.post(url, {}, content_type="application/json").json()["id"] for _ in range(2)}
    assert len(ids) == 2
    assert not IdempotencyKey.objects.dangerously_unscoped().exists()


def test_it_keeps_keys_apart_per_workflow(team: Team) -> None:
    apply(team)
    with tenant_scope([team.tenant]):
        apply_workflow(actor=Actor.cli(), tenant=team.tenant, data={**SPEC, "name": "other"})
    client = api(team.tokens["operator"], **{"Idempotency-Key": "shared"})
    etl = trigger(team, "shared", client=client)
    other = client.post(
        f"/api/v1/tenants/{team.slug}/workflows/other/runs/", {}, content_type="application/json"
    )
    assert (etl.status_code, other.status_code) == (201, 201)
    assert etl.json()["workflow"] == "etl"
    assert other.json()["workflow"] == "other"


@pytest.mark.parametrize(
    "key", ["k" * 256, "", "tab\there"], ids=["too-long", "empty", "not-printable"]
)
def test_it_refuses_a_bad_key_and_makes_no_run(team: Team, key: str) -> None:
    apply(team)
    before = tenant_state(team.tenant)
    assert_problem(trigger(team, key), 400, path="Idempotency-Key")
    assert tenant_state(team.tenant) == before


def test_it_accepts_a_key_of_255_characters(team: Team) -> None:
    apply(team)
    assert trigger(team, "k" * 255).status_code == 201
    assert trigger(team, "k" * 255).status_code == 200


def test_it_forgets_a_key_after_24_hours(team: Team) -> None:
    apply(team)
    first = trigger(team, "nightly-1").json()["id"]
    IdempotencyKey.objects.dangerously_unscoped().filter(key="nightly-1").update(
        created_at=timezone.now() - dt.timedelta(hours=24, seconds=1)
    )
    again = trigger(team, "nightly-1")
    assert again.status_code == 201, again.content
    assert again.json()["id"] != first
    assert run_count() == 2
    [key] = IdempotencyKey.objects.dangerously_unscoped().filter(key="nightly-1")
    assert key.run_id == again.json()["id"]


def test_it_still_knows_a_key_just_under_24_hours_old(team: Team) -> None:
    apply(team)
    first = trigger(team, "nightly-1").json()["id"]
    IdempotencyKey.objects.dangerously_unscoped().filter(key="nightly-1").update(
        created_at=timezone.now() - dt.timedelta(hours=23, minutes=59)
    )
    again = trigger(team, "nightly-1")
    assert (again.status_code, again.json()["id"]) == (200, first)


def test_it_keeps_a_key_per_tenant(team: Team, outsider: Team) -> None:
    apply(team)
    apply(outsider)
    mine = trigger(team, "nightly-1")
    theirs = trigger(
        outsider,
        "nightly-1",
        client=api(outsider.tokens["owner"], **{"Idempotency-Key": "nightly-1"}),
    )
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]


def test_it_forbids_a_viewer_even_a_replay(team: Team) -> None:
    apply(team)
    trigger(team, "nightly-1")
    before = tenant_state(team.tenant)
    viewer = api(team.tokens["viewer"], **{"Idempotency-Key": "nightly-1"})
    assert_problem(trigger(team, "nightly-1", client=viewer), 403)
    assert tenant_state(team.tenant) == before


@pytest.mark.django_db(transaction=True)
def test_it_makes_one_run_for_concurrent_requests_with_one_key() -> None:
    team = make_team("acme", roles=["operator"])
    apply(team)
    start = threading.Barrier(20)
    results: list[tuple[int, Any]] = []

    def request() -> None:
        try:
            client = api(team.tokens["operator"], **{"Idempotency-Key": "once"})
            start.wait(timeout=10)
            response = trigger(team, "once", client=client)
            results.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 20
    assert sorted(status for status, _ in results) == [200] * 19 + [201]
    assert len({body["id"] for _, body in results}) == 1
    assert run_count() == 1
    assert IdempotencyKey.objects.dangerously_unscoped().count() == 1
    triggers = AuditEvent.objects.dangerously_unscoped().filter(action="run.trigger")
    assert triggers.count() == 1
