"""/api/v1/tenants/{tenant}/workflows/...: who may read, apply, delete and pause; tenants
never see each other's workflows; reads, versions (JSON or YAML), diffs and filters."""

from __future__ import annotations

from typing import Any

import yaml

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    api,
    assert_problem,
    audit_count,
    for_cases,
    make_team,
    new_audit_events,
    send,
    tenant_state,
)
from workflows import services
from workflows.models import Workflow, WorkflowVersion

WORKFLOWS = "/api/v1/tenants/{tenant}/workflows/"
WORKFLOW = WORKFLOWS + "{name}/"
VERSIONS = WORKFLOW + "versions/"


def spec(name: str = "nightly", timeout: str = "1m", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "tasks": {
            "extract": {"type": "shell", "command": ["echo", "{{ ds }}"], "timeout": timeout},
            "done": {"type": "noop", "depends_on": ["extract"]},
        },
        **fields,
    }


def apply(team: Team, data: dict[str, Any]) -> services.ApplyResult:
    with tenant_scope([team.tenant]):
        return services.apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data)


def a_workflow(team: Team) -> dict[str, str]:
    return {"name": apply(team, spec()).workflow.name}


def two_versions(team: Team) -> dict[str, str]:
    apply(team, spec())
    return {"name": apply(team, spec(timeout="5m")).workflow.name}


def a_paused_workflow(team: Team) -> dict[str, str]:
    workflow = apply(team, spec()).workflow
    with tenant_scope([team.tenant]):
        services.set_paused(actor=Actor.cli(), workflow=workflow, paused=True)
    return {"name": workflow.name}


class TestWorkflowEndpoints(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", WORKFLOWS, "viewer", setup=a_workflow),
        EndpointCase("retrieve", "GET", WORKFLOW, "viewer", setup=a_workflow),
        EndpointCase("versions", "GET", VERSIONS, "viewer", setup=a_workflow),
        EndpointCase("version", "GET", VERSIONS + "1/", "viewer", setup=a_workflow),
        EndpointCase("diff", "GET", VERSIONS + "2/diff/?against=1", "viewer", setup=two_versions),
        EndpointCase(
            "create", "POST", WORKFLOWS, "editor", status=201, body=spec(),
            audit_action="workflow.create",
        ),
        EndpointCase(
            "update", "PUT", WORKFLOW, "editor", setup=a_workflow, body=spec(timeout="5m"),
            audit_action="workflow.update",
        ),
        EndpointCase(
            "delete", "DELETE", WORKFLOW, "editor", status=204, setup=a_workflow,
            audit_action="workflow.delete",
        ),
        EndpointCase(
            "pause", "POST", WORKFLOW + "pause/", "operator", setup=a_workflow,
            audit_action="workflow.pause",
        ),
        EndpointCase(
            "unpause", "POST", WORKFLOW + "unpause/", "operator", setup=a_paused_workflow,
            audit_action="workflow.unpause",
        ),
    ]  # fmt: skip

    # PUT creates a workflow that does not exist yet, so addressing B's workflow under A's
    # URL rightly creates A's own: that case has its own isolation test below.
    @for_cases(lambda case: case.in_tenant and case.name != "update")
    def test_it_hides_another_tenant_and_its_objects(self, db: None, case: EndpointCase) -> None:
        super().test_it_hides_another_tenant_and_its_objects(db, case)


def test_it_never_updates_another_tenants_workflow_through_put(db: None) -> None:
    team, outsider = make_team("acme", roles=[]), make_team("globex", roles=[])
    apply(outsider, spec())
    before = tenant_state(outsider.tenant)
    theirs = WORKFLOW.format(tenant=outsider.slug, name="nightly")
    assert_problem(send(team.tokens["owner"], "PUT", theirs, spec(timeout="5m")), 404)
    ours = WORKFLOW.format(tenant=team.slug, name="nightly")
    response = send(team.tokens["owner"], "PUT", ours, spec(timeout="5m"))
    assert (response.status_code, response.json()["created"]) == (201, True)
    assert tenant_state(outsider.tenant) == before
    owners = Workflow.objects.dangerously_unscoped().filter(name="nightly")
    assert sorted(owners.values_list("tenant__slug", flat=True)) == ["acme", "globex"]


