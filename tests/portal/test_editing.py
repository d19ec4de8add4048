"""Workflow editing in the portal: the editor (Check shows every error at its line and
path, or the diff against the current version; Apply makes the version, audited as
`portal`), a name the edited workflow does not have refused, uploads, and deleting with
the API's guard against active runs. Every form's POST forged by a role too low (403),
by another tenant's member (404) and without a CSRF token (403) changes nothing."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent
from runs.models import WorkflowRun
from tests.harness import Team
from workflows.models import Workflow, WorkflowVersion
from workflows.services import apply_workflow, spec_yaml

pytestmark = pytest.mark.django_db

ETL: dict[str, Any] = {
    "name": "etl",
    "description": "Loads the day's sales",
    "tasks": {
        "extract": {"type": "noop"},
        "load": {"type": "shell", "command": ["true"], "depends_on": ["extract"]},
    },
}

# Three mistakes: an unknown key (line 7), a bad type (line 10), a cycle (line 11).
BROKEN = """\
name: etl
description: Loads the day's sales
tasks:
  extract:
    type: shell
    command: ["true"]
    colour: blue
  load:
    type: shell
    retries: many
    depends_on: [extract, report]
    command: ["true"]
  report:
    type: noop
    depends_on:
      - load
"""


# --- making and reading ------------------------------------------------------------------


def apply(team: Team, spec: dict[str, Any] = ETL) -> Workflow:
    with tenant_scope([team.tenant]):
        return apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec).workflow


def signed_in(team: Team, role: str = "editor", **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(team.users[role])
    return client


def new_url(team: Team) -> str:
    return f"/t/{team.slug}/editor/"


def edit_url(team: Team, name: str = "etl") -> str:
    return f"/t/{team.slug}/workflows/{name}/edit/"


def delete_url(team: Team, name: str = "etl") -> str:
    return f"/t/{team.slug}/workflows/{name}/delete/"


def text_of(response: Any) -> str:
    """The page's text, tags removed and whitespace folded, for reading as a person does."""
    html = response.content.decode()
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def textarea(response: Any) -> str:
    found = re.search(
        r'<textarea[^>]*name="spec"[^>]*>\n?(.*?)</textarea>', response.content.decode(), re.S
    )
    assert found is not None
    return unescape(found.group(1))


def hidden(response: Any, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', response.content.decode())
    assert found is not None, name
    return found.group(1)


def versions(workflow_name: str = "etl") -> list[int]:
    return sorted(
        WorkflowVersion.objects.dangerously_unscoped()
        .filter(workflow__name=workflow_name)
        .values_list("number", flat=True)
    )


def current_yaml(name: str = "etl") -> str:
    workflow = Workflow.objects.dangerously_unscoped().get(name=name, deleted_at=None)
    assert workflow.current_version is not None
    return spec_yaml(workflow.current_version.spec)


def audit_events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.dangerously_unscoped().filter(action=action).order_by("seq"))


def changed(spec: dict[str, Any] = ETL) -> str:
    """The spec's YAML with a third task, as a person would have edited it."""
    tasks = spec["tasks"] | {"report": {"type": "noop", "depends_on": ["load"]}}
    return spec_yaml(spec | {"tasks": tasks})


def check(client: Client, url: str, text: str) -> Any:
    return client.post(url, {"spec": text, "action": "check"})


def checked_apply(client: Client, url: str, text: str) -> Any:
    """Check, then Apply what was checked, as the page's two buttons do."""
    shown = check(client, url, text)
    assert shown.status_code == 200, text_of(shown)[:800]
    posted = {
        "spec": text,
        "action": "apply",
        "checked": hidden(shown, "checked"),
        "base": hidden(shown, "base"),
    }
    return client.post(url, posted)


