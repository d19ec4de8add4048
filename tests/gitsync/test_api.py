"""Git sources over REST and GraphQL, and their push webhook: who may read, create, change,
delete, rotate and sync them (each change audited once; another tenant's a 404); the
webhook secret shown once; a sync answering what it did; and /hooks/git/<uid> verifying
GitHub's and Gitea's HMAC signatures and GitLab's token before it queues a sync."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from gitsync import tasks
from gitsync.models import GitSource
from gitsync.services import create_source, rotate_webhook_secret
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from tests.gitsync.repos import Repo, spec_text
from tests.graphql_harness import MutationCase, MutationSuite
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    assert_problem,
    gql,
    gql_error,
    send,
    tenant_state,
)
from workflows.models import Workflow
from workflows.services import apply_workflow, parse_spec

SOURCES = "/api/v1/tenants/{tenant}/git-sources/"
SOURCE = SOURCES + "{name}/"
REMOTE = "https://git.example.com/acme/flows.git"
SHARED: dict[str, Repo] = {}


@pytest.fixture(scope="module", autouse=True)
def _shared_repository(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One repository for the tests that only read it: alpha.yaml on main."""
    repo = Repo(tmp_path_factory.mktemp("gitsync-api") / "repo")
    repo.write("alpha.yaml", spec_text("alpha"))
    repo.push()
    SHARED["repo"] = repo


@pytest.fixture(autouse=True)
def _local_repositories(settings: Any) -> None:
    settings.GITSYNC_ALLOW_LOCAL = True


def source_of(team: Team, name: str = "flows", **fields: Any) -> tuple[GitSource, str]:
    fields = {"url": SHARED["repo"].url, **fields}
    with tenant_scope([team.tenant]):
        return create_source(actor=Actor.cli(), tenant=team.tenant, name=name, **fields)


def a_source(team: Team) -> dict[str, str]:
    return {"name": source_of(team)[0].name}


def a_source_in_step(team: Team) -> dict[str, str]:
    """A source whose repository holds what the tenant has already: its sync changes no
    workflow, only the source's record (one audit event)."""
    with tenant_scope([team.tenant]):
        data = parse_spec(spec_text("alpha"), team.tenant)
        apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data)
    return a_source(team)


class TestGitSourceEndpoints(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", SOURCES, "viewer", setup=a_source),
        EndpointCase("retrieve", "GET", SOURCE, "viewer", setup=a_source),
        EndpointCase(
            "create", "POST", SOURCES, "editor", status=201,
            body={"name": "flows", "url": REMOTE}, audit_action="git_source.create",
        ),
        EndpointCase(
            "update", "PATCH", SOURCE, "editor", setup=a_source,
            body={"interval_seconds": 300, "prune": True}, audit_action="git_source.update",
        ),
        EndpointCase(
            "delete", "DELETE", SOURCE, "editor", status=204, setup=a_source,
            audit_action="git_source.delete",
        ),
        EndpointCase(
            "rotate-secret", "POST", SOURCE + "rotate-secret/", "editor", setup=a_source,
            audit_action="git_source.rotate_secret",
        ),
        EndpointCase(
            "sync", "POST", SOURCE + "sync/", "operator", setup=a_source_in_step,
            audit_action="git_source.sync",
        ),
    ]  # fmt: skip


