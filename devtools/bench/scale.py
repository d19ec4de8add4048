"""The per-task cost and scale scenarios of issue 26: a chain of shell tasks beside the
noop chain, a fan-out of 10,000 tasks, 100 concurrent runs of a 100-task DAG, and the
fair-share scenario (one tenant floods the workers while another runs a short chain).
Every figure is read back from PostgreSQL, as in devtools/bench/scenarios.py."""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
import time
from typing import Any

from django.contrib.auth.models import User

from devtools.bench.scenarios import Engine
from devtools.bench.stats import Figure, Figures, percentile
from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs.models import TaskInstance
from workflows.models import Workflow

__all__ = ["SCALE_SCENARIOS", "Scale", "scale_figures"]

# Opt-in (`--only NAME`): each takes minutes on the 2-core machine.
SCALE_SCENARIOS = ["fanout-10000", "concurrent-100x100", "fair-share"]
FLOOD_TENANT = "bench-flood"
SHELL_TRUE = {"type": "shell", "command": ["true"]}
NOOP = {"type": "noop"}


def _seconds(delta: dt.timedelta) -> float:
    return delta.total_seconds()


def chain_spec(name: str, length: int, task: dict[str, Any]) -> dict[str, Any]:
    names = [f"t{i:04d}" for i in range(length)]
    return {
        "name": name,
        "tasks": {
            n: {**task, **({"depends_on": [names[i - 1]]} if i else {})}
            for i, n in enumerate(names)
        },
    }


def ladder_spec(name: str, levels: int, width: int, max_active_runs: int) -> dict[str, Any]:
    """`levels` levels of `width` noops, each task depending on every task of the level
    before it: a DAG with joins everywhere, as real pipelines have."""
    tasks: dict[str, Any] = {}
    for level in range(levels):
        before = [f"l{level - 1:02d}t{i:02d}" for i in range(width)] if level else []
        for i in range(width):
            tasks[f"l{level:02d}t{i:02d}"] = {**NOOP, **({"depends_on": before} if before else {})}
    return {
        "name": name,
        "max_active_runs": max_active_runs,
        "max_active_tasks": min(1000, width),
        "tasks": tasks,
    }


class Scale:
    """The scenarios, on the bench tenant's Engine (and a second tenant for fair-share)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- per-task cost ---------------------------------------------------------------

    def chain_shell(self, length: int = 100) -> dict[str, float]:
        """A chain of `shell` tasks running `true`, in the tenant's sandbox: wall time,
        the median handoff (end -> next start) and the median task (start -> end)."""
        engine = self.engine
        workflow = engine.apply(chain_spec(f"bench-chain-{length}-shell", length, SHELL_TRUE))
        run, started = engine.trigger(workflow)
        (run,) = engine.wait([run.pk])
        tis = engine.instances(run)
        gaps = [
            _seconds(b.started_at - a.ended_at)  # type: ignore[operator]
            for a, b in itertools.pairwise(tis)
        ]
        tasks = [_seconds(t.ended_at - t.started_at) for t in tis]  # type: ignore[operator]
        return {
            "wall_s": _seconds(run.ended_at - started),  # type: ignore[operator]
            "handoff_ms": statistics.median(gaps) * 1000 if gaps else 0.0,
            "task_ms": statistics.median(tasks) * 1000,
        }

    # --- scale -----------------------------------------------------------------------

    def fanout(self, width: int = 10_000) -> dict[str, float]:
        """root -> `width` parallel noops -> join, `max_active_tasks` 1000: tasks per
        second recorded, and the p99 of queued -> started over the leaves."""
        engine = self.engine
        self._allow_tasks(engine.tenant, width + 2)
        leaves = [f"l{i:05d}" for i in range(width)]
        tasks: dict[str, Any] = {"root": NOOP}
        tasks.update({leaf: {**NOOP, "depends_on": ["root"]} for leaf in leaves})
        tasks["join"] = {**NOOP, "depends_on": leaves}
        workflow = engine.apply(
            {"name": f"bench-fanout-{width}", "max_active_tasks": min(width, 1000), "tasks": tasks}
        )
        run, started = engine.trigger(workflow)
        (run,) = engine.wait([run.pk], timeout=1800)
        wall = _seconds(run.ended_at - started)  # type: ignore[operator]
        waits = self._queued_to_start([run.pk], engine.tenant)
        return {
            "wall_s": wall,
            "tasks_per_s": (width + 2) / wall,
            "queued_p50_ms": percentile(waits, 50),
            "queued_p99_ms": percentile(waits, 99),
        }

    def concurrent(self, runs: int = 100, levels: int = 10, width: int = 10) -> dict[str, float]:
        """`runs` runs of a `levels` x `width` DAG triggered at once: tasks per second
        (all runs' tasks over the first trigger -> the last run's end) and the p50/p99 of
        queued -> started over every task instance."""
        engine = self.engine
        workflow = engine.apply(
            ladder_spec(f"bench-dag-{levels}x{width}", levels, width, max_active_runs=runs)
        )
        started = time.time()
        ids = [engine.trigger(workflow)[0].pk for _ in range(runs)]
        done = engine.wait(ids, timeout=1800)
        wall = max(r.ended_at.timestamp() for r in done) - started  # type: ignore[union-attr]
        waits = self._queued_to_start(ids, engine.tenant)
        return {
            "wall_s": wall,
            "tasks_per_s": runs * levels * width / wall,
            "queued_p50_ms": percentile(waits, 50),
            "queued_p99_ms": percentile(waits, 99),
        }

    def fair_share(
        self, flood_runs: int = 5, flood_width: int = 1000, chain: int = 20
    ) -> dict[str, float]:
        """Tenant A (bench-flood) makes `flood_runs` x `flood_width` noops ready at once
        (runs of independent tasks, so every one is queued); tenant B (the bench tenant)
        runs a chain of `chain` noops, once on idle workers and once right after A's
        triggers. B's walls, their ratio (target <= 2x), and A's drain time."""
        engine, flood = self.engine, self._flood_engine()
        chain_flow = engine.apply(chain_spec(f"bench-fair-chain-{chain}", chain, NOOP))
        flood_flow = flood.apply(
            {
                "name": f"bench-flood-{flood_width}",
                "max_active_runs": flood_runs,
                "max_active_tasks": min(flood_width, 1000),
                "tasks": {f"f{i:04d}": NOOP for i in range(flood_width)},
            }
        )
        idle = self._chain_wall(chain_flow)
        flooded_at = time.time()
        flood_ids = [flood.trigger(flood_flow)[0].pk for _ in range(flood_runs)]
        busy = self._chain_wall(chain_flow)
        drained = flood.wait(flood_ids, timeout=1800)
        drain = max(r.ended_at.timestamp() for r in drained) - flooded_at  # type: ignore[union-attr]
        return {
            "idle_wall_s": idle,
            "flooded_wall_s": busy,
            "ratio": busy / idle,
            "flood_drain_s": drain,
        }

    # --- helpers ---------------------------------------------------------------------

    def _chain_wall(self, workflow: Workflow) -> float:
        run, started = self.engine.trigger(workflow)
        (run,) = self.engine.wait([run.pk], timeout=1800)
        return _seconds(run.ended_at - started)  # type: ignore[operator]

    @staticmethod
    def _queued_to_start(run_ids: list[int], tenant: Tenant) -> list[float]:
        with tenant_scope([tenant]):
            rows = TaskInstance.objects.filter(run_id__in=run_ids).values_list(
                "queued_at", "started_at"
            )
            return [
                _seconds(started - queued) * 1000
                for queued, started in rows
                if queued is not None and started is not None
            ]

    @staticmethod
    def _allow_tasks(tenant: Tenant, tasks: int) -> None:
        """The bench tenant's workflow size quota raised to `tasks` and its spec size to
        the platform's limit. A 10,002-task fan-out is above the platform's default limit
        on quotas (PLATFORM_MAX_TASKS_PER_WORKFLOW, 5,000), which an owner cannot exceed
        through the service: the bench writes its own tenant's row."""
        quotas = {**tenant.quotas, "max_tasks_per_workflow": tasks, "max_spec_bytes": 4 << 20}
        if tenant.quotas != quotas:
            Tenant.objects.filter(pk=tenant.pk).update(quotas=quotas)
            tenant.quotas = quotas

    def _flood_engine(self) -> Engine:
        """Tenant A of fair-share: its own tenant, owned by the bench's user."""
        engine = self.engine
        user = engine.actor.user
        tenant = Tenant.objects.filter(slug=FLOOD_TENANT).first()
        if tenant is None:
            tenant = services.create_tenant(
                actor=Actor.cli(),
                slug=FLOOD_TENANT,
                name="Benchmarks: the flooding tenant",
                owner=user if isinstance(user, User) else None,
                quotas={"max_tasks_per_workflow": 1000, "max_concurrent_runs": 50},
            )
        return Engine(tenant, engine.actor, engine.api, engine.token, engine.workers)


