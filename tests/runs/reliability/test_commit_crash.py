"""A process that dies between committing a run and sending its first message: the run sits
`queued` in the database with no message anywhere, and the reconciler re-sends it within
its period (QUEUED_RESEND_AFTER_SECONDS plus a reconcile interval)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from runs.models import TaskInstance, WorkflowRun
from tests.runs.reliability.conftest import Cluster
from tests.subprocesses import ROOT

pytestmark = pytest.mark.slow

# Registered before the trigger, this on_commit callback runs first after the commit and
# ends the process: the message-sending callbacks never run.
CRASHING_TRIGGER = textwrap.dedent(
    """
    import os, sys
    import django
    django.setup()
    from django.contrib.auth.models import User
    from django.db import transaction
    from orchestrator.actors import Actor
    from orchestrator.context import tenant_scope
    from orchestrator.models import Tenant
    from runs.services import trigger_run
    from workflows.models import Workflow

    tenant = Tenant.objects.get(slug=sys.argv[1])
    actor = Actor(user=User.objects.get(username=sys.argv[2]), source="api")
    with tenant_scope([tenant]):
        workflow = Workflow.objects.get(name=sys.argv[3])
        with transaction.atomic():
            transaction.on_commit(lambda: os._exit(9))
            trigger_run(actor=actor, workflow=workflow)
    """
)


def test_the_reconciler_resends_what_a_crash_never_sent(cluster: Cluster) -> None:
    workflow = cluster.apply(
        {"name": "crashy", "tasks": {"only": {"type": "shell", "command": cluster.body()}}}
    )
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_TRIGGER, cluster.tenant.slug, "owner", "crashy"],
        cwd=ROOT,
        env={**cluster.workers.env, "DJANGO_SETTINGS_MODULE": "orchestrator.settings"},
        capture_output=True,
        timeout=60,
    )
    assert crashed.returncode == 9, crashed.stderr.decode()
    crashed_at = time.monotonic()
    with cluster.scope():
        run = WorkflowRun.objects.get(workflow=workflow)
        ti = TaskInstance.objects.get(run=run)
    assert (run.state, ti.state, ti.try_number) == ("running", "queued", 1)

    cluster.wait_finished([run], 30)
    waited = time.monotonic() - crashed_at
    run.refresh_from_db()
    assert run.state == "success"
    assert cluster.executions() == {(run.pk, "only", 1): 1}
    # Workers run with QUEUED_RESEND_AFTER_SECONDS=5 and a reconcile every 2 s.
    resend_after = int(cluster.workers.env["QUEUED_RESEND_AFTER_SECONDS"])
    assert waited < resend_after + 2 * 2 + 3
