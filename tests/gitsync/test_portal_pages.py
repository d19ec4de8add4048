"""Git sources in the portal: every member sees the tenant's sources and a source's last
sync (commit, status, error, changes); operators and above sync one now; editors and above
create, edit and delete sources and rotate their webhook secret (shown once, with the
webhook URL, and accepted by the webhook endpoint), all through the services REST calls
(audited with the source "portal"). A role too low gets no buttons and a 403 on a forged
POST, another tenant's source is a 404, and bad input comes back at its field with
nothing stored."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from connections.services import create_secret
from gitsync.models import GitSource
from gitsync.services import create_source, webhook_url
from orchestrator import crypto
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


REMOTE = "https://git.example.com/acme/flows.git"


def a_source(team: Team, url: str = REMOTE, name: str = "flows") -> GitSource:
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
        "new": reverse("portal:git-source-new", args=[team.slug]),
        "edit": reverse("portal:git-source-edit", args=[team.slug, name]),
        "delete": reverse("portal:git-source-delete", args=[team.slug, name]),
        "rotate": reverse("portal:git-source-rotate-secret", args=[team.slug, name]),
    }


MANAGE_FORMS = ("new", "edit", "delete", "rotate")


def stored(team: Team, name: str = "flows") -> GitSource | None:
    return GitSource.objects.dangerously_unscoped().filter(tenant=team.tenant, name=name).first()


def shown_secret(html: str) -> str:
    found = re.search(r'<code class="secret" id="webhook-secret">([^<]+)</code>', html)
    assert found is not None, "no webhook secret on the page"
    return found.group(1)


def ping(client: Client, source: GitSource, secret: str) -> int:
    """GitHub's test delivery to the source's webhook, signed with `secret`: 200 when the
    service accepts the secret, 401 when not (a ping queues no sync)."""
    body = b'{"zen": "Keep it logically awesome."}'
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return client.post(
        f"/hooks/git/{source.webhook_uid}",
        body,
        content_type="application/json",
        HTTP_X_GITHUB_EVENT="ping",
        HTTP_X_HUB_SIGNATURE_256=f"sha256={signature}",
    ).status_code


def served_by_us(html: str) -> None:
    """The CSP's rules: every script a file of the project's, no inline script or handler."""
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert all(re.search(r'src="/static/', tag) for tag in scripts), scripts
    assert not re.search(r"\son[a-z]+=", html)


def field_error(html: str, field: str) -> str:
    found = re.search(rf'<ul class="field-error" id="{field}-error">(.*?)</ul>', html, re.S)
    assert found is not None, f"no error at {field}"
    return found.group(1)


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


def test_only_editors_get_the_buttons_that_change_sources(team: Team) -> None:
    a_source(team)
    u = urls(team)
    for role in ("viewer", "operator"):
        client = signed_in(team, role)
        pages = client.get(u["list"]).text + client.get(u["detail"]).text
        for form in MANAGE_FORMS:
            assert u[form] not in pages, (role, form)
            assert client.get(u[form]).status_code == 403, (role, form)
    editor = signed_in(team, "editor")
    pages = editor.get(u["list"]).text + editor.get(u["detail"]).text
    for form in MANAGE_FORMS:
        assert u[form] in pages, form
        assert editor.get(u[form]).status_code == 200, form


def test_an_editor_creates_a_source_and_sees_its_webhook_secret_once(team: Team) -> None:
    create_secret(
        actor=Actor.cli(), tenant=team.tenant, name="flows_key", value="-----BEGIN KEY-----"
    )
    client, u, count = signed_in(team, "editor"), urls(team), audit_count(team.tenant)
    form = client.get(u["new"]).text
    assert 'name="branch" value="main"' in form
    assert '<option value="flows_key">secret flows_key</option>' in form
    body = {
        "form_key": "k1",
        "name": "flows",
        "url": f"  {REMOTE} ",
        "branch": "release",
        "path": "/workflows/prod/",
        "deploy_key": "flows_key",
        "prune": "on",
        "interval_seconds": "600",
    }

    shown = client.post(u["new"], body)

    assert shown.status_code == 200
    assert shown["Cache-Control"] == "no-store"
    source = stored(team)
    assert source is not None
    assert (source.url, source.branch, source.path, source.deploy_key) == (
        REMOTE,
        "release",
        "workflows/prod",
        "flows_key",
    )
    assert (source.prune, source.interval_seconds) == (True, 600)
    secret = shown_secret(shown.text)
    assert secret == crypto.decrypt(source.webhook_secret_encrypted)
    assert f'<code id="webhook-url">{webhook_url(source)}</code>' in shown.text
    assert "Just the push event" in shown.text  # the setup hint of docs/gitops.md
    assert "Secret token" in shown.text
    assert "Git source &#x27;flows&#x27; created" in shown.text
    assert ping(Client(), source, secret) == 200
    served_by_us(form)
    served_by_us(shown.text)
    events = new_audit_events(team.tenant, count)
    assert [(e.action, e.source, e.actor_id) for e in events] == [
        ("git_source.create", "portal", team.users["editor"].pk)
    ]
    # The same form sent again (a reload) makes nothing and shows no secret.
    again = client.post(u["new"], body)
    assert again.status_code == 409
    assert "this form was sent already" in again.text
    assert 'id="webhook-secret"' not in again.text
    assert audit_count(team.tenant) == count + 1
    # Its page says what was set, and the secret only by its prefix.
    detail = client.get(u["detail"]).text
    assert source.webhook_secret_prefix in detail
    assert secret not in detail


def test_an_editor_changes_a_source(team: Team) -> None:
    source = a_source(team)
    client, u, count = signed_in(team, "editor"), urls(team), audit_count(team.tenant)
    form = client.get(u["edit"]).text
    assert f'name="url" value="{REMOTE}"' in form
    assert 'name="name"' not in form  # the name stays
    assert re.search(r'name="prune"(?![^>]*checked)', form)

    done = client.post(
        u["edit"],
        {"url": REMOTE, "branch": "dev", "path": "etl", "prune": "on", "interval_seconds": ""},
    )

    assert (done.status_code, done["Location"]) == (302, u["detail"])
    assert "Git source &#x27;flows&#x27; saved." in client.get(u["detail"]).text
    source.refresh_from_db()
    assert (source.branch, source.path, source.prune, source.interval_seconds) == (
        "dev",
        "etl",
        True,
        0,
    )
    [event] = new_audit_events(team.tenant, count)
    assert (event.action, event.source) == ("git_source.update", "portal")
    assert (event.changes["before"]["branch"], event.changes["after"]["branch"]) == ("main", "dev")


def test_an_editor_rotates_the_webhook_secret_after_a_confirmation(team: Team) -> None:
    source = a_source(team)
    old = crypto.decrypt(source.webhook_secret_encrypted)
    client, u, count = signed_in(team, "editor"), urls(team), audit_count(team.tenant)
    confirm = client.get(u["rotate"]).text
    assert f"{source.webhook_secret_prefix}…" in confirm
    assert "at once" in confirm

    shown = client.post(u["rotate"], {"form_key": "r1"})

    assert (shown.status_code, shown["Cache-Control"]) == (200, "no-store")
    secret = shown_secret(shown.text)
    source.refresh_from_db()
    assert secret == crypto.decrypt(source.webhook_secret_encrypted) != old
    assert f'<code id="webhook-url">{webhook_url(source)}</code>' in shown.text
    assert (ping(Client(), source, secret), ping(Client(), source, old)) == (200, 401)
    [event] = new_audit_events(team.tenant, count)
    assert (event.action, event.source) == ("git_source.rotate_secret", "portal")
    assert client.post(u["rotate"], {"form_key": "r1"}).status_code == 409  # a reload


def test_an_editor_deletes_a_source_after_a_confirmation(team: Team) -> None:
    source = a_source(team)
    client, u, count = signed_in(team, "editor"), urls(team), audit_count(team.tenant)
    confirm = client.get(u["delete"]).text
    assert "stay as they are" in confirm
    assert f"/hooks/git/{source.webhook_uid}</code>" in confirm

    done = client.post(u["delete"])

    assert (done.status_code, done["Location"]) == (302, u["list"])
    assert stored(team) is None
    assert "Git source &#x27;flows&#x27; deleted" in client.get(u["list"]).text
    [event] = new_audit_events(team.tenant, count)
    assert (event.action, event.source) == ("git_source.delete", "portal")
    assert client.get(u["detail"]).status_code == 404


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_a_role_below_editor_cannot_post_the_forms(team: Team, role: str) -> None:
    a_source(team)
    before = tenant_state(team.tenant)
    client = signed_in(team, role)
    for form in MANAGE_FORMS:
        body = {"name": "other", "url": REMOTE, "branch": "dev"}
        assert client.post(urls(team)[form], body).status_code == 403, form
    assert tenant_state(team.tenant) == before


def test_another_tenants_source_is_not_found(team: Team, outsider: Team) -> None:
    a_source(outsider, name="theirs")
    before = tenant_state(outsider.tenant)
    client = signed_in(team, "owner")
    for form in ("edit", "delete", "rotate"):
        for url in (urls(outsider, "theirs")[form], urls(team, "theirs")[form]):
            assert client.get(url).status_code == 404, url
            assert client.post(url, {"branch": "dev"}).status_code == 404, url
    assert client.get(urls(outsider)["new"]).status_code == 404
    assert client.post(urls(outsider)["new"], {"name": "x", "url": REMOTE}).status_code == 404
    assert tenant_state(outsider.tenant) == before


BAD_INPUT = [
    ("name", {"name": "Bad Name"}, "is not a valid name"),
    ("url", {"url": "ftp://git.example.com/flows.git"}, "the scheme ftp:// is not allowed"),
    ("url", {"url": "https://me:pw@git.example.com/f.git"}, "holds credentials"),
    ("branch", {"branch": "--upload-pack=x"}, "is not a branch name"),
    ("path", {"path": "../etc"}, "is not a folder of the repository"),
    ("deploy_key", {"deploy_key": "missing"}, "has no secret &#x27;missing&#x27;"),
    ("interval_seconds", {"interval_seconds": "30"}, "0 (no schedule) or seconds from 60"),
    ("interval_seconds", {"interval_seconds": "soon"}, "&#x27;soon&#x27;: 0 (no schedule)"),
]


def test_bad_input_comes_back_at_its_field_and_stores_nothing(team: Team) -> None:
    a_source(team, name="kept")
    client, before = signed_in(team, "editor"), tenant_state(team.tenant)
    valid = {"name": "flows", "url": REMOTE, "branch": "main", "interval_seconds": "0"}
    for field, bad, words in BAD_INPUT:
        for form in ("new", "edit"):
            if form == "edit" and field == "name":
                continue
            response = client.post(urls(team, "kept")[form], valid | bad)
            assert response.status_code == 400, (form, field)
            assert words in field_error(response.text, field), (form, field)
            assert f'value="{bad[field]}"' in response.text or field == "deploy_key"
            assert tenant_state(team.tenant) == before, (form, field)
    taken = client.post(urls(team)["new"], valid | {"name": "kept"})
    assert taken.status_code == 409
    assert "git source &#x27;kept&#x27; exists" in taken.text
    assert tenant_state(team.tenant) == before
