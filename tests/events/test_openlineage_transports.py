"""Besides HTTP (Marquez), the OpenLineage client's console transport (the log) and file
transport (one JSON event a line) carry the same events."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from runs.models import LineageEvent
from runs.services import trigger_run
from tests.events.openlineage_support import by_job, enable, send_all, valid
from tests.events.support import drain
from tests.runs.engine.helpers import Engine

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"name": "sales", "tasks": {"load": {"type": "noop", "outlets": ["warehouse.orders"]}}}


@pytest.fixture
def engine(transactional_db: None, settings: Any) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    return Engine(workers=None)


def run(engine: Engine) -> None:
    workflow = engine.apply(SPEC)
    with engine.scope():
        started = trigger_run(actor=engine.actor, workflow=workflow).run
    assert drain(engine, started).state == "success"


def test_the_file_transport_appends_one_event_a_line(
    engine: Engine, settings: Any, tmp_path: Path
) -> None:
    enable(settings, "", transport="file")
    settings.OPENLINEAGE_FILE = str(tmp_path / "lineage.jsonl")
    run(engine)
    assert send_all() == 2
    run(engine)
    assert send_all() == 2
    lines = (tmp_path / "lineage.jsonl").read_text().splitlines()
    events = [valid(json.loads(line)) for line in lines]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"] * 2
    assert by_job(events) == {"sales.load": ["START", "COMPLETE"] * 2}
    assert events[1]["outputs"][0]["name"] == "warehouse.orders"


def test_an_unwritable_file_is_retried(engine: Engine, settings: Any, tmp_path: Path) -> None:
    enable(settings, "", transport="file")
    settings.OPENLINEAGE_FILE = str(tmp_path / "missing" / "lineage.jsonl")
    run(engine)
    assert send_all() == 0
    start = LineageEvent.objects.dangerously_unscoped().get(kind="START")
    assert start.status == "pending"
    assert "lineage.jsonl" in start.last_error


def test_the_console_transport_logs_each_event(
    engine: Engine, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    enable(settings, "", transport="console")
    run(engine)
    with caplog.at_level(logging.INFO, logger="openlineage.client.transport.console"):
        assert send_all() == 2
    logged = [
        valid(json.loads(r.getMessage()))
        for r in caplog.records
        if r.name == "openlineage.client.transport.console"
    ]
    assert [e["eventType"] for e in logged] == ["START", "COMPLETE"]
    assert logged[0]["job"]["namespace"] == "orchestrator/eng"
    assert logged[0]["job"]["name"] == "sales.load"