def scale_figures(values: dict[str, list[float]]) -> list[Figure]:
    """The figures of these scenarios, for the bench's table."""
    figures = Figures(values)
    median, add = figures.median, figures.add

    noop_wall = median("chain-100.wall_s")
    shell_wall = median("chain-100-shell.wall_s")
    add(
        "chain-100-shell.wall_s",
        "chain-100-shell wall (trigger -> run success)",
        "s",
        "lower",
        target=2 * noop_wall if noop_wall else None,
        note=f"{shell_wall / noop_wall:.2f}x the noop chain-100 (target <= 2x)"
        if shell_wall and noop_wall
        else "",
    )
    add("chain-100-shell.handoff_ms", "chain-100-shell handoff (end -> next start)", "ms", "lower")
    add("chain-100-shell.task_ms", "chain-100-shell task (start -> end)", "ms", "lower")
    for kind in ("noop", "shell"):
        what = f"embedded mode, chain-30 over REST: {kind} per task"
        add(f"embedded-chain-30.{kind}_ms", what, "ms", "lower")
    add(
        "embedded-chain-30.ratio",
        "embedded mode: shell per task / noop per task",
        "x",
        "lower",
        target=2.0,
    )
    for name, what in (("fanout-10000", "fanout-10000"), ("concurrent-100x100", "100x100-DAG")):
        add(f"{name}.tasks_per_s", f"{what} rate (recorded)", "tasks/s", "higher")
        add(f"{name}.wall_s", f"{what} wall", "s", "lower")
        add(f"{name}.queued_p50_ms", f"{what} queued -> started p50", "ms", "lower")
        add(f"{name}.queued_p99_ms", f"{what} queued -> started p99", "ms", "lower")
    add("fair-share.idle_wall_s", "fair-share: B's chain-20, workers idle", "s", "lower")
    add(
        "fair-share.flooded_wall_s",
        "fair-share: B's chain-20 while A floods 5,000 noops",
        "s",
        "lower",
    )
    add(
        "fair-share.ratio",
        "fair-share: B flooded / B idle",
        "x",
        "lower",
        target=2.0,
    )
    add("fair-share.flood_drain_s", "fair-share: A's 5,000 noops drained", "s", "lower")
    return figures
