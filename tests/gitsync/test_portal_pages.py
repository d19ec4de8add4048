"""Git sources in the portal: every member sees the tenant's sources and a source's last
sync (commit, status, error, changes); operators and above sync one now, through the
service REST calls (audited with the source "portal"); a viewer's forged POST is a 403,
another tenant's source a 404."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from gitsync.models import GitSource
from gitsync.services import create_source
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from tests.gitsync.repos import Repo, spec_text
from tests.harness import Team, audit_count, new_audit_events, tenant_state

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_repositories(settings: Any) -> None:
    settings.GITSYNC_ALLOW_LOCAL = True


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    repo = Repo(tmp_path / "repo")
    repo.write("etl/alpha.yaml", spec_text("alpha"))
    repo.push()
    return repo


def a_source(team: Team, url: str, name: str = "flows") -> GitSource:
    with tenant_scope([team.tenant]):
        return create_source(actor=Actor.cli(), tenant=team.tenant, name=name, url=url)[0]


def signed_in(team: Team, role: str) -> Client:
    client = Client()
    client.force_login(team.users[role])
    return client


def urls(team: Team, name: str = "flows") -> dict[str, str]:
    return {
        "list": reverse("portal:git-sources", args=[team.slug]),
        "detail": reverse("portal:git-source", args=[team.slug, name]),
        "sync": reverse("portal:git-source-sync", args=[team.slug, name]),
    }


def test_every_member_sees_the_sources_and_only_operators_the_sync_button(
    team: Team, outsider: Team, repo: Repo
) -> None:
    a_source(team, repo.url)
    a_source(outsider, repo.url, name="theirs")
    viewer = signed_in(team, "viewer")
    html = viewer.get(urls(team)["list"]).text
    assert re.findall(r'data-git-source="([^"]+)"', html) == ["flows"]
    assert 'data-status="never"' in html
    assert f'href="{urls(team)["list"]}" aria-current="page">Git sources' in html
    detail = viewer.get(urls(team)["detail"]).text
    assert "Never synced yet." in detail
    assert "/hooks/git/" in detail
    assert urls(team)["sync"] not in detail
    assert urls(team)["sync"] in signed_in(team, "operator").get(urls(team)["detail"]).text


def test_an_operator_syncs_now_and_sees_what_it_did(team: Team, repo: Repo) -> None:
    a_source(team, repo.url)
    commit = repo.git("rev-parse", "HEAD").strip()
    client, count = signed_in(team, "operator"), audit_count(team.tenant)

    done = client.post(urls(team)["sync"])

    assert (done.status_code, done["Location"]) == (302, urls(team)["detail"])
    page = client.get(urls(team)["detail"]).text
    assert f"Synced {commit[:12]}: 1 created." in page
    assert f'<code id="last-commit">{commit}</code>' in page
    assert re.search(r'id="last-status">ok<', page)
    assert 'data-workflow="alpha"' in page
    events = new_audit_events(team.tenant, count)
    assert [(e.action, e.source) for e in events] == [
        ("workflow.create", "system"),
        ("git_source.sync", "portal"),
    ]
    assert client.post(urls(team)["sync"]).status_code == 302
    assert "nothing to do" in client.get(urls(team)["detail"]).text


def test_a_failed_sync_shows_its_error(team: Team, repo: Repo) -> None:
    repo.write("etl/bad.yaml", spec_text("bad", timeout="5x"))
    repo.push()
    a_source(team, repo.url)
    client = signed_in(team, "operator")
    client.post(urls(team)["sync"])
    page = client.get(urls(team)["detail"]).text
    assert "Sync of &#x27;flows&#x27; failed: 1 of 2 files are invalid" in page
    assert re.search(
        r'<pre class="log" id="last-error">[^<]*etl/bad.yaml: tasks.extract.timeout', page
    )


def test_a_viewer_cannot_sync_and_another_tenants_source_is_not_found(
    team: Team, outsider: Team, repo: Repo
) -> None:
    a_source(team, repo.url)
    a_source(outsider, repo.url, name="theirs")
    before = tenant_state(team.tenant)
    assert signed_in(team, "viewer").post(urls(team)["sync"]).status_code == 403
    assert tenant_state(team.tenant) == before
    owner = signed_in(team, "owner")
    assert owner.get(urls(outsider, "theirs")["detail"]).status_code == 404
    assert owner.get(urls(team, "theirs")["detail"]).status_code == 404
    assert owner.post(urls(team, "theirs")["sync"]).status_code == 404
