"""A python task naming a function outside the platform's allow-list (PYTHON_TASK_MODULES)
is refused when the workflow is applied (REST create and update, GraphQL, `manage.py apply`
and `validate`), with the path of the callable and the modules that would be accepted;
the worker refuses it by the same rule if the setting changed after the apply."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import LazySettings
from django.core.management import CommandError, call_command

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid
from tests.harness import Team, assert_problem, gql, gql_error, send, tenant_state
from workflows import services
from workflows.models import Workflow
from workflows.python_modules import callable_refusal

PATH = "tasks.load.callable"


def spec(target: str, name: str = "loader") -> dict[str, Any]:
    return {"name": name, "tasks": {"load": {"type": "python", "callable": target}}}


def spec_yaml(target: str, name: str = "loader") -> str:
    return f"name: {name}\ntasks:\n  load: {{type: python, callable: '{target}'}}\n"


def workflows_url(team: Team) -> str:
    return f"/api/v1/tenants/{team.slug}/workflows/"


def names(team: Team) -> set[str]:
    rows = Workflow.objects.dangerously_unscoped().filter(tenant=team.tenant, deleted_at=None)
    return set(rows.values_list("name", flat=True))


def message_at(body: dict[str, Any], path: str) -> str:
    return next(e["message"] for e in body["errors"] if e["path"] == path)


@pytest.mark.django_db
@pytest.mark.parametrize("target", ["os:system", "subprocess:run", "runs.libraryx:echo"])
def test_rest_create_refuses_a_callable_outside_the_allow_list(team: Team, target: str) -> None:
    before = tenant_state(team.tenant)

    response = send(team.tokens["editor"], "POST", workflows_url(team), spec(target))

    body = assert_problem(response, 400, path=PATH)
    message = message_at(body, PATH)
    assert repr(target.partition(":")[0]) in message
    assert "runs.library" in message
    assert "PYTHON_TASK_MODULES" in message
    assert tenant_state(team.tenant) == before


@pytest.mark.django_db
def test_rest_update_refuses_it_and_keeps_the_current_version(team: Team) -> None:
    created = send(team.tokens["editor"], "POST", workflows_url(team), spec("runs.library:echo"))
    assert created.status_code == 201, created.content

    response = send(
        team.tokens["editor"], "PUT", f"{workflows_url(team)}loader/", spec("os:system")
    )

    assert_problem(response, 400, path=PATH)
    workflow = Workflow.objects.dangerously_unscoped().get(tenant=team.tenant, name="loader")
    assert workflow.current_version is not None
    assert workflow.current_version.number == 1
    assert workflow.current_version.spec["tasks"]["load"]["callable"] == "runs.library:echo"


@pytest.mark.django_db
def test_it_accepts_the_allowed_modules_and_their_submodules(
    team: Team, settings: LazySettings
) -> None:
    settings.PYTHON_TASK_MODULES = ["runs.library", "reports"]
    for name, target in [("a", "runs.library:echo"), ("b", "reports.daily:build")]:
        response = send(team.tokens["editor"], "POST", workflows_url(team), spec(target, name))
        assert response.status_code == 201, response.content
    assert names(team) == {"a", "b"}


APPLY = """mutation($t: String!, $s: String!) {
  applyWorkflow(tenant: $t, spec: $s) { created }
}"""


@pytest.mark.django_db
def test_graphql_refuses_it_with_the_path(team: Team) -> None:
    response = gql(team.tokens["editor"], APPLY, {"t": team.slug, "s": spec_yaml("os:system")})

    error = gql_error(response)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert [e["path"] for e in error["extensions"]["errors"]] == [PATH]
    assert names(team) == set()


@pytest.mark.django_db
def test_the_commands_refuse_it(team: Team, tmp_path: Path) -> None:
    (tmp_path / "loader.yaml").write_text(spec_yaml("os:system"))
    for args in (["validate", str(tmp_path)], ["apply", str(tmp_path), "--tenant", team.slug]):
        err = StringIO()
        with pytest.raises(CommandError):
            call_command(*args, stdout=StringIO(), stderr=err)
        assert PATH in err.getvalue()
        assert "runs.library" in err.getvalue()
    assert names(team) == set()


@pytest.mark.django_db
def test_the_service_refuses_it_for_every_caller(team: Team) -> None:
    with tenant_scope([team.tenant]), pytest.raises(Invalid) as refused:
        services.apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec("os:system"))
    assert [path for path, _ in refused.value.errors] == [PATH]


def test_the_worker_and_the_apply_share_one_rule() -> None:
    assert callable_refusal("runs.library.sub:f", ["runs.library"]) is None
    refusal = callable_refusal("os:system", ["runs.library", "reports"])
    assert refusal is not None
    assert "'os'" in refusal
    assert "runs.library, reports" in refusal
