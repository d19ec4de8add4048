"""Pools over GraphQL: the same roles, tenant isolation, field paths, refusals and audit
events (source "graphql") as REST, and the same usage numbers."""

from __future__ import annotations

from typing import Any

from runs.models import Pool
from tests.graphql_harness import MutationCase, MutationSuite
from tests.harness import Team, gql, gql_error, tenant_state
from tests.runs.pools.pool_states import a_pool, busy_run

FIELDS = "name slots description usedSlots running queued waiting createdAt updatedAt"
CREATE = f"""mutation($t: String!, $n: String!, $s: Int!) {{
  createPool(tenant: $t, name: $n, slots: $s, description: "loads") {{ {FIELDS} }}
}}"""
UPDATE = f"""mutation($t: String!, $n: String!, $s: Int) {{
  updatePool(tenant: $t, name: $n, slots: $s) {{ {FIELDS} }}
}}"""
DELETE = "mutation($t: String!, $n: String!) { deletePool(tenant: $t, name: $n) }"
POOLS = "query($t: String!) { pools(tenant: $t) { name slots usedSlots running queued waiting } }"
POOL = "query($t: String!, $n: String!) { pool(tenant: $t, name: $n) { name slots usedSlots } }"


def _warehouse(team: Team) -> dict[str, Any]:
    a_pool(team)
    return {"t": team.slug, "n": "warehouse"}


class TestPoolMutations(MutationSuite):
    cases = [
        MutationCase(
            "createPool", CREATE, lambda t: {"t": t.slug, "n": "warehouse", "s": 2}, "editor",
            "pool.create",
        ),
        MutationCase(
            "updatePool", UPDATE, lambda t: {**_warehouse(t), "s": 9}, "editor", "pool.update"
        ),
        MutationCase("deletePool", DELETE, _warehouse, "editor", "pool.delete"),
    ]  # fmt: skip


def test_it_creates_reads_and_changes_a_pool(team: Team) -> None:
    created = gql(team.tokens["editor"], CREATE, {"t": team.slug, "n": "warehouse", "s": 2})
    pool = created.json()["data"]["createPool"]
    assert (pool["name"], pool["slots"], pool["description"], pool["usedSlots"]) == (
        "warehouse",
        2,
        "loads",
        0,
    )
    changed = gql(team.tokens["editor"], UPDATE, {"t": team.slug, "n": "warehouse", "s": 5})
    assert changed.json()["data"]["updatePool"]["slots"] == 5
    assert changed.json()["data"]["updatePool"]["description"] == "loads"  # kept
    read = gql(team.tokens["viewer"], POOL, {"t": team.slug, "n": "warehouse"}).json()
    assert read["data"]["pool"] == {"name": "warehouse", "slots": 5, "usedSlots": 0}


def test_it_reads_the_usage_of_the_tenants_pools_only(team: Team, outsider: Team) -> None:
    a_pool(team)
    a_pool(team, name="gpu", slots=0)
    busy_run(team)
    a_pool(outsider, name="other")
    busy_run(outsider, pool="other")
    data = gql(team.tokens["viewer"], POOLS, {"t": team.slug}).json()["data"]
    assert data["pools"] == [
        {"name": "gpu", "slots": 0, "usedSlots": 0, "running": 0, "queued": 0, "waiting": 0},
        {"name": "warehouse", "slots": 4, "usedSlots": 3, "running": 1, "queued": 1, "waiting": 1},
    ]
    # Another tenant's pool is NOT_FOUND, the same as one that does not exist.
    for name in ("other", "missing"):
        response = gql(team.tokens["owner"], POOL, {"t": team.slug, "n": name})
        assert gql_error(response)["extensions"]["code"] == "NOT_FOUND"
        assert response.json()["data"] == {"pool": None}


def test_bad_input_names_the_argument(team: Team) -> None:
    before = tenant_state(team.tenant)
    for variables, path in (
        ({"t": team.slug, "n": "Bad Name", "s": 1}, "name"),
        ({"t": team.slug, "n": "warehouse", "s": -1}, "slots"),
    ):
        error = gql_error(gql(team.tokens["editor"], CREATE, variables))
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert [e["path"] for e in error["extensions"]["errors"]] == [path]
    assert tenant_state(team.tenant) == before


def test_deleting_a_pool_in_use_is_a_conflict(team: Team) -> None:
    variables = _warehouse(team)
    run = busy_run(team)
    error = gql_error(gql(team.tokens["editor"], DELETE, variables))
    assert error["extensions"]["code"] == "CONFLICT"
    assert f"etl.extract (run {run.pk}, running)" in error["message"]
    assert Pool.objects.dangerously_unscoped().filter(tenant=team.tenant).count() == 1


def test_viewers_read_but_do_not_write(team: Team) -> None:
    _warehouse(team)
    assert gql(team.tokens["viewer"], POOLS, {"t": team.slug}).json()["data"]["pools"]
    variables = {"t": team.slug, "n": "warehouse", "s": 1}
    assert gql_error(gql(team.tokens["viewer"], UPDATE, variables))["extensions"]["code"] == (
        "FORBIDDEN"
    )
