"""Lineage over GraphQL: the same answers as REST on the same data (field names in
camelCase), the same visibility (NOT_FOUND for another tenant's workflow, run or unshared
dataset), and UNAUTHENTICATED without credentials."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest
from django.utils.dateparse import parse_datetime

from tests.events.lineage_support import REPORT_FILE, apply, apply_chain, record_update, share
from tests.harness import Team, gql, gql_error, send
from tests.runs.run_states import started_run

pytestmark = pytest.mark.django_db

UPDATE = "id tenant dataset createdAt runId workflow taskId logicalDate metadata"
NODE = "id kind tenant name"
LINEAGE = f"""query($t: String!, $d: String!, $o: String, $depth: Int!, $dir: String!) {{
  lineage(tenant: $t, dataset: $d, owner: $o, depth: $depth, direction: $dir) {{
    dataset {{ {NODE} }} depth direction nodes {{ {NODE} }}
    edges {{ from to role taskId }} updates {{ {UPDATE} }}
    externalConsumers {{ tenant workflows }}
  }}
}}"""
DATASET = f"""query($t: String!, $n: String!, $o: String) {{
  dataset(tenant: $t, name: $n, owner: $o) {{
    tenant name createdAt lastUpdatedAt
    producers {{ workflow taskId role }} consumers {{ workflow taskId role }}
    externalConsumers {{ tenant workflows }} updates {{ {UPDATE} }}
  }}
}}"""
DATASETS = """query($t: String!, $l: Int!, $c: String) {
  datasets(tenant: $t, limit: $l, cursor: $c) {
    results { tenant name lastUpdatedAt producers consumers } next
  }
}"""
UPDATES = f"""query($t: String!, $d: String!, $b: Int, $l: Int!) {{
  datasetUpdates(tenant: $t, dataset: $d, beforeId: $b, limit: $l) {{ {UPDATE} }}
}}"""
WORKFLOW = """query($t: String!, $w: String!) {
  workflowLineage(tenant: $t, workflow: $w) {
    workflow
    reads { taskId role tenant dataset visible }
    writes { taskId role tenant dataset visible }
  }
}"""
RUN = f"""query($t: String!, $r: Int!) {{
  runLineage(tenant: $t, runId: $r) {{
    runId read {{ taskId role tenant dataset update {{ {UPDATE} }} }} produced {{ {UPDATE} }}
  }}
}}"""


def snake(value: Any) -> Any:
    """A GraphQL answer with REST's names and times: camelCase keys to snake_case, times
    parsed (the two write the same instant differently), `from`/`to` as they are."""
    if isinstance(value, dict):
        return {re.sub(r"([A-Z])", r"_\1", k).lower(): snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snake(v) for v in value]
    if isinstance(value, str) and (moment := parse_datetime(value)) is not None:
        return moment
    return value


def times(value: Any) -> Any:
    """A REST answer with its times parsed."""
    return snake(value) if isinstance(value, dict | list) else value


def query(team: Team, document: str, **variables: Any) -> Any:
    answer = gql(team.tokens["viewer"], document, {"t": team.slug, **variables}).json()
    assert "errors" not in answer, answer
    return next(iter(answer["data"].values()))


def rest(team: Team, path: str, **params: Any) -> Any:
    url = f"/api/v1/tenants/{team.slug}/{path}"
    response = send(team.tokens["viewer"], "GET", f"{url}?{urlencode(params)}" if params else url)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def chain(team: Team) -> dict[str, Any]:
    workflows = apply_chain(team)
    run = started_run(team, {"name": "loader", "tasks": {"t": {"type": "noop", "outlets": ["x"]}}})
    record_update(team, "x", run=run, task_id="t", metadata={"rows": 1})
    record_update(
        team,
        "warehouse.orders",
        workflow=workflows["clean"],
        task_id="tidy",
        metadata={"rows": 7, "schema": ["id"]},
    )
    return {"run": run}


def test_it_answers_the_graph_rest_answers(team: Team, chain: dict[str, Any]) -> None:
    for depth, direction in [(1, "both"), (2, "upstream"), (5, "downstream")]:
        got = query(team, LINEAGE, d="warehouse.orders", depth=depth, dir=direction)
        expected = rest(
            team, "lineage/", dataset="warehouse.orders", depth=depth, direction=direction
        )
        assert snake(got) == times(expected)
    assert got["edges"][0].keys() == {"from", "to", "role", "taskId"}


def test_it_answers_datasets_and_updates_as_rest(team: Team, chain: dict[str, Any]) -> None:
    for name in ("warehouse.orders", REPORT_FILE):
        assert snake(query(team, DATASET, n=name)) == times(
            rest(team, "datasets/by-name/", name=name)
        )
    first = query(team, DATASETS, l=2)
    assert snake(first["results"]) == times(rest(team, "datasets/", limit=2)["results"])
    second = query(team, DATASETS, l=2, c=first["next"])
    assert [d["name"] for d in second["results"]] == ["warehouse.orders", "x"]
    assert second["next"] is None
    updates = query(team, UPDATES, d="warehouse.orders", l=50)
    assert snake(updates) == times(
        rest(team, "dataset-updates/", dataset="warehouse.orders")["results"]
    )
    assert query(team, UPDATES, d="warehouse.orders", b=updates[0]["id"], l=50) == []


def test_it_answers_a_workflow_and_a_run_as_rest(team: Team, chain: dict[str, Any]) -> None:
    assert snake(query(team, WORKFLOW, w="report")) == rest(team, "workflows/report/lineage/")
    run = chain["run"]
    got = query(team, RUN, r=run.pk)
    assert snake(got) == times(rest(team, f"runs/{run.pk}/lineage/"))
    assert [u["dataset"] for u in got["produced"]] == ["x"]


def test_it_hides_another_tenants_objects_until_shared(
    team: Team, outsider: Team, chain: dict[str, Any]
) -> None:
    apply(outsider, {"name": "own", "tasks": {"t": {"type": "noop", "outlets": ["mine"]}}})
    own = outsider.tokens["owner"]
    asked: list[tuple[str, dict[str, Any]]] = [
        (LINEAGE, {"d": "warehouse.orders", "depth": 1, "dir": "both"}),
        (DATASET, {"n": "warehouse.orders"}),
        (WORKFLOW, {"w": "report"}),
        (RUN, {"r": chain["run"].pk}),
    ]
    for document, variables in asked:
        # globex's token on acme's tenant, and acme's objects asked for under globex
        for tenant in (team.slug, outsider.slug):
            answer = gql(own, document, {"t": tenant, **variables})
            assert gql_error(answer)["extensions"]["code"] == "NOT_FOUND", answer.json()
            assert next(iter(answer.json()["data"].values())) is None
    shared = {"t": outsider.slug, "d": "warehouse.orders", "o": "acme", "depth": 1, "dir": "both"}
    assert gql_error(gql(own, LINEAGE, shared))["extensions"]["code"] == "NOT_FOUND"
    share(team, outsider, "warehouse.orders")
    answer = gql(own, LINEAGE, shared).json()
    assert answer["data"]["lineage"]["dataset"]["tenant"] == "acme"
    assert [n["tenant"] for n in answer["data"]["lineage"]["nodes"]] == ["acme"]


def test_it_refuses_bad_input_and_the_unauthenticated(team: Team, chain: dict[str, Any]) -> None:
    bad = gql(
        team.tokens["viewer"],
        LINEAGE,
        {"t": team.slug, "d": "warehouse.orders", "depth": 9, "dir": "up"},
    )
    error = gql_error(bad)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert [e["path"] for e in error["extensions"]["errors"]] == ["depth", "direction"]
    cursor = gql(team.tokens["viewer"], DATASETS, {"t": team.slug, "l": 2, "c": "%%"})
    assert gql_error(cursor)["extensions"]["code"] == "BAD_USER_INPUT"
    anonymous = gql(None, DATASET, {"t": team.slug, "n": "warehouse.orders"})
    assert gql_error(anonymous)["extensions"]["code"] == "UNAUTHENTICATED"
