"""The retention scenario (docs/retention.md, docs/performance.md): the engine's chain step
before, and while, the retention pass deletes `rows` task instance rows (with a try each)
of runs that ended ten years ago.

The pass runs as the housekeeper runs it: `manage.py retention --tenant bench` in a
process of its own, in batches of runs.retention.BATCH_SIZE runs. The chains measured
"during" are those started between its first committed batch (its first audit event) and
its exit, so the process's start-up is not counted as deleting time."""

from __future__ import annotations

import datetime as dt
import statistics
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from devtools.bench.scenarios import Engine
from devtools.bench.stats import Figure
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent
from runs.models import TaskAttempt, TaskInstance, WorkflowRun

__all__ = ["figures_of", "retention_while_chaining", "seed_aged", "seeded_rows"]

AGE = dt.timedelta(days=3650)  # older than any retention but the platform's maximum
TASKS_PER_RUN = 10
SEEDED = "bench-retention-seeded"


def _copy(model: type[models.Model], overrides: dict[str, str]) -> tuple[str, str]:
    """The column list and SELECT list copying `t`, a template row of `model`, with some
    columns replaced by SQL expressions: every other column (one added later too) as is."""
    columns, values = [], []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        column = str(field.column)
        columns.append(connection.ops.quote_name(column))
        values.append(overrides.get(column, f"t.{connection.ops.quote_name(column)}"))
    return ", ".join(columns), ", ".join(values)