def test_the_webhook_secret_is_shown_once_and_only_its_prefix_after(team: Team) -> None:
    url = SOURCES.format(tenant=team.slug)
    created = send(team.tokens["editor"], "POST", url, {"name": "flows", "url": REMOTE})
    assert created.status_code == 201, created.content
    body = created.json()
    secret = body["webhook_secret"]
    assert secret.startswith("gitsec_")
    assert secret.startswith(body["webhook_secret_prefix"])
    assert body["webhook_url"].endswith(
        f"/hooks/git/{GitSource.objects.dangerously_unscoped().get().webhook_uid}"
    )
    assert (body["branch"], body["path"], body["prune"], body["interval_seconds"]) == (
        "main",
        "",
        False,
        0,
    )
    read = send(team.tokens["viewer"], "GET", SOURCE.format(tenant=team.slug, name="flows"))
    assert "webhook_secret" not in read.json()
    assert secret not in read.text
    rotated = send(
        team.tokens["editor"],
        "POST",
        SOURCE.format(tenant=team.slug, name="flows") + "rotate-secret/",
    )
    assert rotated.json()["webhook_secret"] not in (secret, None)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": "Flows!", "url": REMOTE}, "name"),
        ({"name": "flows", "url": "http://git.example.com/x.git"}, "url"),
        ({"name": "flows", "url": "ext::sh"}, "url"),
        ({"name": "flows", "url": REMOTE, "branch": "--upload-pack=x"}, "branch"),
        ({"name": "flows", "url": REMOTE, "path": "../secrets"}, "path"),
        ({"name": "flows", "url": REMOTE, "interval_seconds": 30}, "interval_seconds"),
        ({"name": "flows", "url": REMOTE, "deploy_key": "nope"}, "deploy_key"),
        ({"name": "flows", "url": REMOTE, "webhook_secret": "mine"}, "webhook_secret"),
        ({"url": REMOTE}, "name"),
    ],
)
def test_it_refuses_a_bad_source_naming_the_field(
    team: Team, body: dict[str, Any], path: str
) -> None:
    before = tenant_state(team.tenant)
    assert_problem(
        send(team.tokens["editor"], "POST", SOURCES.format(tenant=team.slug), body), 400, path
    )
    assert tenant_state(team.tenant) == before


def test_a_local_repository_is_refused_without_the_setting(team: Team, settings: Any) -> None:
    settings.GITSYNC_ALLOW_LOCAL = False
    body = {"name": "flows", "url": SHARED["repo"].url}
    problem = assert_problem(
        send(team.tokens["editor"], "POST", SOURCES.format(tenant=team.slug), body), 400, "url"
    )
    assert "GITSYNC_ALLOW_LOCAL=1" in problem["errors"][0]["message"]


def test_a_name_taken_is_a_conflict(team: Team) -> None:
    source_of(team)
    body = {"name": "flows", "url": REMOTE}
    assert_problem(send(team.tokens["editor"], "POST", SOURCES.format(tenant=team.slug), body), 409)


def test_a_manual_sync_answers_what_it_did(team: Team) -> None:
    source_of(team)
    url = SOURCE.format(tenant=team.slug, name="flows") + "sync/"
    done = send(team.tokens["operator"], "POST", url).json()
    commit = SHARED["repo"].git("rev-parse", "HEAD").strip()
    assert (done["source"], done["status"], done["commit"], done["error"]) == (
        "flows",
        "ok",
        commit,
        "",
    )
    assert [(c["workflow"], c["path"], c["action"], c["version"]) for c in done["changes"]] == [
        ("alpha", "alpha.yaml", "created", 1)
    ]
    again = send(team.tokens["operator"], "POST", url).json()
    assert (again["status"], again["changes"]) == ("skipped", [])
    forced = send(team.tokens["operator"], "POST", url, {"force": True}).json()
    assert [c["action"] for c in forced["changes"]] == ["unchanged"]
    version = send(
        team.tokens["viewer"], "GET", f"/api/v1/tenants/{team.slug}/workflows/alpha/versions/1/"
    ).json()
    assert (version["source_commit"], version["source"]) == (commit, "git:flows")