def active_run(workflow: Workflow) -> WorkflowRun:
    assert workflow.current_version is not None
    return WorkflowRun.objects.dangerously_unscoped().create(
        tenant_id=workflow.tenant_id,
        workflow=workflow,
        version=workflow.current_version,
        state=WorkflowRun.State.RUNNING,
        logical_date=timezone.now(),
        trigger_source="api",
    )


# --- the editor --------------------------------------------------------------------------


def test_it_opens_prefilled_with_the_current_version(team: Team) -> None:
    apply(team)
    response = signed_in(team).get(edit_url(team))
    assert response.status_code == 200
    assert textarea(response) == current_yaml()
    assert "current version 1" in text_of(response)
    empty = signed_in(team).get(new_url(team))
    assert empty.status_code == 200
    assert textarea(empty) == ""
    assert 'enctype="multipart/form-data"' in empty.content.decode()


def test_the_edit_and_delete_links_show_for_editors_only(team: Team) -> None:
    apply(team)
    for role, shown in (("viewer", False), ("operator", False), ("editor", True)):
        page = signed_in(team, role).get(f"/t/{team.slug}/workflows/etl/").content.decode()
        assert (edit_url(team) in page) is shown, role
        assert (delete_url(team) in page) is shown, role
        listing = signed_in(team, role).get(f"/t/{team.slug}/workflows/").content.decode()
        assert (new_url(team) in listing) is shown, role


def test_every_error_is_shown_at_its_line_and_path(team: Team) -> None:
    apply(team)
    response = check(signed_in(team), edit_url(team), BROKEN)
    assert response.status_code == 400
    text = text_of(response)
    expected = [
        "line 7 , tasks.extract.colour : unknown field 'colour'",
        "line 10 , tasks.load.retries : Input should be a valid integer",
        "line 11 , tasks.load.depends_on : cycle: load -> report -> load",
    ]
    at = [text.find(e) for e in expected]
    assert all(i >= 0 for i in at), text[:2000]
    assert at == sorted(at)  # ordered by line
    assert "3 problems to fix" in text
    assert "colour: blue" in text  # the line itself, beside its error
    assert textarea(response) == BROKEN  # what was typed is kept
    assert versions() == [1]


def test_a_syntax_error_is_shown_at_its_line(team: Team) -> None:
    response = check(signed_in(team), new_url(team), "name: etl\ntasks: [a, b\nmore: 1\n")
    assert response.status_code == 400
    assert "line 3 : invalid YAML at line 3" in text_of(response)


def test_a_missing_field_is_shown_at_the_entry_that_lacks_it(team: Team) -> None:
    spec = "name: etl\ntasks:\n  load:\n    type: shell\n"
    text = text_of(check(signed_in(team), new_url(team), spec))
    assert "line 3 , tasks.load.command : required field missing" in text


def test_check_shows_the_diff_and_keeps_nothing(team: Team) -> None:
    apply(team)
    before = len(audit_events("workflow.update"))
    response = check(signed_in(team), edit_url(team), changed())
    assert response.status_code == 200
    text = text_of(response)
    assert "Changes to etl : version 1 → version 2" in text
    page = response.content.decode()
    assert re.search(r'<tr class="add">.*?<td class="b">  report:</td>', page, re.S), page
    assert "Apply as version 2" in text
    assert hidden(response, "base") == "1"
    assert versions() == [1]
    assert len(audit_events("workflow.update")) == before  # the dry run was rolled back


def test_apply_makes_the_version_audited_as_portal(team: Team) -> None:
    apply(team)
    client = signed_in(team)
    response = checked_apply(client, edit_url(team), changed())
    assert response.status_code == 302
    assert response["Location"] == f"/t/{team.slug}/workflows/etl/"
    assert versions() == [1, 2]
    workflow = Workflow.objects.dangerously_unscoped().get(name="etl")
    assert workflow.current_version is not None
    assert "report" in workflow.current_version.spec["tasks"]
    assert workflow.current_version.author == team.users["editor"]
    (event,) = audit_events("workflow.update")
    assert event.source == "portal"
    assert event.actor_id == team.users["editor"].pk
    shown = text_of(client.get(response["Location"]))
    assert "Workflow etl: version 2 applied." in shown


