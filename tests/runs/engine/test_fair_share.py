"""Fair share between tenants: a tenant never has more in flight than its cap, the rest
waits `scheduled` with the reason, and the planner divides a busy queue's budget between
tenants by their share. In-process on PostgreSQL, with a worker's capacity reported as a
heartbeat would report it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.cache import cache

from orchestrator import metrics
from orchestrator import services as platform
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs import operations
from runs.engine import fairshare
from runs.models import TaskInstance
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine
from workflows.services import apply_workflow

UNIT = fairshare.SLOT_UNITS


def test_water_fill_divides_by_share_and_leaves_what_a_small_tenant_does_not_need() -> None:
    assert fairshare.water_fill(200, {1: 1500, 2: 1500}, {1: 1, 2: 1}) == {1: 100, 2: 100}
    assert fairshare.water_fill(200, {1: 1500, 2: 50}, {1: 1, 2: 1}) == {1: 150, 2: 100}
    assert fairshare.water_fill(300, {1: 1500, 2: 1500}, {1: 2, 2: 1}) == {1: 200, 2: 100}
    assert fairshare.water_fill(10, {1: 1000, 2: 1000, 3: 0}, {1: 1, 2: 1, 3: 1}) == {
        1: 5,
        2: 5,
    }


@pytest.fixture
def capacity(transactional_db: None, settings: Any) -> Iterator[None]:
    """Two worker slots on the shared queue: a budget of 4 slots' worth of units."""
    settings.TASK_CONTINUE_SECONDS = 0
    keys = [fairshare.CAPS_KEY, fairshare.WAITING_KEY, fairshare.PLANNED_KEY]
    cache.delete_many(keys)
    metrics.reset()
    metrics.heartbeat("w1@test", slots=2, queues=[django_settings.CELERY_TASK_DEFAULT_QUEUE])
    fairshare.look_again()
    yield
    cache.delete_many(keys)
    metrics.reset()
    fairshare.look_again()


class Tenant:
    def __init__(self, slug: str, engine: Engine | None = None) -> None:
        self.user = User.objects.create_user(f"owner-{slug}")
        self.tenant = platform.create_tenant(
            actor=Actor.cli(),
            slug=slug,
            name=slug,
            owner=self.user,
            quotas={"max_tasks_per_workflow": 2000, "max_concurrent_runs": 500},
        )
        self.actor = Actor(user=self.user, source="api")

    def trigger(self, spec: dict[str, Any]) -> Any:
        with tenant_scope([self.tenant]):
            workflow = apply_workflow(actor=self.actor, tenant=self.tenant, data=spec).workflow
            return trigger_run(actor=self.actor, workflow=workflow).run

    def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with tenant_scope([self.tenant]):
            for state in TaskInstance.objects.values_list("state", flat=True):
                counts[state] = counts.get(state, 0) + 1
        return counts


def fan(name: str, width: int, kind: str = "shell") -> dict[str, Any]:
    task = {"type": "shell", "command": ["true"]} if kind == "shell" else {"type": "noop"}
    return {
        "name": name,
        "max_active_tasks": 1000,
        "tasks": {f"t{i}": dict(task) for i in range(width)},
    }


def chain(name: str, length: int) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    for i in range(length):
        tasks[f"s{i}"] = {"type": "shell", "command": ["true"]}
        if i:
            tasks[f"s{i}"]["depends_on"] = [f"s{i - 1}"]
    return {"name": name, "tasks": tasks}


def test_a_tenant_alone_has_at_most_the_budget_in_flight(capacity: None) -> None:
    a = Tenant("a")
    a.trigger(fan("flood", 30))
    assert a.states() == {"queued": 4, "scheduled": 26}
    with tenant_scope([a.tenant]):
        reasons = set(
            TaskInstance.objects.filter(state="scheduled").values_list("wait_reason", flat=True)
        )
    assert reasons == {fairshare.WAIT_REASON}


def test_tries_that_take_no_time_cost_a_unit_each(capacity: None) -> None:
    a = Tenant("a")
    a.trigger(fan("noops", 300, kind="noop"))
    assert a.states() == {"queued": 4 * UNIT, "scheduled": 300 - 4 * UNIT}


def test_another_tenant_gets_in_at_once_and_the_plan_divides_the_budget(capacity: None) -> None:
    a, b = Tenant("a"), Tenant("b")
    a.trigger(fan("flood", 30))
    b.trigger(chain("chain", 3))
    assert b.states() == {"queued": 1, "pending": 2}
    fairshare.plan()
    caps = cache.get(fairshare.CAPS_KEY)["caps"]
    # B wants one slot of its two; A gets the other three.
    assert caps == {str(a.tenant.pk): 3 * UNIT, str(b.tenant.pk): 2 * UNIT}


def test_a_share_in_the_policy_weighs_the_division(capacity: None) -> None:
    a, b = Tenant("a"), Tenant("b")
    type(a.tenant).objects.filter(pk=a.tenant.pk).update(policy={"share": 3})
    a.trigger(fan("flood", 30))
    b.trigger(fan("flood", 30))
    fairshare.plan()
    caps = cache.get(fairshare.CAPS_KEY)["caps"]
    assert caps == {str(a.tenant.pk): 3 * UNIT, str(b.tenant.pk): 1 * UNIT}


def test_ends_make_room_that_the_tenants_other_runs_fill(capacity: None) -> None:
    a = Tenant("a")
    first = a.trigger(fan("one", 4))
    second = a.trigger(fan("two", 4))
    with tenant_scope([a.tenant]):
        assert set(TaskInstance.objects.filter(run=first).values_list("state", flat=True)) == {
            "queued"
        }
        assert set(TaskInstance.objects.filter(run=second).values_list("state", flat=True)) == {
            "scheduled"
        }
    operations.cancel(first.pk)
    fairshare.look_again()
    fairshare.fill(a.tenant.pk)
    with tenant_scope([a.tenant]):
        assert set(TaskInstance.objects.filter(run=second).values_list("state", flat=True)) == {
            "queued"
        }


def test_the_plan_finds_held_tries_whose_waiting_mark_was_lost(capacity: None) -> None:
    a = Tenant("a")
    first = a.trigger(fan("one", 4))
    second = a.trigger(fan("two", 4))
    cache.delete(fairshare.WAITING_KEY)  # the mark is gone (flushed, or raced away)
    fairshare.look_again()
    with tenant_scope([a.tenant]):
        TaskInstance.objects.filter(run=first).update(state="success")  # ended, unnoticed
    assert fairshare.plan() == 4  # found in the database, not in the cache
    with tenant_scope([a.tenant]):
        assert set(TaskInstance.objects.filter(run=second).values_list("state", flat=True)) == {
            "queued"
        }


def test_an_idle_tenants_first_tries_go_to_the_front_of_the_queue(
    capacity: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runs.engine import holding

    front: list[list[tuple[int, int]]] = []
    monkeypatch.setattr(holding, "send_first", lambda tries, queue: front.append(tries))
    a, b = Tenant("a"), Tenant("b")
    a.trigger(fan("flood", 30))  # 30 tries: too many to jump the queue
    assert front == []
    b.trigger(chain("chain", 3))  # B has nothing in flight: its first try jumps
    assert [len(tries) for tries in front] == [1]
    b.trigger(chain("again", 3))  # B has a try in flight now: in line like anyone
    assert [len(tries) for tries in front] == [1]
