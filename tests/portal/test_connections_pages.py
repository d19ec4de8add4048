"""Connections, variables and secrets in the portal: who sees what on the list, every form
forged by a role too low (403), by another tenant's member (404) and without a CSRF token
(403), each success audited with the source "portal" and its secrets masked, errors next to
their fields, write-only values that no page ever shows, and the connection test's answer
from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client

from connections import services
from connections.models import Connection, Secret, Variable
from orchestrator import crypto
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent
from tests.harness import ROLES, Team, audit_count, new_audit_events, set_policy, tenant_state
from tests.runs.tasktypes.test_netguard import LocalServer, serve

pytestmark = pytest.mark.django_db

PASSWORD = "pa55-Warehouse-word"
NEW_PASSWORD = "n3w-Warehouse-pa55"
HEADER_TOKEN = "hdr-T0ken-in-extra"
SECRET = "s3cret-Api-Key-value"
NEW_SECRET = "r0tated-Api-Key-value"
SECRETS = (PASSWORD, NEW_PASSWORD, HEADER_TOKEN, SECRET, NEW_SECRET)


def furnish(team: Team) -> None:
    """A connection `warehouse`, a variable `region` and a secret `api_key`, as the CLI
    would make them."""
    actor, tenant = Actor.cli(), team.tenant
    with tenant_scope([tenant]):
        services.create_connection(
            actor=actor,
            tenant=tenant,
            name="warehouse",
            kind="postgres",
            host="db.internal",
            database="wh",
            login="loader",
            password=PASSWORD,
            extra={"sslmode": "require", "headers": {"X-Token": HEADER_TOKEN}},
            description="the warehouse",
        )
        services.create_variable(actor=actor, tenant=tenant, name="region", value="eu-west")
        services.create_secret(
            actor=actor, tenant=tenant, name="api_key", value=SECRET, description="sales API"
        )


@pytest.fixture
def acme(team: Team) -> Team:
    furnish(team)
    return team


def signed_in(team: Team, role: str, client: Client | None = None) -> Client:
    client = client or Client()
    client.force_login(team.users[role])
    return client


def text_of(html: str) -> str:
    """The page's words without its tags, spaces squeezed (none before punctuation)."""
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    return re.sub(r" ([.,;:?)])", r"\1", words)


def assert_no_secret_in(html: str, where: str) -> None:
    for value in SECRETS:
        assert value not in html, f"{where} shows {value!r}"