def test_apply_of_what_was_not_checked_shows_its_diff_instead(team: Team) -> None:
    apply(team)
    client = signed_in(team)
    shown = check(client, edit_url(team), changed())
    edited = changed().replace("type: noop\n    depends_on:\n    - load", "type: noop")
    assert edited != changed()
    posted = {"spec": edited, "action": "apply", "checked": hidden(shown, "checked"), "base": "1"}
    response = client.post(edit_url(team), posted)
    assert response.status_code == 409
    assert "changed since it was checked" in text_of(response)
    assert hidden(response, "checked") != hidden(shown, "checked")
    assert versions() == [1]


def test_an_unchanged_spec_applies_as_unchanged(team: Team) -> None:
    apply(team)
    client = signed_in(team)
    current = current_yaml()
    assert "applying changes nothing" in text_of(check(client, edit_url(team), current))
    response = checked_apply(client, edit_url(team), current)
    assert response.status_code == 302
    assert "Workflow etl unchanged: version 1 stays." in text_of(client.get(response["Location"]))
    assert versions() == [1]


def test_a_new_workflow_is_created(team: Team) -> None:
    client = signed_in(team)
    text = spec_yaml({"name": "fresh", "tasks": {"only": {"type": "noop"}}})
    shown = check(client, new_url(team), text)
    assert "A new workflow: fresh" in text_of(shown)
    assert '<table class="diff">' not in shown.content.decode()  # nothing to compare with
    response = checked_apply(client, new_url(team), text)
    assert response["Location"] == f"/t/{team.slug}/workflows/fresh/"
    (event,) = audit_events("workflow.create")
    assert (event.source, event.object_repr) == ("portal", "fresh")
    assert versions("fresh") == [1]


def test_the_new_page_updates_the_workflow_a_spec_names(team: Team) -> None:
    apply(team)
    text = text_of(check(signed_in(team), new_url(team), changed()))
    assert "A workflow named etl exists: applying gives it a new version." in text
    assert "version 1 → version 2" in text


def test_the_edited_workflows_name_must_be_kept(team: Team) -> None:
    apply(team)
    renamed = changed().replace("name: etl", "name: other")
    response = check(signed_in(team), edit_url(team), renamed)
    assert response.status_code == 400
    assert "line 1 , name : the spec is named 'other' but was sent to 'etl'" in text_of(response)
    assert not Workflow.objects.dangerously_unscoped().filter(name="other").exists()


def test_a_spec_can_be_uploaded(team: Team) -> None:
    apply(team)
    upload = SimpleUploadedFile("etl.yaml", changed().encode(), "application/yaml")
    response = signed_in(team).post(
        edit_url(team), {"spec": "ignored", "action": "check", "file": upload}
    )
    assert response.status_code == 200
    assert "version 1 → version 2" in text_of(response)
    assert textarea(response) == changed()  # the file's text, to edit further


def test_an_upload_over_the_apis_limit_is_refused(team: Team, settings: Any) -> None:
    apply(team)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    upload = SimpleUploadedFile("big.yaml", b"# " + b"x" * 2000, "application/yaml")
    response = signed_in(team).post(
        edit_url(team), {"spec": "name: etl", "action": "check", "file": upload}
    )
    assert response.status_code == 413
    assert "big.yaml is 2002 bytes; at most 1000 are accepted" in text_of(response)
    assert textarea(response) == "name: etl"


def test_a_spec_over_the_tenants_limit_is_refused(team: Team) -> None:
    team.tenant.quotas = {"max_spec_bytes": 100}
    team.tenant.save()
    response = check(signed_in(team), new_url(team), changed())
    assert response.status_code == 400
    assert "this tenant's limit is 100" in text_of(response)


