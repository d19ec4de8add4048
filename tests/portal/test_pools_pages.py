"""Pools in the portal: every member sees the tenant's pools with their usage, the nav
links there, only editors see and may post the forms (a viewer's forged POST is a 403,
another tenant's pool a 404, a POST without a CSRF token a 403), each change is audited
with the source "portal", errors show next to their fields, and a pool in use is kept
with the refusal, naming its tasks, on the page."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from runs.models import Pool
from tests.harness import Team, audit_count, new_audit_events, tenant_state
from tests.runs.pools.pool_states import a_pool, busy_run

pytestmark = pytest.mark.django_db


def signed_in(team: Team, role: str, client: Client | None = None) -> Client:
    client = client or Client()
    client.force_login(team.users[role])
    return client


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def urls(team: Team, name: str = "warehouse") -> dict[str, str]:
    slug = team.slug
    return {
        "list": reverse("portal:pools", args=[slug]),
        "new": reverse("portal:pool-new", args=[slug]),
        "edit": reverse("portal:pool-edit", args=[slug, name]),
        "delete": reverse("portal:pool-delete", args=[slug, name]),
    }


def test_every_member_sees_the_pools_and_their_usage(team: Team, outsider: Team) -> None:
    a_pool(team, slots=4, description="the warehouse's connections")
    a_pool(team, name="gpu", slots=0)
    busy_run(team)
    a_pool(outsider, name="theirs")
    page = signed_in(team, "viewer").get(urls(team)["list"])
    assert page.status_code == 200
    html = page.text
    assert re.findall(r'data-pool="([^"]+)"', html) == ["gpu", "warehouse"]
    assert 'aria-label="3 of 4 slots in use"' in html
    assert 'data-running="1"' in html
    assert 'data-queued="1"' in html
    assert 'data-waiting="1"' in html
    assert "(paused)" in text_of(html)  # gpu has 0 slots
    assert "theirs" not in html
    # The nav links to the page; a viewer gets no form links.
    assert f'href="{urls(team)["list"]}" aria-current="page">Pools' in html
    assert urls(team)["new"] not in html
    assert urls(team)["edit"] not in html


def test_editors_get_the_form_links(team: Team) -> None:
    a_pool(team)
    html = signed_in(team, "editor").get(urls(team)["list"]).text
    for name in ("new", "edit", "delete"):
        assert urls(team)[name] in html


def test_an_editor_creates_resizes_and_deletes_a_pool_audited_as_portal(team: Team) -> None:
    client, u = signed_in(team, "editor"), urls(team)
    count = audit_count(team.tenant)
    assert client.get(u["new"]).status_code == 200
    created = client.post(u["new"], {"name": "warehouse", "slots": "3", "description": "wh"})
    assert created.status_code == 302
    assert created["Location"] == u["list"]
    assert "Pool &#x27;warehouse&#x27; created" in client.get(u["list"]).text
    pool = Pool.objects.dangerously_unscoped().get(tenant=team.tenant, name="warehouse")
    assert (pool.slots, pool.description) == (3, "wh")
    form = client.get(u["edit"]).text
    assert 'name="slots" value="3"' in form
    assert client.post(u["edit"], {"slots": "0", "description": "paused"}).status_code == 302
    pool.refresh_from_db()
    assert (pool.slots, pool.description) == (0, "paused")
    assert client.get(u["delete"]).status_code == 200
    assert client.post(u["delete"]).status_code == 302
    assert not Pool.objects.dangerously_unscoped().filter(pk=pool.pk).exists()
    events = new_audit_events(team.tenant, count)
    assert [(e.action, e.source, e.actor_id) for e in events] == [
        ("pool.create", "portal", team.users["editor"].pk),
        ("pool.update", "portal", team.users["editor"].pk),
        ("pool.delete", "portal", team.users["editor"].pk),
    ]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"name": "Bad Name", "slots": "1"}, "name", "is not a valid pool name"),
        ({"name": "warehouse", "slots": "-1"}, "slots", "is not a number of slots"),
        ({"name": "warehouse", "slots": "lots"}, "slots", "is not a number of slots"),
    ],
)
def test_errors_show_next_to_their_fields_and_keep_what_was_typed(
    team: Team, body: dict[str, str], field: str, words: str
) -> None:
    before = tenant_state(team.tenant)
    response = signed_in(team, "editor").post(urls(team)["new"], body)
    assert response.status_code == 400
    errors = re.search(
        rf'<ul class="field-error" id="{field}-error">(.*?)</ul>', response.text, re.S
    )
    assert errors is not None
    assert words in errors.group(1)
    assert f'value="{body["name"]}"' in response.text
    assert tenant_state(team.tenant) == before


def test_a_taken_name_is_said_above_the_form(team: Team) -> None:
    a_pool(team)
    response = signed_in(team, "editor").post(
        urls(team)["new"], {"name": "warehouse", "slots": "1"}
    )
    assert response.status_code == 409
    assert "pool &#x27;warehouse&#x27; exists" in response.text


def test_a_pool_in_use_is_kept_and_the_page_names_its_tasks(team: Team) -> None:
    a_pool(team)
    run = busy_run(team)
    client = signed_in(team, "editor")
    shown = text_of(client.get(urls(team)["delete"]).text)
    assert "1 running, 1 queued and 1 waiting task instance(s) name it now" in shown
    before = tenant_state(team.tenant)
    refused = client.post(urls(team)["delete"])
    assert refused.status_code == 409
    assert f"etl.extract (run {run.pk}, running)" in text_of(refused.text)
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize("form", ["new", "edit", "delete"])
def test_a_viewer_cannot_post_the_forms(team: Team, form: str) -> None:
    a_pool(team)
    before = tenant_state(team.tenant)
    client = signed_in(team, "viewer")
    assert client.get(urls(team)[form]).status_code == 403
    assert client.post(urls(team)[form], {"name": "x", "slots": "1"}).status_code == 403
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize("form", ["list", "edit", "delete"])
def test_another_tenants_pages_are_not_found(team: Team, outsider: Team, form: str) -> None:
    a_pool(outsider)
    before = tenant_state(outsider.tenant)
    client = signed_in(team, "owner")
    assert client.get(urls(outsider)[form]).status_code == 404
    if form != "list":
        assert client.post(urls(outsider)[form], {"slots": "1"}).status_code == 404
    assert tenant_state(outsider.tenant) == before


def test_a_missing_pool_is_not_found(team: Team) -> None:
    client = signed_in(team, "owner")
    assert client.get(urls(team, "missing")["edit"]).status_code == 404
    assert client.post(urls(team, "missing")["delete"]).status_code == 404


def test_a_post_without_a_csrf_token_is_refused(team: Team) -> None:
    before = tenant_state(team.tenant)
    client = signed_in(team, "owner", Client(enforce_csrf_checks=True))
    assert client.post(urls(team)["new"], {"name": "warehouse", "slots": "1"}).status_code == 403
    assert tenant_state(team.tenant) == before
