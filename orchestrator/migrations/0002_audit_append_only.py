"""Make the audit log append-only in the database itself: UPDATE, DELETE and TRUNCATE on
audit rows raise, whoever issues them (the model refuses them too)."""

from django.db import migrations

from orchestrator.dbtriggers import append_only


class Migration(migrations.Migration):
    dependencies = [("orchestrator", "0001_initial")]

    operations = [append_only("orchestrator_auditevent")]
