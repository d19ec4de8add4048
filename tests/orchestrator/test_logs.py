"""LOG_FORMAT=json: one JSON object a line from every process, with the request id, tenant,
workflow, run, task and try where they apply; plain text stays the default; a format that
does not exist is refused at start."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runs.models import TaskAttempt
from tests.runs.engine.helpers import Engine, run_to_end
from tests.workers import Workers, wait_for

ROOT = Path(__file__).resolve().parent.parent.parent

SCRIPT = """
import logging
import django
django.setup()
from django.test import Client
from orchestrator.context import request_id_context
from orchestrator.logs import log_context

log = logging.getLogger("orchestrator.test")
log.info("outside")
with request_id_context("req-1"), log_context(tenant="acme", run=42, task="load", try_=2):
    log.warning("inside %s", "a try")
# A request: its id, and the tenant its URL names, on what it logs.
Client().get("/api/v1/tenants/acme/runs/", HTTP_X_REQUEST_ID="req-2")
"""


def run_script(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
            "DJANGO_SETTINGS_MODULE": "orchestrator.settings",
            "DATABASE_URL": "sqlite:///:memory:",
            "LOG_LEVEL": "INFO",
            "ALLOWED_HOSTS": "testserver",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_json_lines_carry_what_they_are_about() -> None:
    done = run_script(LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    by_message = {line["message"]: line for line in lines}
    outside = by_message["outside"]
    assert (outside["level"], outside["logger"]) == ("INFO", "orchestrator.test")
    assert "time" in outside
    assert "run" not in outside
    inside = by_message["inside a try"]
    assert inside["level"] == "WARNING"
    assert {k: inside[k] for k in ("request_id", "tenant", "run", "task", "try")} == {
        "request_id": "req-1",
        "tenant": "acme",
        "run": 42,
        "task": "load",
        "try": 2,
    }
    # Django's own record of the refused request: the request's id and tenant.
    [request] = [line for line in lines if line.get("request_id") == "req-2"]
    assert request["tenant"] == "acme"
    assert request["logger"] == "django.request"


def test_plain_text_is_the_default_and_a_bad_format_is_refused() -> None:
    done = run_script()
    assert done.returncode == 0, done.stderr
    assert "INFO orchestrator.test outside" in done.stderr
    assert not done.stderr.lstrip().startswith("{")
    refused = run_script(LOG_FORMAT="xml")
    assert refused.returncode != 0
    assert "LOG_FORMAT='xml': expected plain or json" in refused.stderr


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_logs_its_tries_as_json_lines(transactional_db: None, settings: Any) -> None:
    pool = Workers(count=1, concurrency=1, beat=False, env={"LOG_FORMAT": "json"})
    pool.start()
    try:
        from tests.workers import publishing_to

        with publishing_to(pool):
            engine = Engine(pool)
            run = run_to_end(
                engine,
                {
                    "name": "logged",
                    "tasks": {"say": {"type": "python", "callable": "runs.library:echo"}},
                },
            )
        assert run.state == "success"
        # The attempt names the Celery node that ran it, not just its host.
        [attempt] = TaskAttempt.objects.dangerously_unscoped().filter(task_instance__run=run)
        assert attempt.worker == f"w1@{socket.gethostname()}"
        log = Path(pool.logs[0])

        def ended() -> list[dict[str, Any]]:
            found = []
            for line in log.read_text().splitlines():
                if line.startswith("{"):
                    record = json.loads(line)
                    if record.get("run") == run.pk:
                        found.append(record)
            return found

        records = wait_for(ended, 20, "the worker's record of the try", pool)
        [end] = [r for r in records if "ended success" in r["message"]]
        assert {k: end[k] for k in ("tenant", "workflow", "run", "task", "try")} == {
            "tenant": "eng",
            "workflow": "logged",
            "run": run.pk,
            "task": "say",
            "try": 1,
        }
        # Whatever the worker logged through logging is JSON (Celery's start banner is a
        # print, not a record).
        records = [line for line in log.read_text().splitlines() if line.startswith("{")]
        assert len(records) >= 3
        for line in records:
            assert {"time", "level", "logger", "message"} <= json.loads(line).keys()
    finally:
        pool.stop()