def seed_aged(engine: Engine, rows: int, per_run: int = TASKS_PER_RUN) -> int:
    """Finished runs of a `per_run`-task workflow that ended AGE ago, with `rows` task
    instances in all and one try each: copies of one template run made through the ORM,
    one INSERT ... SELECT per table. Returns the task instances made."""
    names = [f"s{i:03d}" for i in range(per_run)]
    workflow = engine.apply({"name": SEEDED, "tasks": {name: {"type": "noop"} for name in names}})
    assert workflow.current_version is not None
    ended = timezone.now() - AGE
    runs = max(1, rows // per_run)
    with transaction.atomic():
        run = WorkflowRun._base_manager.create(
            tenant=engine.tenant,
            workflow=workflow,
            version=workflow.current_version,
            state=WorkflowRun.State.SUCCESS,
            logical_date=ended,
            trigger_source=WorkflowRun.Source.API,
            queued_at=ended,
            started_at=ended,
            ended_at=ended,
        )
        ti = TaskInstance._base_manager.create(
            tenant=engine.tenant,
            run=run,
            task_id=names[0],
            task_type="noop",
            state=TaskInstance.State.SUCCESS,
            try_number=1,
            queued_at=ended,
            started_at=ended,
            ended_at=ended,
        )
        attempt = TaskAttempt._base_manager.create(
            tenant=engine.tenant,
            task_instance=ti,
            try_number=1,
            state=TaskAttempt.State.SUCCESS,
            worker="bench",
            started_at=ended,
            ended_at=ended,
        )
        tables = {
            m: connection.ops.quote_name(m._meta.db_table)
            for m in (WorkflowRun, TaskInstance, TaskAttempt)
        }
        with connection.cursor() as cursor:
            columns, values = _copy(
                WorkflowRun, {"logical_date": "t.logical_date - g * interval '1 second'"}
            )
            cursor.execute(
                f"INSERT INTO {tables[WorkflowRun]} ({columns}) SELECT {values} "  # noqa: S608
                f"FROM {tables[WorkflowRun]} t, generate_series(1, %s) g WHERE t.id = %s "
                "RETURNING id",
                [runs - 1, run.pk],
            )
            new_runs = [row[0] for row in cursor.fetchall()]
            columns, values = _copy(
                TaskInstance, {"run_id": "r", "task_id": "'s' || lpad(k::text, 3, '0')"}
            )
            cursor.execute(
                f"INSERT INTO {tables[TaskInstance]} ({columns}) SELECT {values} "  # noqa: S608
                f"FROM {tables[TaskInstance]} t, unnest(%s::bigint[]) r, "
                "generate_series(0, %s) k WHERE t.id = %s",
                [new_runs, per_run - 1, ti.pk],
            )
            # The template run's other tasks, so that every run has `per_run`.
            cursor.execute(
                f"INSERT INTO {tables[TaskInstance]} ({columns}) SELECT {values} "  # noqa: S608
                f"FROM {tables[TaskInstance]} t, (SELECT %s::bigint) AS x(r), "
                "generate_series(1, %s) k WHERE t.id = %s",
                [run.pk, per_run - 1, ti.pk],
            )
            columns, values = _copy(TaskAttempt, {"task_instance_id": "n.id"})
            cursor.execute(
                f"INSERT INTO {tables[TaskAttempt]} ({columns}) SELECT {values} "  # noqa: S608
                f"FROM {tables[TaskAttempt]} t, {tables[TaskInstance]} n "
                "WHERE t.id = %s AND n.run_id = ANY(%s::bigint[]) AND n.id <> %s",
                [attempt.pk, [run.pk, *new_runs], ti.pk],
            )
    with connection.cursor() as cursor:
        for table in tables.values():
            cursor.execute(f"ANALYZE {table}")
    return seeded_rows(engine)


def seeded_rows(engine: Engine) -> int:
    with tenant_scope([engine.tenant]):
        return TaskInstance.objects.filter(run__workflow__name=SEEDED).count()


def _step(figures: dict[str, float]) -> float:
    """A chain-100's step: its wall time over its 100 tasks (ms)."""
    return figures["wall_s"] / 100 * 1000


def retention_while_chaining(engine: Engine, rows: int, before: int = 3) -> dict[str, float]:
    """Seed `rows` aged task instances, measure `before` chain-100 runs, then chain-100
    runs one after another while the retention pass deletes them."""
    have = seed_aged(engine, rows)
    engine.vacuum()
    quiet = [engine.chain(100) for _ in range(before)]
    audited = AuditEvent.objects.dangerously_unscoped().filter(
        tenant=engine.tenant, action="retention.delete"
    )
    mark = audited.order_by("-id").values_list("id", flat=True).first() or 0
    started = time.monotonic()
    purge = subprocess.Popen(
        [
            sys.executable,
            str(Path(settings.BASE_DIR) / "manage.py"),
            "retention",
            "--tenant",
            engine.tenant.slug,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while purge.poll() is None and not audited.filter(id__gt=mark).exists():
        time.sleep(0.01)  # its first batch is not committed yet
    deleting = time.monotonic()
    busy: list[dict[str, float]] = []
    while purge.poll() is None:
        busy.append(engine.chain(100))
    out, err = purge.communicate()
    ended = time.monotonic()
    if purge.returncode != 0:
        raise RuntimeError(f"manage.py retention failed: {err.strip()[-2000:]}")
    left = seeded_rows(engine)
    if left:
        raise RuntimeError(f"retention left {left} of {have} seeded task instances: {out}")
    if not busy:
        raise RuntimeError(
            f"retention deleted {have} rows before a chain could run beside it: use more --rows"
        )
    step_before = statistics.median(_step(f) for f in quiet)
    step_during = statistics.median(_step(f) for f in busy)
    return {
        "rows": float(have),
        "purge_s": ended - started,
        "deleting_s": ended - deleting,
        "rows_per_s": have / (ended - deleting) if ended > deleting else 0.0,
        "chains_during": float(len(busy)),
        "step_before_ms": step_before,
        "step_during_ms": step_during,
        "slowdown": step_during / step_before,
        "handoff_before_ms": statistics.median(f["handoff_ms"] for f in quiet),
        "handoff_during_ms": statistics.median(f["handoff_ms"] for f in busy),
    }


def figures_of(values: dict[str, list[float]]) -> list[Figure]:
    """The scenario's figures for the bench's table (values keyed "retention.<key>")."""

    def get(key: str) -> list[float] | None:
        return values.get(f"retention.{key}")

    figures = []
    for key, name, unit, better in (
        ("rows", "retention: task instance rows deleted", "rows", "higher"),
        ("deleting_s", "retention: deleting time (first batch -> exit)", "s", "lower"),
        ("rows_per_s", "retention: task instance rows deleted per second", "rows/s", "higher"),
        ("chains_during", "retention: chain-100 runs measured while deleting", "runs", "higher"),
        ("step_before_ms", "retention: chain-100 step before", "ms", "lower"),
        ("handoff_before_ms", "retention: chain-100 handoff before", "ms", "lower"),
        ("handoff_during_ms", "retention: chain-100 handoff while deleting", "ms", "lower"),
    ):
        if get(key):
            figures.append(Figure(name, unit, get(key) or [], better))
    before, during = get("step_before_ms"), get("step_during_ms")
    if before and during:
        target = 1.2 * statistics.median(before)
        figures.append(
            Figure(
                "retention: chain-100 step while deleting",
                "ms",
                during,
                "lower",
                target=target,
                note=f"{statistics.median(get('slowdown') or [0.0]):.2f}x the step before "
                "(target <= 1.2x)",
            )
        )
    return figures
