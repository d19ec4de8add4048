"""The lineage REST endpoints: every member reads them (`lineage.view`), another tenant's
workflows, runs and unshared datasets are 404, lists are cursor pages, and a dataset's
name, `/` and `:` included, travels in the query."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from tests.events.lineage_support import REPORT_FILE, apply, apply_chain, record_update, share
from tests.harness import EndpointCase, EndpointSuite, Team, assert_problem, send
from tests.runs.run_states import started_run

BASE = "/api/v1/tenants/{tenant}"


def chain(team: Team) -> dict[str, str]:
    apply_chain(team)
    return {"name": "warehouse.orders"}


def workflow(team: Team) -> dict[str, str]:
    apply_chain(team)
    return {"workflow": "report"}


def run(team: Team) -> dict[str, str]:
    return {"run_id": str(started_run(team).pk)}


class TestLineageEndpoints(EndpointSuite):
    cases = [
        EndpointCase("datasets", "GET", BASE + "/datasets/", "viewer"),
        EndpointCase(
            "dataset", "GET", BASE + "/datasets/by-name/?name={name}", "viewer", setup=chain
        ),
        EndpointCase(
            "updates", "GET", BASE + "/dataset-updates/?dataset={name}", "viewer", setup=chain
        ),
        EndpointCase("graph", "GET", BASE + "/lineage/?dataset={name}", "viewer", setup=chain),
        EndpointCase(
            "workflow", "GET", BASE + "/workflows/{workflow}/lineage/", "viewer", setup=workflow
        ),
        EndpointCase("run", "GET", BASE + "/runs/{run_id}/lineage/", "viewer", setup=run),
    ]


def get(team: Team, path: str, **query: Any) -> Any:
    url = f"/api/v1/tenants/{team.slug}/{path}"
    token = team.tokens.get("viewer", team.tokens["owner"])
    response = send(token, "GET", f"{url}?{urlencode(query)}" if query else url)
    return response


def ok(team: Team, path: str, **query: Any) -> Any:
    response = get(team, path, **query)
    assert response.status_code == 200, response.content
    return response.json()


def test_it_answers_the_graph_around_a_dataset(team: Team) -> None:
    apply_chain(team)
    body = ok(team, "lineage/", dataset="warehouse.orders", depth=1, direction="upstream")
    assert body["dataset"] == {
        "id": "dataset:acme:warehouse.orders",
        "kind": "dataset",
        "tenant": "acme",
        "name": "warehouse.orders",
    }
    assert [n["id"] for n in body["nodes"]] == [
        "dataset:acme:warehouse.orders",
        "dataset:acme:raw.orders",
        "workflow:acme:clean",
    ]
    assert body["edges"] == [
        {
            "from": "dataset:acme:raw.orders",
            "to": "workflow:acme:clean",
            "role": "inlet",
            "task_id": "tidy",
        },
        {
            "from": "dataset:acme:raw.orders",
            "to": "workflow:acme:clean",
            "role": "schedule",
            "task_id": None,
        },
        {
            "from": "workflow:acme:clean",
            "to": "dataset:acme:warehouse.orders",
            "role": "outlet",
            "task_id": "tidy",
        },
    ]
    assert (body["depth"], body["direction"], body["updates"]) == (1, "upstream", [])


def test_it_takes_a_name_with_slashes_and_colons_in_the_query(team: Team) -> None:
    apply_chain(team)
    update = record_update(team, REPORT_FILE, task_id="build", metadata={"pages": 3})
    detail = ok(team, "datasets/by-name/", name=REPORT_FILE)
    assert (detail["name"], detail["producers"]) == (
        REPORT_FILE,
        [{"workflow": "report", "task_id": "build", "role": "outlet"}],
    )
    assert detail["updates"][0]["id"] == update.pk
    assert detail["updates"][0]["metadata"] == {"pages": 3}
    graph = ok(team, "lineage/", dataset=REPORT_FILE)
    assert graph["dataset"]["id"] == f"dataset:acme:{REPORT_FILE}"
    [listed] = ok(team, "dataset-updates/", dataset=REPORT_FILE)["results"]
    assert listed["id"] == update.pk


def test_it_lists_datasets_in_cursor_pages(team: Team) -> None:
    workflows = apply_chain(team)
    record_update(team, "raw.orders", workflow=workflows["extract"], task_id="pull")
    record_update(team, "zz.never.named")
    first = ok(team, "datasets/", limit=2)
    assert [d["name"] for d in first["results"]] == ["raw.orders", REPORT_FILE]
    assert first["results"][0]["producers"] == 1
    assert first["results"][0]["consumers"] == 1  # clean, by its inlet and its schedule
    assert first["results"][0]["last_updated_at"] is not None
    second = send(team.tokens["viewer"], "GET", first["next"]).json()
    assert [d["name"] for d in second["results"]] == ["warehouse.orders", "zz.never.named"]
    assert second["next"] is None
    assert second["results"][1] == {
        "tenant": "acme",
        "name": "zz.never.named",
        "last_updated_at": second["results"][1]["last_updated_at"],
        "producers": 0,
        "consumers": 0,
    }


def test_it_lists_updates_in_cursor_pages_newest_first(team: Team) -> None:
    workflows = apply_chain(team)
    ids = [
        record_update(team, "raw.orders", workflow=workflows["extract"], task_id="pull").pk
        for _ in range(3)
    ]
    other = record_update(team, "warehouse.orders").pk
    first = ok(team, "dataset-updates/", dataset="raw.orders", limit=2)
    assert [u["id"] for u in first["results"]] == [ids[2], ids[1]]
    assert first["results"][0]["workflow"] == "extract"
    second = send(team.tokens["viewer"], "GET", first["next"]).json()
    assert [u["id"] for u in second["results"]] == [ids[0]]
    every = ok(team, "dataset-updates/")
    assert [u["id"] for u in every["results"]] == [other, *reversed(ids)]


def test_it_answers_a_workflows_and_a_runs_lineage(team: Team) -> None:
    apply_chain(team)
    body = ok(team, "workflows/clean/lineage/")
    assert body == {
        "workflow": "clean",
        "reads": [
            {
                "task_id": None,
                "role": "schedule",
                "tenant": "acme",
                "dataset": "raw.orders",
                "visible": True,
            },
            {
                "task_id": "tidy",
                "role": "inlet",
                "tenant": "acme",
                "dataset": "raw.orders",
                "visible": True,
            },
        ],
        "writes": [
            {
                "task_id": "tidy",
                "role": "outlet",
                "tenant": "acme",
                "dataset": "warehouse.orders",
                "visible": True,
            }
        ],
    }
    plain = started_run(team)
    assert ok(team, f"runs/{plain.pk}/lineage/") == {"run_id": plain.pk, "read": [], "produced": []}


def test_it_hides_another_tenants_dataset_until_shared(team: Team, outsider: Team) -> None:
    apply_chain(team)
    apply(
        outsider,
        {
            "name": "mirror",
            "tasks": {
                "copy": {"type": "noop", "inlets": [{"tenant": "acme", "name": "warehouse.orders"}]}
            },
        },
    )
    asked = [
        ("datasets/by-name/", {"name": "warehouse.orders", "owner": "acme"}),
        ("lineage/", {"dataset": "warehouse.orders", "owner": "acme"}),
        ("dataset-updates/", {"dataset": "warehouse.orders", "owner": "acme"}),
    ]
    for path, query in asked:
        assert_problem(get(outsider, path, **query), 404)
    share(team, outsider, "raw.orders")
    assert_problem(get(outsider, *asked[0][:1], **asked[0][1]), 404)
    share(team, outsider, "warehouse.orders")
    for path, query in asked:
        ok(outsider, path, **query)
    body = ok(outsider, "lineage/", dataset="warehouse.orders", owner="acme")
    assert [n["id"] for n in body["nodes"]] == [
        "dataset:acme:warehouse.orders",
        "workflow:globex:mirror",
    ]
    detail = ok(team, "datasets/by-name/", name="warehouse.orders")
    assert detail["external_consumers"] == [{"tenant": "globex", "workflows": 1}]


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("lineage/", {}, "dataset"),
        ("lineage/", {"dataset": "warehouse.orders", "depth": "9"}, "depth"),
        ("lineage/", {"dataset": "warehouse.orders", "depth": "x"}, "depth"),
        ("lineage/", {"dataset": "warehouse.orders", "direction": "up"}, "direction"),
        ("datasets/by-name/", {}, "name"),
        ("datasets/", {"cursor": "not-a-cursor"}, "cursor"),
        ("datasets/", {"limit": "0"}, "limit"),
        ("dataset-updates/", {"owner": "acme"}, "dataset"),
    ],
)
def test_it_refuses_bad_parameters_naming_them(
    team: Team, path: str, query: dict[str, str], field: str
) -> None:
    apply_chain(team)
    assert_problem(get(team, path, **query), 400, path=field)


def test_it_answers_404_for_a_missing_dataset_workflow_or_run(team: Team) -> None:
    apply_chain(team)
    assert_problem(get(team, "datasets/by-name/", name="nowhere"), 404)
    assert_problem(get(team, "datasets/by-name/", name="no\x00such name"), 404)  # no query
    assert_problem(get(team, "lineage/", dataset="nowhere"), 404)
    assert_problem(get(team, "dataset-updates/", dataset="nowhere"), 404)
    assert_problem(get(team, "workflows/nowhere/lineage/"), 404)
    assert_problem(get(team, "runs/999999/lineage/"), 404)
