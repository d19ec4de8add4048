"""Trigger rules are deterministic: a run's final task states depend only on what each task
does when it runs, never on the order in which tasks finish. Random DAGs (random edges,
a random rule and a random outcome per task) are run in random completion orders, first
in a pure simulation of the engine, then through the engine itself on PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs.engine import claim, finish
from runs.models import TaskInstance, WorkflowRun
from runs.services import trigger_run
from runs.tasktypes.contract import Outcome
from runs.trigger_rules import Counts, evaluate
from tests.runs.engine.helpers import Engine, states
from workflows.spec import TRIGGER_RULES

OUTCOMES = ("success", "failed", "skipped")
SETTLED = {"skip": "skipped", "upstream_failed": "upstream_failed"}


@dataclass(frozen=True)
class Dag:
    """Tasks 0..n-1; each depends on some earlier ones, has a rule and an outcome (what it
    ends in if it runs)."""

    upstream: tuple[tuple[int, ...], ...]
    rules: tuple[str, ...]
    outcomes: tuple[str, ...]

    def spec(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "max_active_tasks": len(self.rules),  # every ready task may finish next
            "tasks": {
                f"t{i}": {
                    "type": "noop",
                    "retries": 0,  # a failed outcome ends the task
                    "trigger_rule": rule,
                    "depends_on": [f"t{u}" for u in ups],
                }
                for i, (ups, rule) in enumerate(zip(self.upstream, self.rules, strict=True))
            },
        }


@st.composite
def dags(draw: st.DrawFn) -> Dag:
    n = draw(st.integers(min_value=2, max_value=10))
    upstream = tuple(
        tuple(sorted(draw(st.sets(st.integers(min_value=0, max_value=i - 1))))) if i else ()
        for i in range(n)
    )
    # Half the tasks all_success (the default, and the rule where order used to matter).
    rule = st.one_of(st.just("all_success"), st.sampled_from(TRIGGER_RULES))
    rules = tuple(draw(rule) for _ in range(n))
    outcomes = tuple(draw(st.sampled_from(OUTCOMES)) for _ in range(n))
    return Dag(upstream, rules, outcomes)


def simulate(dag: Dag, pick: Callable[[int], int]) -> dict[str, str]:
    """Run the DAG as the engine does: after each finish, decide every pending task whose
    rule now gives a verdict (a settled one at once, which may decide others); then one of
    the tasks that may run, `pick(how many)`, finishes with its outcome."""
    state = ["pending"] * len(dag.rules)
    while True:
        decided = True
        while decided:
            decided = False
            for task, ups in enumerate(dag.upstream):
                if state[task] != "pending":
                    continue
                counts = Counts.of(len(ups), (state[u] for u in ups))
                verdict = evaluate(dag.rules[task], counts)
                if verdict != "wait":
                    state[task] = SETTLED.get(verdict, "running")
                    decided = True
        running = [task for task, s in enumerate(state) if s == "running"]
        if not running:
            return {f"t{task}": s for task, s in enumerate(state)}
        task = running[pick(len(running))]
        state[task] = dag.outcomes[task]


def picker(data: st.DataObject, label: str) -> Callable[[int], int]:
    return lambda n: data.draw(st.integers(min_value=0, max_value=n - 1), label=label)


@settings(max_examples=200, deadline=None)
@given(dag=dags(), data=st.data())
def test_it_ends_every_random_dag_the_same_whatever_the_order(
    dag: Dag, data: st.DataObject
) -> None:
    one = simulate(dag, picker(data, "first order"))
    other = simulate(dag, picker(data, "second order"))
    assert one == other
    assert set(one.values()) <= {*OUTCOMES, "upstream_failed"}  # nothing left undecided


def test_the_simulation_settles_all_success_on_the_failure_whichever_finishes_first() -> None:
    # a, b -> c (all_success); a fails, b is skipped.
    dag = Dag(((), (), (0, 1)), ("all_success",) * 3, ("failed", "skipped", "success"))
    assert simulate(dag, lambda n: 0)["t2"] == "upstream_failed"  # a first
    assert simulate(dag, lambda n: n - 1)["t2"] == "upstream_failed"  # b first


# --- through the engine ------------------------------------------------------------------


@pytest.fixture
def engine(db: None) -> Engine:
    return Engine(workers=None)


_names = itertools.count()


def run_in_engine(engine: Engine, dag: Dag, pick: Callable[[int], int]) -> dict[str, str]:
    """Trigger a run of the DAG, then, until nothing is queued, claim one of the queued
    tries (`pick(how many)`) and end it with its task's outcome, as a worker would."""
    workflow = engine.apply(dag.spec(f"determinism-{next(_names)}"))
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow, params={}).run
    while True:
        queued = list(
            TaskInstance.objects.dangerously_unscoped()
            .filter(run=run, state=TaskInstance.State.QUEUED)
            .order_by("task_id")
            .values_list("id", "try_number", "task_id")
        )
        if not queued:
            break
        ti_id, try_number, task_id = queued[pick(len(queued))]
        attempt = claim(ti_id, try_number, worker="determinism", pid=1)
        assert attempt is not None
        outcome = dag.outcomes[int(task_id[1:])]
        finish(attempt.pk, Outcome(state=outcome, retryable=False), claimed=attempt)
    run.refresh_from_db()
    assert run.state in WorkflowRun.FINISHED
    return states(engine, run)


# A join after a failure and a skip, and after a skip and successes, in the orders that
# matter: the unmoved_by_success shortcut leaves c unevaluated on a success while other
# upstreams are unfinished, so the last upstream to finish must settle it.
JOINS = [
    (("failed", "skipped", "success"), ("a", "b", "d"), "upstream_failed"),
    (("failed", "skipped", "success"), ("b", "d", "a"), "upstream_failed"),
    (("failed", "skipped", "success"), ("d", "b", "a"), "upstream_failed"),
    (("success", "skipped", "success"), ("b", "d", "a"), "skipped"),
    (("success", "skipped", "success"), ("a", "d", "b"), "skipped"),
    (("success", "skipped", "skipped"), ("b", "a", "d"), "skipped"),
]


@pytest.mark.parametrize(("outcomes", "order", "expected"), JOINS)
def test_the_engine_settles_an_all_success_join_the_same_in_any_order(
    engine: Engine, outcomes: tuple[str, str, str], order: tuple[str, str, str], expected: str
) -> None:
    # a, b, d -> c (all_success), tasks 0, 1, 2 -> 3.
    dag = Dag(((), (), (), (0, 1, 2)), ("all_success",) * 4, (*outcomes, "success"))
    names = {"a": "t0", "b": "t1", "d": "t2"}
    sequence = [names[task] for task in order]

    def pick_in_order(n: int) -> int:
        if not sequence:
            return 0  # c, if it runs
        queued = sorted(sequence)  # the roots not finished yet, as run_in_engine lists them
        assert n == len(queued)
        return queued.index(sequence.pop(0))

    got = run_in_engine(engine, dag, pick_in_order)
    assert got["t3"] == expected
    assert got == simulate(dag, lambda n: 0)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(dag=dags(), data=st.data())
def test_the_engine_ends_every_random_dag_as_the_simulation_whatever_the_order(
    engine: Engine, dag: Dag, data: st.DataObject
) -> None:
    expected = simulate(dag, lambda n: 0)
    assert run_in_engine(engine, dag, picker(data, "completion order")) == expected