# --- the forms ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """A form of the portal: its path under /t/<tenant>/, the least role the API asks for,
    what a person would post, and the audit event a success writes (None: changes nothing)."""

    name: str
    path: str
    min_role: str
    data: dict[str, str] = field(default_factory=dict)
    audit_action: str | None = None

    @property
    def names_an_object(self) -> bool:
        return self.path.count("/") > 1

    def url(self, team: Team) -> str:
        return f"/t/{team.slug}/{self.path}"

    def denied_roles(self) -> tuple[str, ...]:
        return ROLES[: ROLES.index(self.min_role)]


FORMS = [
    Form(
        "connection-new",
        "connection-editor/",
        "admin",
        {
            "name": "billing-api",
            "kind": "http",
            "host": "billing.example.com",
            "login": "etl",
            "password": NEW_PASSWORD,
            "extra": json.dumps({"headers": {"X-Api-Key": HEADER_TOKEN}}),
            "description": "Billing API",
        },
        "connection.create",
    ),
    Form(
        "connection-edit",
        "connection-editor/warehouse/",
        "admin",
        {
            "kind": "postgres",
            "host": "db2.internal",
            "port": "5433",
            "database": "wh",
            "login": "loader",
            "password": NEW_PASSWORD,
            "description": "moved",
        },
        "connection.update",
    ),
    Form("connection-test", "connection-editor/warehouse/test/", "admin"),
    Form(
        "connection-delete", "connection-editor/warehouse/delete/", "admin", {}, "connection.delete"
    ),
    Form(
        "variable-new",
        "variable-editor/",
        "editor",
        {"name": "stage", "value": "prod", "description": ""},
        "variable.create",
    ),
    Form(
        "variable-edit",
        "variable-editor/region/",
        "editor",
        {"value": "us-east", "description": "where we run"},
        "variable.update",
    ),
    Form("variable-delete", "variable-editor/region/delete/", "editor", {}, "variable.delete"),
    Form(
        "secret-new",
        "secret-editor/",
        "admin",
        {"name": "sales_key", "value": NEW_SECRET, "description": "sales"},
        "secret.create",
    ),
    Form(
        "secret-edit",
        "secret-editor/api_key/",
        "admin",
        {"value": NEW_SECRET, "description": "rotated"},
        "secret.update",
    ),
    Form("secret-delete", "secret-editor/api_key/delete/", "admin", {}, "secret.delete"),
]
DENIED = [
    pytest.param(form, role, id=f"{form.name}-{role}")
    for form in FORMS
    for role in form.denied_roles()
]
CHANGES = [pytest.param(form, id=form.name) for form in FORMS if form.audit_action]
BY_NAME = {form.name: form for form in FORMS}


@pytest.mark.parametrize(("form", "role"), DENIED)
def test_a_role_too_low_is_refused_and_nothing_changes(acme: Team, form: Form, role: str) -> None:
    client = signed_in(acme, role)
    before = tenant_state(acme.tenant)
    assert client.post(form.url(acme), form.data).status_code == 403
    assert tenant_state(acme.tenant) == before
    if form.name != "connection-test":  # a POST-only action has no page to refuse
        assert client.get(form.url(acme)).status_code == 403


@pytest.mark.parametrize("form", [pytest.param(f, id=f.name) for f in FORMS])
def test_another_tenants_member_gets_a_404_and_nothing_changes(
    acme: Team, outsider: Team, form: Form
) -> None:
    client = signed_in(outsider, "owner")
    before = tenant_state(acme.tenant), tenant_state(outsider.tenant)
    urls = [form.url(acme)]  # tenant A's page, by a member of B only
    if form.names_an_object:
        urls.append(form.url(outsider))  # A's object, named under B
    for url in urls:
        assert client.post(url, form.data).status_code == 404, url
        assert (tenant_state(acme.tenant), tenant_state(outsider.tenant)) == before


@pytest.mark.parametrize("form", [pytest.param(f, id=f.name) for f in FORMS])
def test_a_post_without_a_csrf_token_is_refused(acme: Team, form: Form) -> None:
    client = signed_in(acme, "owner", Client(enforce_csrf_checks=True))
    before = tenant_state(acme.tenant)
    response = client.post(form.url(acme), form.data)
    assert response.status_code == 403
    assert b"CSRF" in response.content
    assert tenant_state(acme.tenant) == before


@pytest.mark.parametrize("form", CHANGES)
def test_each_form_does_it_once_audited_from_the_portal_with_secrets_masked(
    acme: Team, form: Form
) -> None:
    client = signed_in(acme, form.min_role)
    count = audit_count(acme.tenant)
    response = client.post(form.url(acme), form.data)
    assert response.status_code == 302, response.content.decode()[:3000]
    [event] = new_audit_events(acme.tenant, count)
    assert event.action == form.audit_action
    assert event.source == AuditEvent.Source.PORTAL
    assert event.actor_id == acme.users[form.min_role].pk
    assert_no_secret_in(json.dumps(event.changes), f"the audit event of {form.name}")
    said = text_of(client.get(response["Location"]).content.decode())
    assert re.search(r"(created|saved|set|replaced|deleted)\.", said), said


# --- the list -----------------------------------------------------------------------------


def test_a_viewer_sees_variables_but_no_connection_or_secret(acme: Team) -> None:
    response = signed_in(acme, "viewer").get(f"/t/{acme.slug}/connections/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-variable="region"' in html
    assert "eu-west" in html  # variables are plain: every member may read them
    for hidden in ("warehouse", "db.internal", "api_key", "New variable", "/variable-editor/"):
        assert hidden not in html
    assert_no_secret_in(html, "the list, for a viewer")


def test_an_editor_sees_connections_and_secrets_but_manages_only_variables(acme: Team) -> None:
    html = signed_in(acme, "editor").get(f"/t/{acme.slug}/connections/").content.decode()
    row = html.split('data-connection="warehouse"', 1)[1].split("</tr>", 1)[0]
    words = text_of(row)
    assert "postgres" in words
    assert "db.internal" in words
    assert "loader" in words
    assert "set (write-only)" in words
    assert "headers, sslmode" in words  # the extra's keys, never its values
    assert 'data-secret="api_key"' in html
    assert "sales API" in html
    assert "/variable-editor/region/" in html
    for absent in ("/connection-editor/", "/secret-editor/", "New connection", "New secret"):
        assert absent not in html
    assert_no_secret_in(html, "the list, for an editor")


def test_an_admin_gets_every_control_and_still_no_value(acme: Team) -> None:
    html = signed_in(acme, "admin").get(f"/t/{acme.slug}/connections/").content.decode()
    for link in (
        "/connection-editor/warehouse/",
        "/connection-editor/warehouse/delete/",
        "/secret-editor/api_key/",
        "/secret-editor/api_key/delete/",
        "/variable-editor/region/",
    ):
        assert f"/t/{acme.slug}{link}" in html
    assert_no_secret_in(html, "the list, for an admin")


def test_the_list_costs_the_same_few_queries_however_many_rows(
    acme: Team, django_assert_max_num_queries: Any
) -> None:
    client = signed_in(acme, "owner")
    client.get(f"/t/{acme.slug}/connections/")
    with tenant_scope([acme.tenant]):
        for n in range(5):
            services.create_variable(actor=Actor.cli(), tenant=acme.tenant, name=f"v{n}", value="x")
    with django_assert_max_num_queries(8):
        html = client.get(f"/t/{acme.slug}/connections/").content.decode()
    assert html.count("data-variable=") == 6


# --- write-only values -------------------------------------------------------------------


def test_a_secret_set_in_the_portal_never_shows_again(acme: Team) -> None:
    client = signed_in(acme, "owner")
    new_form = client.get(f"/t/{acme.slug}/secret-editor/").content.decode()
    assert 'type="password"' in new_form
    response = client.post(
        f"/t/{acme.slug}/secret-editor/", {"name": "ledger", "value": NEW_SECRET}, follow=True
    )
    assert "Secret &#x27;ledger&#x27; set." in response.content.decode()
    with tenant_scope([acme.tenant]):
        stored = Secret.objects.get(name="ledger")
    assert crypto.decrypt(stored.value_encrypted) == NEW_SECRET
    pages = {
        "list": f"/t/{acme.slug}/connections/",
        "edit form": f"/t/{acme.slug}/secret-editor/ledger/",
        "delete page": f"/t/{acme.slug}/secret-editor/ledger/delete/",
        "audit log": f"/t/{acme.slug}/audit/",
    }
    for where, url in pages.items():
        page = client.get(url)
        assert page.status_code == 200, where
        assert_no_secret_in(page.content.decode(), where)
    form = text_of(client.get(pages["edit form"]).content.decode())
    assert "Value: set. Leave empty to keep the current value" in form
    audit = client.get(pages["audit log"]).content.decode()
    assert "secret.create" in audit
    assert "********" in audit


def test_replacing_a_secret_rotates_it_and_an_empty_value_keeps_it(acme: Team) -> None:
    client = signed_in(acme, "admin")
    url = f"/t/{acme.slug}/secret-editor/api_key/"
    count = audit_count(acme.tenant)
    assert client.post(url, {"value": "", "description": "sales API v2"}).status_code == 302
    with tenant_scope([acme.tenant]):
        secret = Secret.objects.get(name="api_key")
    assert crypto.decrypt(secret.value_encrypted) == SECRET
    assert secret.description == "sales API v2"
    [kept] = new_audit_events(acme.tenant, count)
    assert kept.changes == {
        "before": {"description": "sales API"},
        "after": {"description": "sales API v2"},
    }  # the value is not listed: it did not change

    assert client.post(url, {"value": NEW_SECRET, "description": "sales API v2"}).status_code == 302
    with tenant_scope([acme.tenant]):
        secret.refresh_from_db()
    assert crypto.decrypt(secret.value_encrypted) == NEW_SECRET
    [rotated] = new_audit_events(acme.tenant, count + 1)
    assert rotated.changes["before"] == {"value": "********"}
    assert rotated.changes["after"] == {"value": "********"}
    assert_no_secret_in(json.dumps(rotated.changes), "the rotation's audit event")


def test_a_connection_password_left_empty_is_kept_and_its_checkbox_clears_it(acme: Team) -> None:
    client = signed_in(acme, "admin")
    url = f"/t/{acme.slug}/connection-editor/warehouse/"
    page = client.get(url).content.decode()
    assert_no_secret_in(page, "the connection's page")
    words = text_of(page)
    assert "Currently set; leave empty to keep the current value." in words
    assert "Keys now: headers, sslmode" in words
    assert 'name="password" value=""' in page
    kept = {"kind": "postgres", "host": "db.internal", "database": "wh", "login": "loader"}
    assert client.post(url, kept | {"description": "same password"}).status_code == 302
    with tenant_scope([acme.tenant]):
        connection = Connection.objects.get(name="warehouse")
    assert crypto.decrypt(connection.password_encrypted) == PASSWORD
    assert connection.extra_keys == ["headers", "sslmode"]
    assert connection.description == "same password"

    assert client.post(url, kept | {"clear_password": "1", "clear_extra": "1"}).status_code == 302
    connection.refresh_from_db()
    assert not connection.has_password
    assert (connection.extra_encrypted, connection.extra_keys) == ("", [])
    assert "Currently not set" in text_of(client.get(url).content.decode())


def test_an_editor_changes_a_variable(acme: Team) -> None:
    client = signed_in(acme, "editor")
    url = f"/t/{acme.slug}/variable-editor/region/"
    assert ">\neu-west</textarea>" in client.get(url).content.decode()
    response = client.post(url, {"value": "line one\r\nline two", "description": "d"})
    assert response.status_code == 302
    assert response["Location"] == f"/t/{acme.slug}/connections/#variables"
    with tenant_scope([acme.tenant]):
        assert Variable.objects.get(name="region").value == "line one\nline two"


def test_the_delete_page_says_what_will_happen_and_keeps_it_until_confirmed(acme: Team) -> None:
    client = signed_in(acme, "admin")
    url = f"/t/{acme.slug}/connection-editor/warehouse/delete/"
    words = text_of(client.get(url).content.decode())
    assert "Delete the connection warehouse?" in words
    assert "Tasks that name this connection fail from then on" in words
    with tenant_scope([acme.tenant]):
        assert Connection.objects.filter(name="warehouse").exists()
    page = text_of(client.get(f"/t/{acme.slug}/secret-editor/api_key/delete/").content.decode())
    assert "Tasks whose templates use it as {{ secrets.api_key }} fail from then on" in page
    assert client.post(url).status_code == 302
    with tenant_scope([acme.tenant]):
        assert not Connection.objects.filter(name="warehouse").exists()


def test_an_unknown_name_is_a_404(acme: Team) -> None:
    client = signed_in(acme, "owner")
    for path in ("connection-editor/ghost/", "variable-editor/ghost/", "secret-editor/ghost/"):
        assert client.get(f"/t/{acme.slug}/{path}").status_code == 404
        assert client.post(f"/t/{acme.slug}/{path}delete/").status_code == 404


# --- errors -------------------------------------------------------------------------------


def field_error(html: str, name: str) -> str:
    """The text of the error list shown under a field (empty when there is none)."""
    found = re.search(rf'<ul class="field-error" id="{name}-error">(.*?)</ul>', html, re.S)
    return text_of(found.group(1)) if found else ""


def test_errors_show_next_to_their_fields_and_what_was_typed_stays(acme: Team) -> None:
    client = signed_in(acme, "admin")
    url = f"/t/{acme.slug}/connection-editor/"
    typed = {
        "name": "Bad Name",
        "kind": "http",
        "host": "",
        "port": "70000",
        "login": "etl",
        "password": NEW_PASSWORD,
        "description": "typed",
    }
    response = client.post(url, typed)
    assert response.status_code == 400
    html = response.content.decode()
    assert "is not a valid name" in field_error(html, "name")
    assert "a http connection needs a host" in field_error(html, "host")
    assert "must be an integer from 1 to 65535" in field_error(html, "port")
    assert field_error(html, "login") == ""
    assert 'aria-describedby="host-help host-error" aria-invalid="true"' in html
    assert 'value="Bad Name"' in html
    assert 'value="typed"' in html
    assert '<option value="http" selected>' in html
    assert NEW_PASSWORD not in html  # typed into a write-only field: not written back
    assert "what you typed as password is not shown again" in text_of(html)
    with tenant_scope([acme.tenant]):
        assert not Connection.objects.filter(login="etl").exists()


def test_a_port_or_extra_the_form_cannot_read_is_refused_at_its_field(acme: Team) -> None:
    client = signed_in(acme, "admin")
    response = client.post(
        f"/t/{acme.slug}/connection-editor/warehouse/",
        {"kind": "postgres", "host": "db.internal", "port": "54x", "extra": '{"sslmode": '},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "must be an integer from 1 to 65535" in field_error(html, "port")
    assert "not JSON" in field_error(html, "extra")
    assert 'value="54x"' in html
    response = client.post(
        f"/t/{acme.slug}/connection-editor/warehouse/",
        {"kind": "postgres", "host": "db.internal", "extra": '["not", "an", "object"]'},
    )
    assert "expected an object of settings" in field_error(response.content.decode(), "extra")


def test_a_secret_needs_a_value_and_a_taken_name_is_a_conflict(acme: Team) -> None:
    client = signed_in(acme, "admin")
    url = f"/t/{acme.slug}/secret-editor/"
    response = client.post(url, {"name": "fresh", "value": ""})
    assert response.status_code == 400
    assert "a secret needs a value" in field_error(response.content.decode(), "value")
    response = client.post(url, {"name": "api_key", "value": NEW_SECRET})
    assert response.status_code == 409
    html = response.content.decode()
    assert "secret &#x27;api_key&#x27; exists" in html
    assert 'value="api_key"' in html
    assert NEW_SECRET not in html
    with tenant_scope([acme.tenant]):
        assert crypto.decrypt(Secret.objects.get(name="api_key").value_encrypted) == SECRET


# --- the connection test ------------------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    yield from serve(LocalServer())


def an_http_connection(team: Team, server: LocalServer) -> None:
    with tenant_scope([team.tenant]):
        services.create_connection(
            actor=Actor.cli(),
            tenant=team.tenant,
            name="local-api",
            kind="http",
            host="127.0.0.1",
            port=server.port,
            login="robot",
            password=PASSWORD,
            extra={"scheme": "http"},
        )


def test_the_test_button_shows_the_answer_on_the_connections_page(
    acme: Team, http_server: LocalServer
) -> None:
    set_policy(acme.tenant, http_allowed_hosts=["127.0.0.1"])
    an_http_connection(acme, http_server)
    client = signed_in(acme, "admin")
    before = tenant_state(acme.tenant)
    page_url = f"/t/{acme.slug}/connection-editor/local-api/"
    assert f'action="{page_url}test/"' in client.get(page_url).content.decode()
    response = client.post(f"{page_url}test/")
    assert response.status_code == 302
    assert response["Location"] == page_url
    html = client.get(page_url).content.decode()
    answer = re.search(r'<li class="message connection-test success">(.*?)</li>', html, re.S)
    assert answer is not None, html
    assert re.fullmatch(
        r"Reached local-api: HTTP 404 in \d+ ms \(tested at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)\.",
        answer.group(1),
    )
    [request] = http_server.seen
    assert request["headers"]["Authorization"].startswith("Basic ")  # with its credentials
    assert_no_secret_in(html, "the connection's page after a test")
    assert tenant_state(acme.tenant) == before  # a probe changes nothing, audits nothing


def test_a_connection_the_installation_may_not_reach_answers_why(
    acme: Team, http_server: LocalServer
) -> None:
    an_http_connection(acme, http_server)  # no http_allowed_hosts: loopback is blocked
    client = signed_in(acme, "owner")
    page_url = f"/t/{acme.slug}/connection-editor/local-api/"
    html = client.post(f"{page_url}test/", follow=True).content.decode()
    answer = re.search(r'<li class="message connection-test error">(.*?)</li>', html, re.S)
    assert answer is not None, html
    assert answer.group(1).startswith("Not reached local-api: ")
    assert "loopback" in answer.group(1)
    assert http_server.seen == []
    assert client.get(f"{page_url}test/").status_code == 405
