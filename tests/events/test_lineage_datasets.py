"""The tenant's datasets (events.lineage.datasets_of): updated ones and those only named by
its workflows, and the shared datasets of other tenants its workflows name, by name then
owner (by code point, whatever the database's collation), paged without a gap or a
repeat, each with its last update and its producers and consumers."""

from __future__ import annotations

import pytest

from events.lineage import DatasetKey, DatasetSummary, datasets_of
from orchestrator.context import tenant_scope
from tests.events.lineage_support import apply, record_update, share
from tests.harness import Team

pytestmark = pytest.mark.django_db

NAMES = ["B", "a-b", "a.c", "a_b", "ab", "s3://bucket/x", "s3://bucket/x/y"]


def every_page(team: Team, limit: int) -> list[DatasetSummary]:
    found: list[DatasetSummary] = []
    after: DatasetKey | None = None
    with tenant_scope([team.tenant]):
        while True:
            page = datasets_of(team.tenant, after=after, limit=limit)
            found += page.results
            if page.next_after is None:
                return found
            after = page.next_after


def test_it_pages_both_sources_in_code_point_order(team: Team, outsider: Team) -> None:
    for name in NAMES[::2]:
        record_update(team, name)  # updated, named by no workflow
    apply(team, {"name": "w", "tasks": {"t": {"type": "noop", "outlets": NAMES[1::2]}}})
    apply(
        team,
        {
            "name": "r",
            "tasks": {"t": {"type": "noop", "inlets": ["ab", {"tenant": "globex", "name": "ab"}]}},
        },
    )
    share(outsider, team, "ab")
    expected = sorted([("acme", n) for n in NAMES] + [("globex", "ab")], key=lambda k: k[::-1])
    for limit in (1, 2, 3, 50):
        assert [(d.tenant, d.name) for d in every_page(team, limit)] == expected, limit


def test_it_counts_producers_and_consumers_and_tells_the_last_update(team: Team) -> None:
    apply(team, {"name": "w1", "tasks": {"t": {"type": "noop", "outlets": ["d"]}}})
    apply(team, {"name": "w2", "tasks": {"t": {"type": "noop", "outlets": ["d"]}}})
    apply(
        team,
        {
            "name": "r",
            "schedule": {"datasets": ["d"]},
            "tasks": {
                "a": {"type": "noop", "inlets": ["d"]},
                "b": {"type": "wait_for", "kind": "dataset", "dataset": "d"},
            },
        },
    )
    record_update(team, "d")
    last = record_update(team, "d")
    [found] = every_page(team, 50)
    assert found == DatasetSummary("acme", "d", last.created_at, producers=2, consumers=1)


def test_it_lists_no_dataset_of_another_tenant(team: Team, outsider: Team) -> None:
    record_update(outsider, "secret")
    apply(outsider, {"name": "w", "tasks": {"t": {"type": "noop", "outlets": ["named"]}}})
    assert every_page(team, 50) == []
