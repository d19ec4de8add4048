"""Database triggers that make a table append-only (UPDATE and DELETE raise), for the
tables whose rows must never change: the audit log, workflow versions. Used by migrations.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

__all__ = ["append_only"]


def _statements(table: str, vendor: str, up: bool) -> list[str]:
    if vendor == "postgresql":
        if not up:
            return [
                f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table};",
                f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};",
            ]
        return [
            # One shared function; each table gets its triggers.
            """CREATE OR REPLACE FUNCTION orchestrator_refuse_change() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$ LANGUAGE plpgsql;""",
            f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION orchestrator_refuse_change();""",
            f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_refuse_change();""",
        ]
    if vendor == "sqlite":
        if not up:
            return [
                f"DROP TRIGGER IF EXISTS {table}_no_update;",
                f"DROP TRIGGER IF EXISTS {table}_no_delete;",
            ]
        return [
            f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
                BEGIN SELECT RAISE(ABORT, '{table} is append-only (UPDATE refused)'); END;""",
            f"""CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
                BEGIN SELECT RAISE(ABORT, '{table} is append-only (DELETE refused)'); END;""",
        ]
    return []


def append_only(table: str) -> migrations.RunPython:
    # params=None: the SQL is sent as it is. With the default (), PostgreSQL's schema editor
    # interpolates client-side and the `%` of RAISE's format string breaks every migrate.
    def forward(apps: Any, schema_editor: Any) -> None:
        for sql in _statements(table, schema_editor.connection.vendor, up=True):
            schema_editor.execute(sql, params=None)

    def backward(apps: Any, schema_editor: Any) -> None:
        for sql in _statements(table, schema_editor.connection.vendor, up=False):
            schema_editor.execute(sql, params=None)

    return migrations.RunPython(forward, backward)
