"""Workflow versions are immutable: the database refuses UPDATE and DELETE on them."""

from django.db import migrations

from orchestrator.dbtriggers import append_only


class Migration(migrations.Migration):
    dependencies = [("workflows", "0001_initial")]

    operations = [append_only("workflows_workflowversion")]
