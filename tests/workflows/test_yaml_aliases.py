"""YAML aliases expand a spec at most to the tenant's max_spec_bytes: a few hundred bytes
of nested anchors ("billion laughs") are refused with a 400 naming the limit, over REST and
GraphQL, and nothing is stored. Aliases within the limit work as before."""

from __future__ import annotations

import time

import pytest

from tests.harness import Team, api, assert_problem, gql, gql_error
from workflows.models import Workflow, WorkflowVersion

WORKFLOWS = "/api/v1/tenants/{tenant}/workflows/"
APPLY = "mutation($t: String!, $s: String!) { applyWorkflow(tenant: $t, spec: $s) { changed } }"


def laughs(levels: int = 6) -> str:
    """A valid-looking spec whose param defaults nest anchors: 9**levels "lol"s."""
    lines = [
        "name: laughs",
        "tasks:",
        "  t: {type: noop}",
        "params:",
        "  l0: {type: array, default: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]}",
    ]
    for i in range(1, levels + 1):
        aliases = ", ".join([f"*l{i - 1}"] * 9)
        lines.append(f"  l{i}: {{type: array, default: &l{i} [{aliases}]}}")
    return "\n".join(lines) + "\n"


def post_yaml(team: Team, text: str) -> object:
    return api(team.tokens["editor"]).post(
        WORKFLOWS.format(tenant=team.slug), text, content_type="application/yaml"
    )


def nothing_stored() -> bool:
    return not Workflow.objects.dangerously_unscoped().exists() and (
        not WorkflowVersion.objects.dangerously_unscoped().exists()
    )


def test_a_billion_laughs_is_refused_over_rest_naming_the_limit(team: Team) -> None:
    text = laughs()
    assert len(text) < 1000  # a few hundred bytes that would expand to megabytes
    started = time.monotonic()
    response = post_yaml(team, text)
    assert time.monotonic() - started < 2
    body = assert_problem(response, 400)  # type: ignore[arg-type]
    assert "aliases" in body["detail"]
    assert "262144 bytes" in body["detail"]  # the tenant's max_spec_bytes
    assert nothing_stored()


def test_a_billion_laughs_is_refused_over_graphql(team: Team) -> None:
    response = gql(team.tokens["editor"], APPLY, {"t": team.slug, "s": laughs()})
    error = gql_error(response)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "262144 bytes" in error["message"]
    assert nothing_stored()


def test_the_limit_is_the_tenants_own_max_spec_bytes(team: Team) -> None:
    team.tenant.quotas = {**team.tenant.quotas, "max_spec_bytes": 2000}
    team.tenant.save(update_fields=["quotas"])
    body = assert_problem(post_yaml(team, laughs(levels=2)), 400)  # type: ignore[arg-type]
    assert "2000 bytes" in body["detail"]
    assert nothing_stored()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: loop\ntasks: &t {t: {type: noop}, more: *t}\n", "refers to a node that contains"),
        ("name: deep\ntasks:\n" + "  " + "- " * 100_000 + "x\n", "deeper than 64 levels"),
        ("[" * 100_000, "deeper than 64 levels"),
    ],
    ids=["recursive alias", "100k nested block sequences", "100k nested flow brackets"],
)
def test_recursive_or_deep_yaml_is_refused_fast(team: Team, text: str, message: str) -> None:
    started = time.monotonic()
    body = assert_problem(post_yaml(team, text), 400)  # type: ignore[arg-type]
    assert time.monotonic() - started < 2
    assert message in body["detail"]
    assert nothing_stored()


def test_aliases_within_the_limit_are_expanded_and_stored(team: Team) -> None:
    text = (
        "name: shared\n"
        "tasks:\n"
        "  a: &task {type: shell, command: [echo, hi], retries: 2}\n"
        "  b:\n"
        "    <<: *task\n"
        "    depends_on: [a]\n"
    )
    response = post_yaml(team, text)
    assert response.status_code == 201, response.content  # type: ignore[attr-defined]
    version = WorkflowVersion.objects.dangerously_unscoped().get(workflow__name="shared")
    assert version.spec["tasks"]["b"]["retries"] == 2
    assert version.spec["tasks"]["b"]["command"] == ["echo", "hi"]
