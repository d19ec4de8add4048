"""The scenarios of issue 26 (devtools/bench/scale.py) run at a tiny size on real worker
processes: each gets its runs through and reports figures read back from the database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from devtools.bench.scale import FLOOD_TENANT, Scale, scale_figures
from devtools.bench.scenarios import Engine
from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs.models import TaskInstance, WorkflowRun
from tests.workers import Workers, publishing_to

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workers(django_db_setup: None, django_db_blocker: Any) -> Iterator[Workers]:
    with django_db_blocker.unblock():
        pool = Workers(count=2, concurrency=1, beat=False)
        pool.start()
    try:
        with publishing_to(pool):
            yield pool
    finally:
        pool.stop()


@pytest.fixture
def scale(transactional_db: None, workers: Workers) -> Scale:
    user = get_user_model().objects.create(username="bench-owner")
    tenant = services.create_tenant(actor=Actor.cli(), slug="bench", name="Bench", owner=user)
    engine = Engine(tenant, Actor(user=user, source="api"), "http://127.0.0.1:1/api", "", [])
    return Scale(engine)


def test_it_runs_a_chain_of_shell_tasks(scale: Scale) -> None:
    figures = scale.chain_shell(3)
    assert 0 < figures["wall_s"] < 60
    assert 0 < figures["task_ms"] < figures["wall_s"] * 1000
    with tenant_scope([scale.engine.tenant]):
        tis = TaskInstance.objects.filter(run__workflow__name="bench-chain-3-shell")
        assert sorted(tis.values_list("task_type", "state")) == [("shell", "success")] * 3


def test_it_fans_out_past_the_tenants_task_quota(scale: Scale) -> None:
    """The fan-out raises the bench tenant's own quota to hold root, leaves and join."""
    scale.engine.tenant.quotas = {**scale.engine.tenant.quotas, "max_tasks_per_workflow": 5}
    Tenant.objects.filter(pk=scale.engine.tenant.pk).update(quotas=scale.engine.tenant.quotas)
    figures = scale.fanout(12)
    assert figures["tasks_per_s"] == pytest.approx(14 / figures["wall_s"])
    assert 0 <= figures["queued_p50_ms"] <= figures["queued_p99_ms"] < 60_000
    with tenant_scope([scale.engine.tenant]):
        assert TaskInstance.objects.filter(state="success").count() == 14


def test_it_runs_concurrent_runs_of_a_dag(scale: Scale) -> None:
    figures = scale.concurrent(runs=3, levels=2, width=3)
    assert figures["tasks_per_s"] == pytest.approx(18 / figures["wall_s"])
    assert 0 <= figures["queued_p50_ms"] <= figures["queued_p99_ms"] < 60_000
    with tenant_scope([scale.engine.tenant]):
        runs = WorkflowRun.objects.filter(workflow__name="bench-dag-2x3")
        assert sorted(runs.values_list("state", flat=True)) == ["success"] * 3
        join = TaskInstance.objects.filter(run__in=runs, task_id="l01t00").first()
        assert join is not None
        assert join.state == "success"


def test_fair_share_measures_a_chain_idle_and_flooded_by_another_tenant(scale: Scale) -> None:
    figures = scale.fair_share(flood_runs=2, flood_width=10, chain=3)
    assert figures["ratio"] == pytest.approx(figures["flooded_wall_s"] / figures["idle_wall_s"])
    assert figures["flood_drain_s"] > 0
    flood = Tenant.objects.get(slug=FLOOD_TENANT)
    with tenant_scope([flood]):
        runs = WorkflowRun.objects.filter(tenant=flood)
        assert sorted(runs.values_list("state", flat=True)) == ["success"] * 2
        assert TaskInstance.objects.filter(tenant=flood, state="success").count() == 20
    values = {f"fair-share.{key}": [value] for key, value in figures.items()}
    shown = {figure.name: figure for figure in scale_figures(values)}
    assert shown["fair-share: B flooded / B idle"].target == 2.0
