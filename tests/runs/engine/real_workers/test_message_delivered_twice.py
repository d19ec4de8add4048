"""The same message delivered twice runs the try once."""

from __future__ import annotations

from pathlib import Path

import pytest

from runs.models import TaskInstance, WorkflowRun
from runs.services import trigger_run
from runs.tasks import execute_task_instance
from tests.runs.engine.helpers import Engine, attempts_of, states
from tests.workers import share_with_tasks, wait_for

pytestmark = pytest.mark.slow


def test_it_runs_a_try_once_when_its_message_comes_three_times(
    engine: Engine, tmp_path: Path
) -> None:
    share_with_tasks(engine.tenant, tmp_path)
    marks = tmp_path / "ran"
    workflow = engine.apply(
        {
            "name": "once",
            "tasks": {
                "t": {"type": "shell", "command": ["sh", "-c", f"sleep 1; echo x >> {marks}"]}
            },
        }
    )
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
        ti = TaskInstance.objects.get(run=run, task_id="t")
    execute_task_instance.delay(ti.pk, ti.try_number)  # two more copies of the message
    execute_task_instance.delay(ti.pk, ti.try_number)

    def finished() -> bool:
        run.refresh_from_db()
        return run.state in WorkflowRun.FINISHED

    wait_for(finished, 30, "the run", engine.workers)
    assert states(engine, run) == {"t": "success"}
    assert marks.read_text() == "x\n"
    assert len(attempts_of(engine, run, "t")) == 1
