"""Applying a set of spec files at once (GitOps): `POST .../workflows/apply/`, the GraphQL
mutation `applyWorkflows` and `manage.py apply`, one service (apply_workflows) behind all
three. All files validated first, all applied in one transaction or none; a plan of what
changed, with diffs; dry runs keep nothing and audit nothing; prune."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from tests.graphql_harness import MutationCase, MutationSuite
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    assert_problem,
    audit_count,
    gql,
    gql_error,
    make_team,
    new_audit_events,
    send,
    tenant_state,
)
from workflows import services
from workflows.models import Workflow, WorkflowVersion
from workflows.specfiles import format_file_errors, format_plan

APPLY = "/api/v1/tenants/{tenant}/workflows/apply/"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def spec_text(name: str, timeout: str = "1m") -> str:
    return f"""\
name: {name}
tasks:
  extract: {{type: shell, command: [echo, "{{{{ ds }}}}"], timeout: {timeout}}}
  done: {{type: noop, depends_on: [extract]}}
"""


def spec_file(name: str, timeout: str = "1m", folder: str = "etl") -> dict[str, str]:
    return {"path": f"{folder}/{name}.yaml", "content": spec_text(name, timeout)}


def body(*files: dict[str, str], **options: Any) -> dict[str, Any]:
    return {"files": list(files), **options}


def post(team: Team, payload: Any, role: str = "editor") -> Any:
    return send(team.tokens[role], "POST", APPLY.format(tenant=team.slug), payload)


def live(team: Team) -> dict[str, int]:
    rows = Workflow.objects.dangerously_unscoped().filter(tenant=team.tenant, deleted_at=None)
    return dict(rows.values_list("name", "current_version__number"))


def seed(team: Team, *names: str) -> None:
    with tenant_scope([team.tenant]):
        for name in names:
            data = services.parse_spec(spec_text(name), team.tenant)
            services.apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data)


class TestBulkApplyEndpoint(EndpointSuite):
    cases = [
        EndpointCase(
            "apply", "POST", APPLY, "editor", body=body(spec_file("alpha")),
            audit_action="workflow.create",
        ),
    ]  # fmt: skip


# --- the plan ------------------------------------------------------------------------------


def test_it_creates_updates_leaves_unchanged_and_prunes_with_a_plan(team: Team) -> None:
    seed(team, "beta", "gamma", "old")
    count = audit_count(team.tenant)

    response = post(
        team,
        body(spec_file("alpha"), spec_file("beta", "5m"), spec_file("gamma"), prune=True),
    )

    assert response.status_code == 200, response.content
    plan = response.json()
    assert plan["dry_run"] is False
    summary = [(c["workflow"], c["path"], c["action"], c["version"]) for c in plan["changes"]]
    assert summary == [
        ("alpha", "etl/alpha.yaml", "created", 1),
        ("beta", "etl/beta.yaml", "updated", 2),
        ("gamma", "etl/gamma.yaml", "unchanged", 1),
        ("old", None, "pruned", None),
    ]
    alpha, beta, gamma, old = (c["diff"] for c in plan["changes"])
    assert alpha.startswith("--- /dev/null\n+++ alpha@v1\n")
    assert "+name: alpha\n" in alpha
    assert beta.startswith("--- beta@v1\n+++ beta@v2\n")
    assert "-    timeout: 1m\n+    timeout: 5m\n" in beta
    assert (gamma, old) == ("", "")
    assert live(team) == {"alpha": 1, "beta": 2, "gamma": 1}
    events = new_audit_events(team.tenant, count)
    assert [(e.action, e.object_repr, e.source) for e in events] == [
        ("workflow.create", "alpha", "api"),
        ("workflow.update", "beta", "api"),
        ("workflow.delete", "old", "api"),
    ]
    assert format_plan(plan["changes"], dry_run=False, diff=False) == [
        "alpha: created (version 1)",
        "beta: new version 2",
        "gamma: unchanged (version 1)",
        "old: pruned",
    ]


def test_the_diff_is_the_one_the_versions_endpoint_shows(team: Team) -> None:
    seed(team, "beta")
    plan = post(team, body(spec_file("beta", "5m"))).json()
    url = f"/api/v1/tenants/{team.slug}/workflows/beta/versions/2/diff/?against=1"
    assert plan["changes"][0]["diff"] == send(team.tokens["viewer"], "GET", url).json()["diff"]


def test_a_dry_run_stores_nothing_audits_nothing_and_answers_the_same_plan(team: Team) -> None:
    seed(team, "beta", "old")
    payload = body(spec_file("alpha"), spec_file("beta", "5m"), prune=True)
    before = tenant_state(team.tenant)

    dry = post(team, {**payload, "dry_run": True})

    assert dry.status_code == 200, dry.content
    assert tenant_state(team.tenant) == before  # no version, no deletion, no audit event
    real = post(team, payload).json()
    assert dry.json() == {**real, "dry_run": True}
    assert format_plan(dry.json()["changes"], dry_run=True, diff=False) == [
        "alpha: would be created (version 1)",
        "beta: would be new version 2",
        "old: would be pruned",
    ]


def test_it_records_the_commit_on_each_new_version(team: Team) -> None:
    seed(team, "beta")
    plan = post(team, body(spec_file("alpha"), spec_file("beta"), source_commit=COMMIT)).json()
    assert [c["action"] for c in plan["changes"]] == ["created", "unchanged"]
    versions = WorkflowVersion.objects.dangerously_unscoped().filter(tenant=team.tenant)
    assert dict(versions.values_list("workflow__name", "source_commit")) == {
        "alpha": COMMIT,
        "beta": None,  # unchanged: its version keeps where it came from
    }
    url = f"/api/v1/tenants/{team.slug}/workflows/alpha/versions/1/"
    version = send(team.tokens["viewer"], "GET", url).json()
    assert (version["source_commit"], version["source"]) == (COMMIT, None)


# --- nothing applied when anything is wrong ------------------------------------------------


def test_one_invalid_file_applies_nothing_and_each_error_names_its_file(team: Team) -> None:
    seed(team, "beta", "old")
    broken = spec_text("gamma", "5x").replace("[extract]", "[extrakt]")
    payload = body(
        spec_file("alpha"),
        spec_file("beta", "5m"),
        {"path": "etl/gamma.yaml", "content": broken},
        {"path": "etl/syntax.yaml", "content": "name: [unclosed"},
        prune=True,
    )
    before = tenant_state(team.tenant)

    problem = assert_problem(post(team, payload), 400)

    assert tenant_state(team.tenant) == before
    assert problem["type"] == "urn:orchestrator:problem:validation-error"
    assert problem["detail"] == "2 of 4 files are invalid; nothing was applied"
    by_file = [(e["file"], e["path"]) for e in problem["errors"]]
    assert by_file == [
        ("etl/gamma.yaml", "tasks.extract.timeout"),
        ("etl/gamma.yaml", "tasks.done.depends_on[0]"),
        ("etl/syntax.yaml", ""),
    ]
    lines = format_file_errors(problem["errors"])
    assert lines[1] == (
        "etl/gamma.yaml: tasks.done.depends_on[0]: unknown task 'extrakt'; tasks: done, extract"
    )
    assert lines[2].startswith("etl/syntax.yaml: (document): invalid YAML at line 1")


def test_the_same_name_in_two_files_is_an_error_in_both(team: Team) -> None:
    payload = body(spec_file("alpha"), {**spec_file("alpha"), "path": "copy/alpha.yaml"})
    problem = assert_problem(post(team, payload), 400)
    assert [(e["file"], e["path"], e["message"]) for e in problem["errors"]] == [
        ("etl/alpha.yaml", "name", "workflow 'alpha' is also defined in copy/alpha.yaml"),
        ("copy/alpha.yaml", "name", "workflow 'alpha' is also defined in etl/alpha.yaml"),
    ]
    assert live(team) == {}


def test_what_only_applying_finds_is_reported_with_its_file_too(team: Team) -> None:
    """A notify channel the tenant does not have is checked against the database, after
    the spec itself is valid: still every file applied or none."""
    notify = spec_text("beta") + 'notify: {"on": [run.failed], channels: [nope]}\n'
    payload = body(spec_file("alpha"), {"path": "etl/beta.yaml", "content": notify})
    before = tenant_state(team.tenant)
    problem = assert_problem(post(team, payload), 400)
    assert [(e["file"], e["path"]) for e in problem["errors"]] == [
        ("etl/beta.yaml", "notify.channels[0]")
    ]
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"files": []}, "files"),
        ({}, "files"),
        ({"files": "etl/a.yaml"}, "files"),
        ({"files": [{"path": "a.yaml"}]}, "files[0].content"),
        ({"files": [{"path": "a.yaml", "content": None}]}, "files[0].content"),
        ({"files": [{"path": "a\nb.yaml", "content": "x"}]}, "files[0].path"),
        ({"files": [{"path": "a.yaml", "content": "x", "mode": "0644"}]}, "files[0].mode"),
        ({"files": [spec_file("a"), spec_file("a")]}, "files[1].path"),
        ({"files": [spec_file("a")], "prune": "maybe"}, "prune"),
        ({"files": [spec_file("a")], "source_commit": "HEAD"}, "source_commit"),
        ({"files": [spec_file("a")], "force": True}, "force"),
    ],
    ids=[
        "empty",
        "missing",
        "not-a-list",
        "no-content",
        "content-null",
        "control-character",
        "unknown-file-field",
        "path-twice",
        "prune-not-bool",
        "commit-not-a-sha",
        "unknown-field",
    ],
)
def test_it_refuses_a_malformed_body_naming_the_field(
    team: Team, payload: dict[str, Any], path: str
) -> None:
    before = tenant_state(team.tenant)
    assert_problem(post(team, payload), 400, path)
    assert tenant_state(team.tenant) == before


def test_it_refuses_more_files_than_the_tenant_may_have_workflows(team: Team) -> None:
    team.tenant.quotas = {**team.tenant.quotas, "max_workflows": 2}
    team.tenant.save()
    payload = body(spec_file("a"), spec_file("b"), spec_file("c"))
    problem = assert_problem(post(team, payload), 400, "files")
    assert "may have 2 workflows" in problem["errors"][0]["message"]
    assert live(team) == {}


def test_a_file_over_the_tenants_spec_size_is_refused_with_its_file(team: Team) -> None:
    team.tenant.quotas = {**team.tenant.quotas, "max_spec_bytes": 100}
    team.tenant.save()
    big = {"path": "big.yaml", "content": spec_text("big") + "#" * 200}
    problem = assert_problem(post(team, body(big)), 400)
    [error] = problem["errors"]
    assert (error["file"], error["path"]) == ("big.yaml", "")
    assert "this tenant's limit is 100" in error["message"]


# --- the URL shared with a workflow named "apply" ------------------------------------------


def test_a_workflow_named_apply_is_still_read_updated_and_deleted_at_its_url(team: Team) -> None:
    url = f"/api/v1/tenants/{team.slug}/workflows/apply/"
    created = send(team.tokens["editor"], "PUT", url, spec_text("apply"))
    assert (created.status_code, created.json()["name"]) == (201, "apply")
    read = send(team.tokens["viewer"], "GET", url)
    assert (read.status_code, read.json()["current_version"]["number"]) == (200, 1)
    assert send(team.tokens["editor"], "PUT", url, spec_text("apply", "5m")).status_code == 200
    assert send(team.tokens["viewer"], "PUT", url, spec_text("apply", "9m")).status_code == 403
    assert send(team.tokens["editor"], "DELETE", url).status_code == 204
    assert live(team) == {}


# --- GraphQL -------------------------------------------------------------------------------

APPLY_WORKFLOWS = """
mutation($t: String!, $files: [SpecFileInput!]!, $dry: Boolean!, $prune: Boolean!) {
  applyWorkflows(tenant: $t, files: $files, dryRun: $dry, prune: $prune) {
    dryRun changes { workflow path action version diff }
  }
}"""


def _variables(team: Team, *files: dict[str, str], dry: bool = False, prune: bool = False) -> Any:
    return {"t": team.slug, "files": list(files), "dry": dry, "prune": prune}


class TestApplyWorkflowsMutation(MutationSuite):
    cases = [
        MutationCase(
            "applyWorkflows",
            APPLY_WORKFLOWS,
            lambda team: _variables(team, spec_file("alpha")),
            "editor",
            "workflow.create",
        )
    ]


def test_graphql_answers_the_plan_rest_answers(db: None) -> None:
    rest_team, gql_team = make_team("rest", roles=["editor"]), make_team("gql", roles=["editor"])
    for team in (rest_team, gql_team):
        seed(team, "beta", "old")
    files = [spec_file("alpha"), spec_file("beta", "5m")]
    for dry in (True, False):
        rest = post(rest_team, body(*files, dry_run=dry, prune=True)).json()
        variables = _variables(gql_team, *files, dry=dry, prune=True)
        graphql = gql(gql_team.tokens["editor"], APPLY_WORKFLOWS, variables).json()
        assert graphql["data"]["applyWorkflows"] == {
            "dryRun": rest["dry_run"],
            "changes": rest["changes"],
        }
    assert live(gql_team) == live(rest_team) == {"alpha": 1, "beta": 2}


def test_graphql_reports_invalid_files_with_their_file_and_path(team: Team) -> None:
    broken = {"path": "etl/bad.yaml", "content": spec_text("bad", "5x")}
    before = tenant_state(team.tenant)
    response = gql(team.tokens["editor"], APPLY_WORKFLOWS, _variables(team, spec_file("a"), broken))
    error = gql_error(response)
    assert error["message"] == "1 of 2 files are invalid; nothing was applied"
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert [(e["file"], e["path"]) for e in error["extensions"]["errors"]] == [
        ("etl/bad.yaml", "tasks.extract.timeout")
    ]
    empty = gql_error(gql(team.tokens["editor"], APPLY_WORKFLOWS, _variables(team)))
    assert [e["path"] for e in empty["extensions"]["errors"]] == ["files"]
    assert tenant_state(team.tenant) == before


# --- manage.py apply --diff and the pure formatting ----------------------------------------


def test_the_command_shows_diffs_with_diff(team: Team, tmp_path: Path) -> None:
    seed(team, "beta")
    (tmp_path / "beta.yaml").write_text(spec_text("beta", "5m"))
    out = StringIO()
    call_command("apply", str(tmp_path), "--tenant", team.slug, "--diff", "--dry-run", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[:3] == ["beta: would be new version 2", "--- beta@v1", "+++ beta@v2"]
    assert "-    timeout: 1m" in lines
    assert "+    timeout: 5m" in lines


def test_format_plan_refuses_an_action_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="unknown action 'renamed'"):
        format_plan([{"workflow": "a", "action": "renamed"}], dry_run=False, diff=False)
