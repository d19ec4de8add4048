"""The usage selector: each pool's slots in use (the pool_slots of its queued and running
instances), running, queued and waiting counts, read in one query however many pools and
instances there are, and only from the pool's own tenant."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator.context import tenant_scope
from runs.pools import get_pool, pools_with_usage, usage
from tests.harness import Team
from tests.runs.pools.pool_states import a_pool, busy_run, name_pool
from tests.runs.run_states import started_run


def test_one_query_reads_every_pool_and_its_usage(team: Team, outsider: Team) -> None:
    for index in range(6):
        a_pool(team, name=f"pool-{index}", slots=index)
        busy_run(team, pool=f"pool-{index}")
    a_pool(outsider, name="pool-0", slots=3)
    busy_run(outsider, pool="pool-0")
    with tenant_scope([team.tenant]), CaptureQueriesContext(connection) as queries:
        found = {pool.name: (pool.slots, usage(pool)) for pool in pools_with_usage(team.tenant)}
    assert len(queries) == 1
    assert list(found) == [f"pool-{i}" for i in range(6)]  # by name
    for index in range(6):
        slots, numbers = found[f"pool-{index}"]
        assert slots == index
        assert tuple(numbers) == (3, 1, 1, 1)


def test_instances_leave_the_count_when_their_try_ends(team: Team) -> None:
    a_pool(team)
    run = busy_run(team)
    with tenant_scope([team.tenant]):
        assert tuple(usage(get_pool(team.tenant, "warehouse"))) == (3, 1, 1, 1)
        name_pool(run, "extract", "warehouse", "up_for_retry", slots=2)  # gives its slots back
        name_pool(run, "side", "warehouse", "cancelled")
        assert tuple(usage(get_pool(team.tenant, "warehouse"))) == (0, 0, 0, 1)
        name_pool(run, "transform", "warehouse", "running", slots=3)
        assert tuple(usage(get_pool(team.tenant, "warehouse"))) == (3, 1, 0, 0)


def test_a_pool_without_instances_counts_zero(team: Team) -> None:
    a_pool(team, name="idle")
    other = started_run(team)
    name_pool(other, "extract", "", "running")  # no pool at all
    with tenant_scope([team.tenant]):
        assert tuple(usage(get_pool(team.tenant, "idle"))) == (0, 0, 0, 0)