def test_a_failed_manual_sync_answers_the_files_errors(team: Team, tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    repo.write("etl/bad.yaml", spec_text("bad", timeout="5x"))
    repo.push()
    source_of(team, url=repo.url)
    url = SOURCE.format(tenant=team.slug, name="flows") + "sync/"
    done = send(team.tokens["operator"], "POST", url).json()
    assert done["status"] == "failed"
    assert [(e["file"], e["path"]) for e in done["errors"]] == [
        ("etl/bad.yaml", "tasks.extract.timeout")
    ]
    read = send(team.tokens["viewer"], "GET", SOURCE.format(tenant=team.slug, name="flows")).json()
    assert (read["last_status"], read["last_error"]) == ("failed", done["error"])


# --- the push webhook ------------------------------------------------------------------------

PUSH = json.dumps({"ref": "refs/heads/main", "after": "0" * 40}).encode()


def syncs(callbacks: list[Any]) -> int:
    """How many syncs a request queued (its other on-commit hooks, metrics, aside)."""
    return sum(1 for c in callbacks if c.__qualname__.startswith("queue_sync"))


def hook(source: GitSource) -> str:
    return f"/hooks/git/{source.webhook_uid}"


def github(secret: str, body: bytes = PUSH) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": "push"}


def post(url: str, headers: dict[str, str], body: bytes = PUSH) -> Any:
    return Client(headers=headers).post(url, body, content_type="application/json")


def test_a_signed_github_push_queues_a_sync_that_applies_the_branch(
    team: Team, django_capture_on_commit_callbacks: Any
) -> None:
    source, secret = source_of(team)
    with django_capture_on_commit_callbacks() as queued:
        answer = post(hook(source), github(secret))
    assert (answer.status_code, answer.json()["queued"]) == (202, True)
    assert syncs(queued) == 1
    assert tasks.sync(source.pk) == "ok"  # what the worker does with it
    names = Workflow.objects.dangerously_unscoped().filter(tenant=team.tenant)
    assert list(names.values_list("name", flat=True)) == ["alpha"]


def test_gitea_and_gitlab_pushes_are_accepted_too(
    team: Team, django_capture_on_commit_callbacks: Any
) -> None:
    source, secret = source_of(team)
    gitea = {"X-Gitea-Signature": github(secret)["X-Hub-Signature-256"][7:]}
    with django_capture_on_commit_callbacks() as queued:
        assert post(hook(source), gitea).status_code == 202
        assert post(hook(source), {"X-Gitlab-Token": secret}).status_code == 202
    assert syncs(queued) == 2


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        {"X-Hub-Signature-256": "0" * 64},
        {"X-Gitlab-Token": "gitsec_wrong"},
        {"X-Gitea-Signature": "nothex"},
    ],
    ids=["missing", "wrong", "no-prefix", "wrong-token", "garbage"],
)
def test_a_push_without_a_valid_signature_is_refused_and_queues_nothing(
    team: Team, headers: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    source, _ = source_of(team)
    with django_capture_on_commit_callbacks() as queued:
        answer = post(hook(source), headers)
    problem = assert_problem(answer, 401)
    assert "X-Hub-Signature-256" in problem["detail"]
    assert syncs(queued) == 0
    unknown = post("/hooks/git/nope", headers)
    assert (unknown.status_code, unknown.json()) == (401, answer.json())


def test_a_signature_of_another_body_or_an_old_secret_is_refused(team: Team) -> None:
    source, secret = source_of(team)
    assert post(hook(source), github(secret, b'{"ref": "refs/heads/other"}')).status_code == 401
    with tenant_scope([team.tenant]):
        rotate_webhook_secret(actor=Actor.cli(), source=source)
    assert post(hook(source), github(secret)).status_code == 401


def test_a_push_to_another_branch_or_a_ping_queues_nothing(
    team: Team, django_capture_on_commit_callbacks: Any
) -> None:
    source, secret = source_of(team)
    other = json.dumps({"ref": "refs/heads/feature"}).encode()
    with django_capture_on_commit_callbacks() as queued:
        answer = post(hook(source), github(secret, other), other)
        ping = post(hook(source), {**github(secret, b"{}"), "X-GitHub-Event": "ping"}, b"{}")
    assert (answer.status_code, answer.json()["queued"]) == (200, False)
    assert "refs/heads/feature, not refs/heads/main" in answer.json()["detail"]
    assert (ping.status_code, ping.json()["queued"]) == (200, False)
    assert syncs(queued) == 0


def test_the_webhook_takes_post_only(team: Team) -> None:
    source, _ = source_of(team)
    answer = Client().get(hook(source))
    assert (answer.status_code, answer["Allow"]) == (405, "POST")


def test_an_archived_tenants_webhook_is_refused(team: Team) -> None:
    source, secret = source_of(team)
    from orchestrator.services import archive_tenant

    archive_tenant(actor=Actor.cli(), tenant=team.tenant)
    assert post(hook(source), github(secret)).status_code == 401


# --- GraphQL -------------------------------------------------------------------------------

CREATE = """mutation($t: String!) {
  createGitSource(tenant: $t, name: "flows", url: "https://git.example.com/acme/flows.git",
                  intervalSeconds: 300) {
    webhookSecret gitSource { name branch intervalSeconds webhookSecretPrefix }
  }
}"""
UPDATE = """mutation($t: String!, $n: String!) {
  updateGitSource(tenant: $t, name: $n, branch: "release", prune: true) { branch prune }
}"""
DELETE = "mutation($t: String!, $n: String!) { deleteGitSource(tenant: $t, name: $n) }"
ROTATE = """mutation($t: String!, $n: String!) {
  rotateGitSourceSecret(tenant: $t, name: $n) { webhookSecret }
}"""
SYNC = """mutation($t: String!, $n: String!) {
  syncGitSource(tenant: $t, name: $n) {
    source status commit error changes { workflow path action version } errors { file path }
  }
}"""
SOURCES_QUERY = """query($t: String!) {
  gitSources(tenant: $t) { name url lastStatus lastCommit webhookUrl lastChanges }
}"""


def _tenant(team: Team) -> dict[str, Any]:
    return {"t": team.slug}


def _existing(team: Team) -> dict[str, Any]:
    return {"t": team.slug, **{"n": a_source(team)["name"]}}


def _in_step(team: Team) -> dict[str, Any]:
    return {"t": team.slug, "n": a_source_in_step(team)["name"]}


class TestGitSourceMutations(MutationSuite):
    cases = [
        MutationCase("createGitSource", CREATE, _tenant, "editor", "git_source.create"),
        MutationCase("updateGitSource", UPDATE, _existing, "editor", "git_source.update"),
        MutationCase("deleteGitSource", DELETE, _existing, "editor", "git_source.delete"),
        MutationCase(
            "rotateGitSourceSecret", ROTATE, _existing, "editor", "git_source.rotate_secret"
        ),
        MutationCase("syncGitSource", SYNC, _in_step, "operator", "git_source.sync"),
    ]


def test_graphql_syncs_and_reads_as_rest_does(team: Team, outsider: Team) -> None:
    source_of(team)
    source_of(outsider, name="theirs")
    done = gql(team.tokens["operator"], SYNC, {"t": team.slug, "n": "flows"}).json()["data"]
    result = done["syncGitSource"]
    assert (result["status"], result["errors"]) == ("ok", [])
    assert result["changes"] == [
        {"workflow": "alpha", "path": "alpha.yaml", "action": "created", "version": 1}
    ]
    listed = gql(team.tokens["viewer"], SOURCES_QUERY, {"t": team.slug}).json()["data"]
    [row] = listed["gitSources"]
    assert (row["name"], row["lastStatus"], row["lastCommit"]) == ("flows", "ok", result["commit"])
    assert row["lastChanges"] == result["changes"]


def test_graphql_refuses_bad_input_with_its_path(team: Team) -> None:
    bad = CREATE.replace("intervalSeconds: 300", "intervalSeconds: 5")
    error = gql_error(gql(team.tokens["editor"], bad, {"t": team.slug}))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert [e["path"] for e in error["extensions"]["errors"]] == ["interval_seconds"]