def test_a_json_spec_is_located_too(team: Team) -> None:
    text = '{\n  "name": "etl",\n  "tasks": {\n    "a": {"type": "noop", "retries": "x"}\n  }\n}\n'
    response = check(signed_in(team), new_url(team), text)
    assert "line 4 , tasks.a.retries :" in text_of(response)


# --- forged posts ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_a_role_too_low_is_refused_everything(team: Team, role: str) -> None:
    workflow = apply(team)
    client = signed_in(team, role)
    for url in (new_url(team), edit_url(team), delete_url(team)):
        assert client.get(url).status_code == 403, url
    text = changed()
    posted = {"spec": text, "action": "apply", "checked": "x", "base": "1"}
    assert client.post(edit_url(team), posted).status_code == 403
    assert client.post(new_url(team), posted).status_code == 403
    assert client.post(delete_url(team)).status_code == 403
    workflow.refresh_from_db()
    assert workflow.deleted_at is None
    assert versions() == [1]


def test_another_tenants_member_gets_404(team: Team, outsider: Team) -> None:
    workflow = apply(team)
    client = signed_in(outsider, "owner")
    for url in (new_url(team), edit_url(team), delete_url(team)):
        assert client.get(url).status_code == 404, url
        assert client.post(url, {"spec": changed(), "action": "apply"}).status_code == 404, url
    # And a name of their own tenant's does not reach another's workflow.
    assert signed_in(outsider, "owner").get(edit_url(outsider)).status_code == 404
    workflow.refresh_from_db()
    assert workflow.deleted_at is None
    assert versions() == [1]


def test_a_post_without_csrf_token_is_refused(team: Team) -> None:
    workflow = apply(team)
    # The test client posts multipart (as the editor's form does), without the token.
    client = signed_in(team, "owner", enforce_csrf_checks=True)
    assert client.post(edit_url(team), {"spec": changed(), "action": "check"}).status_code == 403
    assert client.post(new_url(team), {"spec": changed(), "action": "apply"}).status_code == 403
    assert client.post(delete_url(team)).status_code == 403
    workflow.refresh_from_db()
    assert workflow.deleted_at is None
    assert versions() == [1]
    # The forms carry the token.
    assert 'name="csrfmiddlewaretoken"' in client.get(edit_url(team)).content.decode()
    assert 'name="csrfmiddlewaretoken"' in client.get(delete_url(team)).content.decode()


# --- deleting ----------------------------------------------------------------------------


def test_the_confirmation_says_what_deleting_means(team: Team) -> None:
    apply(team)
    response = signed_in(team).get(delete_url(team))
    assert response.status_code == 200
    text = text_of(response)
    assert "runs, logs and audit history are kept" in text
    assert "Its name is free" in text
    assert "cannot be deleted now" not in text


def test_delete_is_guarded_by_an_active_run_then_works(team: Team) -> None:
    workflow = apply(team)
    run = active_run(workflow)
    client = signed_in(team)
    assert "It cannot be deleted now: 1 run is active" in text_of(client.get(delete_url(team)))
    refused = client.post(delete_url(team))
    assert refused.status_code == 409
    assert "workflow 'etl' cannot be deleted: 1 run is active" in text_of(refused)
    workflow.refresh_from_db()
    assert workflow.deleted_at is None
    assert audit_events("workflow.delete") == []

    WorkflowRun.objects.dangerously_unscoped().filter(pk=run.pk).update(state="success")
    response = client.post(delete_url(team))
    assert response.status_code == 302
    assert response["Location"] == f"/t/{team.slug}/workflows/"
    workflow.refresh_from_db()
    assert workflow.deleted_at is not None
    (event,) = audit_events("workflow.delete")
    assert event.source == "portal"
    assert event.actor_id == team.users["editor"].pk
    listing = text_of(client.get(response["Location"]))
    assert "Workflow etl deleted." in listing
    assert client.get(edit_url(team)).status_code == 404  # gone from the editor too
