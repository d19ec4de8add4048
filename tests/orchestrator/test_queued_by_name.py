"""Tasks queued by name (`orchestrator.celery.queue_task`, and the engine's `send_task`)
name a task a worker has: a typo would be a message every worker drops."""

from __future__ import annotations

import ast
from pathlib import Path

from orchestrator.celery import app
from tests.subprocesses import ROOT

APPS = ("orchestrator", "workflows", "runs", "events", "notifications", "gitsync", "connections")


def _names_queued() -> dict[str, str]:
    """Each literal task name passed to queue_task or send_task: where it is."""
    found: dict[str, str] = {}
    for package in APPS:
        for path in sorted((Path(ROOT) / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                called = node.func
                name = called.attr if isinstance(called, ast.Attribute) else ""
                name = name or getattr(called, "id", "")
                first = node.args[0]
                if name in ("queue_task", "send_task") and isinstance(first, ast.Constant):
                    found[str(first.value)] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return found


def test_every_task_queued_by_name_is_one_a_worker_has() -> None:
    app.loader.import_default_modules()  # what a worker imports at its start
    queued = _names_queued()
    assert {"gitsync.sync", "notifications.deliver", "events.send_lineage"} <= set(queued)
    unknown = {name: where for name, where in queued.items() if name not in app.tasks}
    assert unknown == {}