def _names(team: Team, query: str = "") -> list[str]:
    response = send(team.tokens["viewer"], "GET", WORKFLOWS.format(tenant=team.slug) + query)
    assert response.status_code == 200, response.content
    return sorted(w["name"] for w in response.json()["results"])  # pages are newest first


def test_it_lists_workflows_filtered_by_tag_paused_and_search(team: Team, outsider: Team) -> None:
    apply(team, spec("sales-load", tags=["sales", "etl"], description="Loads the sales"))
    apply(team, spec("sales-report", tags=["sales"]))
    apply(team, spec("cleanup", tags=["maintenance"], description="Sweeps scratch space"))
    apply(outsider, spec("sales-elsewhere", tags=["sales"]))
    a_paused = Workflow.objects.dangerously_unscoped().get(tenant=team.tenant, name="sales-report")
    with tenant_scope([team.tenant]):
        services.set_paused(actor=Actor.cli(), workflow=a_paused, paused=True)

    assert _names(team) == ["cleanup", "sales-load", "sales-report"]
    assert _names(team, "?tag=sales") == ["sales-load", "sales-report"]
    assert _names(team, "?tag=etl") == ["sales-load"]
    assert _names(team, "?paused=true") == ["sales-report"]
    assert _names(team, "?paused=false") == ["cleanup", "sales-load"]
    assert _names(team, "?search=SCRATCH") == ["cleanup"]  # in the description
    assert _names(team, "?search=report") == ["sales-report"]  # in the name
    assert _names(team, "?tag=sales&paused=false") == ["sales-load"]
    assert _names(team, "?tag=nothing") == []
    url = WORKFLOWS.format(tenant=team.slug) + "?paused=maybe"
    assert_problem(send(team.tokens["viewer"], "GET", url), 400, path="paused")


def test_it_soft_deletes_a_workflow_and_frees_its_name(team: Team) -> None:
    old = apply(team, spec())
    apply(team, spec(timeout="5m"))
    url = WORKFLOW.format(tenant=team.slug, name="nightly")
    assert send(team.tokens["editor"], "DELETE", url).status_code == 204

    gone = assert_problem(send(team.tokens["viewer"], "GET", url), 404)
    assert gone["detail"] == "workflow 'nightly' not found"
    assert_problem(send(team.tokens["viewer"], "GET", url + "versions/"), 404)
    assert_problem(send(team.tokens["editor"], "DELETE", url), 404)
    assert _names(team) == []
    row = Workflow.objects.dangerously_unscoped().get(pk=old.workflow.pk)
    assert row.deleted_at is not None
    kept = WorkflowVersion.objects.dangerously_unscoped().filter(workflow=row)
    assert sorted(kept.values_list("number", flat=True)) == [1, 2]

    again = send(team.tokens["editor"], "POST", WORKFLOWS.format(tenant=team.slug), spec())
    assert again.status_code == 201, again.content
    assert again.json()["id"] != old.workflow.pk
    assert (again.json()["created"], again.json()["current_version"]["number"]) == (True, 1)


def test_it_pauses_and_unpauses_auditing_each_change_once(team: Team) -> None:
    apply(team, spec())
    url = WORKFLOW.format(tenant=team.slug, name="nightly")
    count = audit_count(team.tenant)
    paused = []
    for action in ("pause", "pause", "unpause", "unpause"):
        response = send(team.tokens["operator"], "POST", f"{url}{action}/")
        assert response.status_code == 200, response.content
        paused.append(response.json()["paused"])
    assert paused == [True, True, False, False]
    events = new_audit_events(team.tenant, count)
    assert [e.action for e in events] == ["workflow.pause", "workflow.unpause"]
    assert [(e.changes["before"], e.changes["after"]) for e in events] == [
        ({"paused": False}, {"paused": True}),
        ({"paused": True}, {"paused": False}),
    ]
    assert all(e.actor_id == team.users["operator"].pk for e in events)


