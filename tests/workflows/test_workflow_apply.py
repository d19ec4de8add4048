"""Applying a spec (service and REST): version 1 on create, nothing on an identical spec,
a new version on a change; YAML and JSON are the same spec; versions never change."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.utils import Error as DatabaseError

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from tests.harness import (
    Team,
    api,
    assert_problem,
    audit_count,
    new_audit_events,
    send,
    tenant_state,
)
from workflows import services
from workflows.models import Workflow, WorkflowVersion
from workflows.validation import parse_document, validate_spec

SPEC_YAML = """\
name: daily-report
description: Build the daily report
tags: [reports]
schedule: {cron: "0 2 * * *", timezone: Europe/Berlin, start: 2026-01-01}
params:
  region: {type: string, enum: [eu, us], default: eu}
defaults: {retries: 2, retry_delay: 1m30s}
tasks:
  extract:
    type: shell
    command: ["echo", "{{ ds }} {{ params.region }}"]
  build: {type: python, callable: "runs.library:echo", depends_on: [extract], timeout: 90}
  done: {type: noop, depends_on: [build]}
"""


def a_spec(**changes: Any) -> dict[str, Any]:
    """SPEC_YAML as JSON, with the durations written the other way round."""
    spec: dict[str, Any] = {
        "name": "daily-report",
        "description": "Build the daily report",
        "tags": ["reports"],
        "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Berlin", "start": "2026-01-01"},
        "params": {"region": {"type": "string", "enum": ["eu", "us"], "default": "eu"}},
        "defaults": {"retries": 2, "retry_delay": "90"},
        "tasks": {
            "extract": {"type": "shell", "command": ["echo", "{{ ds }} {{ params.region }}"]},
            "build": {
                "type": "python",
                "callable": "runs.library:echo",
                "depends_on": ["extract"],
                "timeout": "1m30s",
            },
            "done": {"type": "noop", "depends_on": ["build"]},
        },
    }
    return {**spec, **changes}


def changed_spec() -> dict[str, Any]:
    tasks = a_spec()["tasks"]
    return a_spec(tasks={**tasks, "build": {**tasks["build"], "timeout": "5m"}})


def workflows_url(team: Team) -> str:
    return f"/api/v1/tenants/{team.slug}/workflows/"


def versions_of(team: Team, name: str = "daily-report") -> list[WorkflowVersion]:
    rows = WorkflowVersion.objects.dangerously_unscoped().filter(
        tenant=team.tenant, workflow__name=name
    )
    return list(rows.order_by("number"))


def apply(team: Team, data: Any) -> services.ApplyResult:
    with tenant_scope([team.tenant]):
        return services.apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data)


def put_yaml(team: Team, role: str, text: str, name: str = "daily-report") -> Any:
    url = f"{workflows_url(team)}{name}/"
    return api(team.tokens[role]).put(url, text, content_type="application/yaml")


def test_it_creates_a_workflow_at_version_1(team: Team) -> None:
    count = audit_count(team.tenant)
    response = send(team.tokens["editor"], "POST", workflows_url(team), a_spec())
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["created"], body["changed"]) == ("daily-report", True, True)
    assert (body["description"], body["tags"], body["paused"]) == (
        "Build the daily report",
        ["reports"],
        False,
    )
    current = body["current_version"]
    assert (current["number"], current["author"]) == (1, "acme-editor")
    assert current["content_hash"] == validate_spec(a_spec()).content_hash
    [version] = versions_of(team)
    assert (version.number, version.author_id) == (1, team.users["editor"].pk)
    [event] = new_audit_events(team.tenant, count)
    assert (event.action, event.source) == ("workflow.create", "api")
    assert event.changes["after"]["version"] == 1


def test_it_changes_nothing_when_the_same_spec_is_applied_again(team: Team) -> None:
    send(team.tokens["editor"], "POST", workflows_url(team), a_spec())
    before = tenant_state(team.tenant)
    for response in (
        send(team.tokens["editor"], "POST", workflows_url(team), a_spec()),
        send(team.tokens["editor"], "PUT", f"{workflows_url(team)}daily-report/", a_spec()),
        put_yaml(team, "editor", SPEC_YAML),
    ):
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["created"], body["changed"]) == (False, False)
        assert body["current_version"]["number"] == 1
    assert tenant_state(team.tenant) == before


def test_it_stores_a_new_version_when_the_spec_changes(team: Team) -> None:
    first = apply(team, a_spec())
    count = audit_count(team.tenant)
    url = f"{workflows_url(team)}daily-report/"
    response = send(team.tokens["editor"], "PUT", url, changed_spec())
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["created"], body["changed"], body["id"]) == (False, True, first.workflow.pk)
    assert body["current_version"]["number"] == 2
    assert [v.number for v in versions_of(team)] == [1, 2]
    [event] = new_audit_events(team.tenant, count)
    assert event.action == "workflow.update"
    assert (event.changes["before"]["version"], event.changes["after"]["version"]) == (1, 2)
    assert event.changes["after"]["spec"]["tasks"]["build"]["timeout"] == "5m"


def test_it_numbers_versions_in_the_service(team: Team) -> None:
    created = apply(team, a_spec())
    same = apply(team, a_spec())
    changed = apply(team, changed_spec())
    back = apply(team, a_spec())  # back to the first spec: still a new version
    assert (created.created, created.changed, created.version.number) == (True, True, 1)
    assert (same.created, same.changed, same.version.pk) == (False, False, created.version.pk)
    assert (changed.changed, changed.version.number) == (True, 2)
    assert (back.changed, back.version.number) == (True, 3)
    assert back.version.content_hash == created.version.content_hash
    assert Workflow.objects.dangerously_unscoped().get(
        pk=created.workflow.pk
    ).current_version_id == (back.version.pk)


def test_it_gives_yaml_and_json_of_one_spec_the_same_content_hash(team: Team) -> None:
    from_yaml = validate_spec(parse_document(SPEC_YAML))
    from_json = validate_spec(parse_document(json.dumps(a_spec())))
    assert from_yaml.content_hash == from_json.content_hash
    assert from_yaml.canonical == from_json.canonical
    assert from_yaml.canonical["defaults"]["retry_delay"] == "1m30s"
    assert from_yaml.canonical["tasks"]["build"]["timeout"] == "1m30s"

    response = put_yaml(team, "editor", SPEC_YAML)
    assert response.status_code == 201, response.content
    assert response.json()["current_version"]["content_hash"] == from_yaml.content_hash
    again = send(team.tokens["editor"], "POST", workflows_url(team), a_spec())
    assert (again.status_code, again.json()["changed"]) == (200, False)


def test_it_treats_90_and_1m30s_as_the_same_duration() -> None:
    hashes = {
        validate_spec(a_spec(defaults={"retries": 2, "retry_delay": delay})).content_hash
        for delay in ("90", 90, "1m30s", "90s", "1M30S")
    }
    assert len(hashes) == 1
    other = validate_spec(a_spec(defaults={"retries": 2, "retry_delay": "91"})).content_hash
    assert other not in hashes


def test_it_keeps_earlier_versions_as_they_were(team: Team) -> None:
    original = validate_spec(a_spec())
    apply(team, a_spec())
    apply(team, changed_spec())
    first, second = versions_of(team)
    assert (first.spec, first.content_hash) == (original.canonical, original.content_hash)
    assert second.spec["tasks"]["build"]["timeout"] == "5m"
    url = f"{workflows_url(team)}daily-report/versions/1/"
    assert send(team.tokens["viewer"], "GET", url).json()["spec"] == original.canonical


def test_it_refuses_to_change_a_stored_version(team: Team) -> None:
    version = apply(team, a_spec()).version
    original = dict(version.spec)

    version.spec = {"name": "tampered"}
    with pytest.raises(TypeError, match="immutable"):
        version.save()
    for sql in (
        "UPDATE workflows_workflowversion SET spec = '{}' WHERE id = %s",
        "DELETE FROM workflows_workflowversion WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [version.pk])

    [stored] = versions_of(team)
    assert stored.spec == original


def test_it_refuses_a_spec_sent_to_another_workflows_url(team: Team) -> None:
    apply(team, a_spec())
    before = tenant_state(team.tenant)
    url = f"{workflows_url(team)}weekly-report/"
    body = assert_problem(send(team.tokens["editor"], "PUT", url, changed_spec()), 400, path="name")
    assert body["errors"] == [
        {
            "path": "name",
            "message": "the spec is named 'daily-report' but was sent to 'weekly-report'",
        }
    ]
    assert tenant_state(team.tenant) == before


def test_it_creates_a_workflow_put_to_its_own_url(team: Team) -> None:
    response = send(team.tokens["editor"], "PUT", f"{workflows_url(team)}daily-report/", a_spec())
    assert response.status_code == 201, response.content
    assert (response.json()["created"], response.json()["current_version"]["number"]) == (True, 1)


def test_it_refuses_an_invalid_spec_with_every_path_and_stores_nothing(team: Team) -> None:
    before = tenant_state(team.tenant)
    spec = a_spec(name="Daily Report", schedule={"cron": "0 2 * * *", "timezone": "Moon/Base"})
    body = assert_problem(send(team.tokens["editor"], "POST", workflows_url(team), spec), 400)
    assert [e["path"] for e in body["errors"]] == ["name", "schedule.timezone"]
    assert body["type"] == "urn:orchestrator:problem:validation-error"
    bad_yaml = put_yaml(team, "editor", SPEC_YAML.replace("tags: [reports]", "tags: [reports"))
    body = assert_problem(bad_yaml, 400, path="")
    assert "invalid YAML at line" in body["errors"][0]["message"]
    assert tenant_state(team.tenant) == before


def test_it_refuses_rlimits_above_the_tenants_task_limits(team: Team) -> None:
    """A task may lower its tenant's limits, never raise them: refused at apply time with
    the field's path and the limit, and nothing stored."""
    team.tenant.policy = {"task_limits": {"memory_mb": 512}}
    team.tenant.save(update_fields=["policy"])
    before = tenant_state(team.tenant)
    task = {"type": "shell", "command": ["true"], "rlimits": {"memory_mb": 1024}}
    spec = {"name": "greedy", "tasks": {"t": task}}
    body = assert_problem(send(team.tokens["editor"], "POST", workflows_url(team), spec), 400)
    assert body["errors"] == [
        {
            "path": "tasks.t.rlimits.memory_mb",
            "message": "1024 is above this tenant's limit of 512; ask for at most 512 "
            "(platform staff set it in the tenant's policy task_limits)",
        }
    ]
    assert tenant_state(team.tenant) == before
    task["rlimits"] = {"memory_mb": 256, "file_size_mb": 5}  # lower: fine
    assert apply(team, spec).created
