"""Make the audit log append-only in the database itself: UPDATE and DELETE on audit rows
raise, whoever issues them (the model refuses them too)."""

from django.db import migrations

PG_UP = """
CREATE OR REPLACE FUNCTION orchestrator_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER orchestrator_auditevent_append_only
    BEFORE UPDATE OR DELETE ON orchestrator_auditevent
    FOR EACH ROW EXECUTE FUNCTION orchestrator_audit_append_only();
CREATE TRIGGER orchestrator_auditevent_no_truncate
    BEFORE TRUNCATE ON orchestrator_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_audit_append_only();
"""
PG_DOWN = """
DROP TRIGGER IF EXISTS orchestrator_auditevent_no_truncate ON orchestrator_auditevent;
DROP TRIGGER IF EXISTS orchestrator_auditevent_append_only ON orchestrator_auditevent;
DROP FUNCTION IF EXISTS orchestrator_audit_append_only();
"""
SQLITE_UP = [
    """CREATE TRIGGER orchestrator_auditevent_no_update BEFORE UPDATE ON orchestrator_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only (UPDATE refused)'); END;""",
    """CREATE TRIGGER orchestrator_auditevent_no_delete BEFORE DELETE ON orchestrator_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only (DELETE refused)'); END;""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS orchestrator_auditevent_no_update;",
    "DROP TRIGGER IF EXISTS orchestrator_auditevent_no_delete;",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("orchestrator", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": [PG_UP], "sqlite": SQLITE_UP}),
            _run({"postgresql": [PG_DOWN], "sqlite": SQLITE_DOWN}),
        ),
    ]