def test_it_refuses_pausing_to_a_viewer(team: Team) -> None:
    apply(team, spec())
    before = tenant_state(team.tenant)
    url = WORKFLOW.format(tenant=team.slug, name="nightly") + "pause/"
    assert_problem(send(team.tokens["viewer"], "POST", url), 403)
    assert tenant_state(team.tenant) == before


def test_it_lists_versions_newest_first_without_their_spec(team: Team) -> None:
    two_versions(team)
    url = VERSIONS.format(tenant=team.slug, name="nightly")
    body = send(team.tokens["viewer"], "GET", url).json()
    assert [v["number"] for v in body["results"]] == [2, 1]
    assert all("spec" not in v and len(v["content_hash"]) == 64 for v in body["results"])
    assert body["results"][0]["author"] is None  # applied from the CLI
    detail = send(team.tokens["viewer"], "GET", f"{url}1/").json()
    assert (detail["number"], detail["spec"]["tasks"]["extract"]["timeout"]) == (1, "1m")
    assert_problem(send(team.tokens["viewer"], "GET", f"{url}3/"), 404)


def test_it_answers_a_yaml_client_with_json_problems(team: Team) -> None:
    two_versions(team)
    url = VERSIONS.format(tenant=team.slug, name="nightly")
    as_yaml = api(team.tokens["viewer"], Accept="application/yaml")
    body = assert_problem(as_yaml.get(url), 406)  # a list of versions is JSON only
    assert "JSON only" in body["detail"]
    assert_problem(as_yaml.get(f"{url}9/"), 404)
    assert_problem(api("orc_not-a-token", Accept="application/yaml").get(f"{url}1/"), 401)


def test_it_returns_a_version_as_yaml_that_applies_unchanged(team: Team) -> None:
    two_versions(team)
    url = VERSIONS.format(tenant=team.slug, name="nightly") + "1/"
    response = api(team.tokens["viewer"], Accept="application/yaml").get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/yaml")
    text = response.content.decode()
    assert yaml.safe_load(text) == send(team.tokens["viewer"], "GET", url).json()["spec"]
    assert text.startswith("name: nightly\n")

    workflow_url = WORKFLOW.format(tenant=team.slug, name="nightly")
    editor = api(team.tokens["editor"])
    back_to_v1 = editor.put(workflow_url, text, content_type="application/yaml").json()
    assert (back_to_v1["changed"], back_to_v1["current_version"]["number"]) == (True, 3)
    before = tenant_state(team.tenant)
    again = editor.put(workflow_url, text, content_type="application/yaml").json()
    assert (again["changed"], again["current_version"]["number"]) == (False, 3)
    assert tenant_state(team.tenant) == before


def test_it_diffs_two_versions(team: Team) -> None:
    two_versions(team)
    url = VERSIONS.format(tenant=team.slug, name="nightly") + "2/diff/"
    body = send(team.tokens["viewer"], "GET", url + "?against=1").json()
    assert (body["from"], body["to"]) == (1, 2)
    lines = body["diff"].splitlines()
    assert lines[:2] == ["--- nightly@v1", "+++ nightly@v2"]
    assert "-    timeout: 1m" in lines
    assert "+    timeout: 5m" in lines
    assert len([line for line in lines[2:] if line[:1] in "+-"]) == 2
    same = send(team.tokens["viewer"], "GET", url + "?against=2").json()
    assert same["diff"] == ""


def test_it_needs_an_existing_version_to_diff_against(team: Team) -> None:
    two_versions(team)
    url = VERSIONS.format(tenant=team.slug, name="nightly") + "2/diff/"
    assert_problem(send(team.tokens["viewer"], "GET", url), 400, path="against")
    assert_problem(send(team.tokens["viewer"], "GET", url + "?against=x"), 400, path="against")
    assert_problem(send(team.tokens["viewer"], "GET", url + "?against=7"), 404)
