"""The SQL statements a task's life costs on a worker, pinned so they cannot creep up.

A task's life on the worker is: claim the try, load what the task needs, run it, record the
outcome, move its downstream on and dispatch what became ready (all in `worker.execute`).
Counted on PostgreSQL, in-process (messages go to the in-memory broker, which nobody
reads); docs/performance.md explains the figures."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator import fastsql
from runs import engine as engine_module
from runs import worker
from runs.models import TaskAttempt, TaskInstance
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine

# The budgets (statements besides BEGIN and COMMIT; 17 for a chain step before the work of
# issue 7): lower them when the engine gets leaner, never raise them without a reason
# written here.
# A noop of a run this worker process has just worked on reads neither its instance nor its
# run again (the claim hands the instance back: issue 26): one statement fewer. On
# PostgreSQL the claim and its attempt's insert are one statement, outside a transaction
# (issue 26): one fewer again, and one commit.
# The attempt's end and its instance's new state are one statement on PostgreSQL (a CTE
# per compare-and-set: issue 26): one fewer again. The engine's statements on this path are
# prepared once per connection (fastsql.run); a PREPARE is not counted, its EXECUTEs are.
CHAIN_STEP = 5  # a task that finishes and dispatches the next one of a chain (12, 8, 7, 6)
FAN_OUT_LEAF = 6  # one of many parallel tasks whose join still waits (11, 9, 8, 7)


@pytest.fixture
def engine(transactional_db: None) -> Engine:
    return Engine(workers=None)


def _queued(engine: Engine, run: Any) -> TaskInstance:
    with engine.scope():
        return TaskInstance.objects.get(run=run, state="queued")


def step_statements(ti: TaskInstance) -> list[str]:
    """One task's life (without running on into the next task of a chain), a prepared
    statement's EXECUTE read as its text, its PREPARE (once per connection) not counted."""
    with CaptureQueriesContext(connection) as captured:
        assert worker._execute_one(ti.pk, ti.try_number) == "success"
    readable = [fastsql.readable(q["sql"]) for q in captured.captured_queries]
    return [sql for sql in readable if sql and sql not in {"BEGIN", "COMMIT"} and not _timeout(sql)]


def test_a_chain_step_costs_at_most_its_budget(engine: Engine, settings: Any) -> None:
    workflow = engine.apply(
        {
            "name": "chain",
            "tasks": {
                "a": {"type": "noop"},
                "b": {"type": "noop", "depends_on": ["a"]},
                "c": {"type": "noop", "depends_on": ["b"]},
            },
        }
    )
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    settings.TASK_CONTINUE_SECONDS = 0  # a only, not b and c after it
    worker.execute(_queued(engine, run).pk, 1)  # a: warms the graph cache
    statements = step_statements(_queued(engine, run))  # b: finishes, dispatches c
    assert len(statements) <= CHAIN_STEP, "\n".join(statements)
    with engine.scope():
        c = TaskInstance.objects.get(run=run, task_id="c")
    assert c.state == "queued"
    assert engine_module.take_kept() == (c.pk, 1)  # kept for this worker to run next
    with engine.scope():  # recorded as fully as the first try of the run (a)
        rendered = dict(
            TaskAttempt.objects.filter(task_instance__run=run).values_list(
                "task_instance__task_id", "rendered"
            )
        )
    assert rendered["b"] == {**rendered["a"], "depends_on": ["a"]}


def test_a_fan_out_leaf_costs_at_most_its_budget(engine: Engine, settings: Any) -> None:
    settings.TASK_CONTINUE_SECONDS = 0
    leaves = {f"l{i}": {"type": "noop", "depends_on": ["root"]} for i in range(10)}
    workflow = engine.apply(
        {
            "name": "fan",
            "max_active_tasks": 100,
            "tasks": {
                "root": {"type": "noop"},
                **leaves,
                "join": {"type": "noop", "depends_on": list(leaves)},
            },
        }
    )
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    worker.execute(_queued(engine, run).pk, 1)  # root: dispatches the leaves
    with engine.scope():
        leaf = TaskInstance.objects.filter(run=run, state="queued").first()
    assert leaf is not None
    statements = step_statements(leaf)
    assert len(statements) <= FAN_OUT_LEAF, "\n".join(statements)


# The last task: finishes, ends its run, writes its outbox event (and looks for a failed run
# before it: run.recovered), finds no queued run to start (14 before the outbox, then 11).
RUN_END = 13


def test_the_last_task_of_a_run_costs_at_most_its_budget(engine: Engine, settings: Any) -> None:
    """Ending the run included, and what runs after its commit: with nothing queued behind
    it, no tenant or workflow lock is taken."""
    settings.TASK_CONTINUE_SECONDS = 0
    workflow = engine.apply({"name": "single", "tasks": {"only": {"type": "noop"}}})
    with engine.scope():
        warm = trigger_run(actor=engine.actor, workflow=workflow).run
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    worker.execute(_queued(engine, warm).pk, 1)  # warms the graph cache
    statements = step_statements(_queued(engine, run))
    assert len(statements) <= RUN_END, "\n".join(statements)
    locks = [s.split(" FROM ")[1].split()[0] for s in statements if "FOR NO KEY UPDATE" in s]
    assert locks == ['"runs_workflowrun"'], locks  # the run only: no tenant, no workflow
    run.refresh_from_db()
    assert run.state == "success"


# token (with its tenant and membership role); the run (with workflow, version, user)
# and its task counts
RUN_GET = 2
# Round trips: token (with tenant and role), workflow (with tenant and version); the run,
# started, and its instances, the first wave queued; locks of tenant and workflow with the
# run counts (one query string); the audit chain's head, then event and head (one query
# string). The response's task counts are those the trigger wrote.
TRIGGER_POST = 7


def _timeout(sql: str) -> bool:
    """The API statement timeout's SET and RESET (one each per request, orchestrator/
    statement_timeout.py) are the web layer's, not the engine's: not counted here."""
    return "statement_timeout" in sql


def test_the_run_api_costs_at_most_its_budget(transactional_db: None) -> None:
    from rest_framework.test import APIClient

    from tests.harness import make_team

    team = make_team("acme")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {team.tokens['owner']}")
    spec = {
        "name": "w",
        "tasks": {"a": {"type": "noop"}, "b": {"type": "noop", "depends_on": ["a"]}},
    }
    assert client.put("/api/v1/tenants/acme/workflows/w/", spec, format="json").status_code == 201
    client.post("/api/v1/tenants/acme/workflows/w/runs/", {}, format="json")  # warm caches
    with CaptureQueriesContext(connection) as post:
        response = client.post("/api/v1/tenants/acme/workflows/w/runs/", {}, format="json")
    assert response.status_code == 201
    statements = [
        q["sql"]
        for q in post.captured_queries
        if q["sql"] not in {"BEGIN", "COMMIT"} and not _timeout(q["sql"])
    ]
    assert len(statements) <= TRIGGER_POST, "\n".join(statements)
    with CaptureQueriesContext(connection) as get:
        response = client.get(f"/api/v1/tenants/acme/runs/{response.json()['id']}/")
    assert response.status_code == 200
    assert response.json()["version"] == 1
    reads = [q["sql"] for q in get.captured_queries if not _timeout(q["sql"])]
    assert len(reads) <= RUN_GET, "\n".join(reads)
