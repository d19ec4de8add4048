"""Runs and task instances are queue-like tables: every run leaves dead row versions behind
(queued -> running -> success), and the counts each trigger makes (a tenant's running runs,
a workflow's) walk the dead index entries until a vacuum removes them: 1.4 ms instead of
0.02 ms with 95,000 of them (docs/performance.md). PostgreSQL's default lets dead rows reach
a fifth of a table before autovacuum runs, which on a large run table is millions; these
tables are vacuumed after 2% instead. (Autovacuum itself must be on, as it is by default.)"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TABLES = ["runs_workflowrun", "runs_taskinstance", "runs_taskattempt"]
SETTINGS = "autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02"


def _alter(apps: Any, schema_editor: Any, reset: bool = False) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite has no vacuum settings per table
    for table in TABLES:
        if reset:
            options = "autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor"
            schema_editor.execute(f"ALTER TABLE {table} RESET ({options})")
        else:
            schema_editor.execute(f"ALTER TABLE {table} SET ({SETTINGS})")


def _reset(apps: Any, schema_editor: Any) -> None:
    _alter(apps, schema_editor, reset=True)


class Migration(migrations.Migration):
    dependencies = [("runs", "0007_ti_wait_started_at")]

    operations = [migrations.RunPython(_alter, _reset)]
