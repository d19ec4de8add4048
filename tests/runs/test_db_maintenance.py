"""The queue-like run tables are vacuumed early (runs/migrations/0008): their dead row
versions would otherwise slow every trigger's counts between vacuums."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("table", ["runs_workflowrun", "runs_taskinstance", "runs_taskattempt"])
def test_the_run_tables_are_vacuumed_after_two_percent(table: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [table])
        (options,) = cursor.fetchone()
    assert "autovacuum_vacuum_scale_factor=0.02" in options
    assert "autovacuum_analyze_scale_factor=0.02" in options
