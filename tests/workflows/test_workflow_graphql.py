"""Workflows over GraphQL: the same reads, roles, tenant isolation, validation errors (with
their paths) and audit events (source "graphql") as REST."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from tests.graphql_harness import MutationCase, MutationSuite
from tests.harness import Team, gql, gql_error, tenant_state
from workflows import services
from workflows.models import Workflow

SPEC = """\
name: nightly
tags: [reports]
tasks:
  extract: {type: shell, command: [echo, "{{ ds }}"], timeout: 1m}
  done: {type: noop, depends_on: [extract]}
"""
CHANGED = SPEC.replace("timeout: 1m", "timeout: 5m")

APPLY = """mutation($t: String!, $s: String!) {
  applyWorkflow(tenant: $t, spec: $s) {
    created changed version { number contentHash } workflow { name tags paused }
  }
}"""
DELETE = "mutation($t: String!, $n: String!) { deleteWorkflow(tenant: $t, name: $n) }"
PAUSE = "mutation($t: String!, $n: String!) { pauseWorkflow(tenant: $t, name: $n) { paused } }"
UNPAUSE = "mutation($t: String!, $n: String!) { unpauseWorkflow(tenant: $t, name: $n) { paused } }"
WORKFLOWS = """query($t: String!, $tag: String, $paused: Boolean, $search: String) {
  workflows(tenant: $t, tag: $tag, paused: $paused, search: $search) { name }
}"""
WORKFLOW = """query($t: String!, $n: String!) {
  workflow(tenant: $t, name: $n) {
    name paused tags currentVersion { number specYaml } versions { number contentHash }
  }
}"""


def apply(team: Team, text: str = SPEC) -> services.ApplyResult:
    with tenant_scope([team.tenant]):
        data = services.parse_spec(text, team.tenant)
        return services.apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data)


def _new(team: Team) -> dict[str, Any]:
    return {"t": team.slug, "s": SPEC}


def _changed(team: Team) -> dict[str, Any]:
    apply(team)
    return {"t": team.slug, "s": CHANGED}


def _existing(team: Team) -> dict[str, Any]:
    return {"t": team.slug, "n": apply(team).workflow.name}


def _paused(team: Team) -> dict[str, Any]:
    workflow = apply(team).workflow
    with tenant_scope([team.tenant]):
        services.set_paused(actor=Actor.cli(), workflow=workflow, paused=True)
    return {"t": team.slug, "n": workflow.name}


MUTATIONS = [
    MutationCase("applyWorkflow-create", APPLY, _new, "editor", "workflow.create"),
    MutationCase("applyWorkflow-update", APPLY, _changed, "editor", "workflow.update"),
    MutationCase("deleteWorkflow", DELETE, _existing, "editor", "workflow.delete"),
    MutationCase("pauseWorkflow", PAUSE, _existing, "operator", "workflow.pause"),
    MutationCase("unpauseWorkflow", UNPAUSE, _paused, "operator", "workflow.unpause"),
]


class TestWorkflowMutations(MutationSuite):
    cases = MUTATIONS


def test_it_returns_what_an_apply_did(team: Team) -> None:
    created = gql(team.tokens["editor"], APPLY, {"t": team.slug, "s": SPEC}).json()["data"]
    result = created["applyWorkflow"]
    assert (result["created"], result["changed"], result["version"]["number"]) == (True, True, 1)
    assert result["workflow"] == {"name": "nightly", "tags": ["reports"], "paused": False}

    before = tenant_state(team.tenant)
    same = gql(team.tokens["editor"], APPLY, {"t": team.slug, "s": SPEC}).json()["data"]
    assert (same["applyWorkflow"]["created"], same["applyWorkflow"]["changed"]) == (False, False)
    assert same["applyWorkflow"]["version"] == result["version"]
    assert tenant_state(team.tenant) == before

    changed = gql(team.tokens["editor"], APPLY, {"t": team.slug, "s": CHANGED}).json()["data"]
    assert changed["applyWorkflow"]["version"]["number"] == 2


@pytest.mark.parametrize(
    ("spec", "paths"),
    [
        (
            SPEC.replace("name: nightly", "name: Nightly").replace("[extract]", "[extrct]"),
            ["name", "tasks.done.depends_on[0]"],
        ),
        (
            SPEC.replace("timeout: 1m", "timeout: 1x").replace("tags:", "tagz:"),
            ["tasks.extract.timeout", "tagz"],
        ),
        (SPEC.replace("tags: [reports]", "tags: [reports"), [""]),
        (
            SPEC.replace("type: noop", "type: wait_for, kind: dataset, dataset: 's3://x y'"),
            ["tasks.done.dataset"],
        ),
    ],
    ids=[
        "bad-name-and-unknown-dependency",
        "bad-duration-and-unknown-field",
        "yaml-syntax",
        "bad-dataset-name",
    ],
)
def test_it_refuses_an_invalid_spec_with_the_paths(team: Team, spec: str, paths: list[str]) -> None:
    before = tenant_state(team.tenant)
    response = gql(team.tokens["editor"], APPLY, {"t": team.slug, "s": spec})
    error = gql_error(response)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert sorted(e["path"] for e in error["extensions"]["errors"]) == sorted(paths)
    assert all(e["message"] for e in error["extensions"]["errors"])
    assert tenant_state(team.tenant) == before


def test_it_lists_workflows_with_filters(team: Team, outsider: Team) -> None:
    apply(team)
    apply(team, SPEC.replace("nightly", "cleanup").replace("[reports]", "[maintenance]"))
    apply(outsider, SPEC.replace("nightly", "theirs"))
    with tenant_scope([team.tenant]):
        services.set_paused(
            actor=Actor.cli(), workflow=Workflow.objects.get(name="cleanup"), paused=True
        )

    def names(**filters: Any) -> list[str]:
        response = gql(team.tokens["viewer"], WORKFLOWS, {"t": team.slug, **filters})
        return sorted(w["name"] for w in response.json()["data"]["workflows"])

    assert names() == ["cleanup", "nightly"]
    assert names(tag="reports") == ["nightly"]
    assert names(paused=True) == ["cleanup"]
    assert names(paused=False) == ["nightly"]
    assert names(search="CLEAN") == ["cleanup"]


def test_it_reads_a_workflow_with_its_versions(team: Team) -> None:
    apply(team)
    apply(team, CHANGED)
    response = gql(team.tokens["viewer"], WORKFLOW, {"t": team.slug, "n": "nightly"})
    workflow = response.json()["data"]["workflow"]
    assert (workflow["name"], workflow["paused"], workflow["tags"]) == (
        "nightly",
        False,
        ["reports"],
    )
    assert [v["number"] for v in workflow["versions"]] == [2, 1]
    current = workflow["currentVersion"]
    assert current["number"] == 2
    assert yaml.safe_load(current["specYaml"])["tasks"]["extract"]["timeout"] == "5m"


def test_it_hides_another_tenants_workflows_from_reads(team: Team, outsider: Team) -> None:
    apply(outsider)
    for document, variables in (
        (WORKFLOWS, {"t": outsider.slug}),
        (WORKFLOW, {"t": outsider.slug, "n": "nightly"}),
    ):
        response = gql(team.tokens["owner"], document, variables)
        assert gql_error(response)["extensions"]["code"] == "NOT_FOUND"
        assert not any((response.json()["data"] or {}).values())  # nothing of theirs
    missing = gql(team.tokens["viewer"], WORKFLOW, {"t": team.slug, "n": "nightly"})
    assert gql_error(missing)["extensions"]["code"] == "NOT_FOUND"
    assert missing.json()["data"] == {"workflow": None}


def test_it_refuses_reads_and_changes_without_credentials(team: Team) -> None:
    apply(team)
    before = tenant_state(team.tenant)
    for document, variables in (
        (WORKFLOWS, {"t": team.slug}),
        (APPLY, {"t": team.slug, "s": CHANGED}),
        (PAUSE, {"t": team.slug, "n": "nightly"}),
    ):
        response = gql(None, document, variables)
        assert gql_error(response)["extensions"]["code"] == "UNAUTHENTICATED"
    assert tenant_state(team.tenant) == before
