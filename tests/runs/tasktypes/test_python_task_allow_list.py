"""The worker checks a python task's callable against PYTHON_TASK_MODULES again before it
runs it, by the rule the apply used: a workflow applied before the setting was narrowed
fails without retries, saying which modules would be accepted."""

from __future__ import annotations

from typing import Any

import pytest

from runs import worker
from runs.models import TaskAttempt, TaskInstance
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine


@pytest.fixture
def engine(transactional_db: None, settings: Any) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    settings.TASK_SANDBOX = "off"  # the refusal comes before any process is started
    return Engine(workers=None)


def test_a_callable_no_longer_allowed_fails_at_run_time(engine: Engine, settings: Any) -> None:
    workflow = engine.apply(
        {"name": "py", "tasks": {"p": {"type": "python", "callable": "runs.library:echo"}}}
    )
    settings.PYTHON_TASK_MODULES = ["reports"]
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow, params={}).run
        ti = TaskInstance.objects.get(run=run)

    assert worker._execute_one(ti.pk, ti.try_number) == "failed"

    with engine.scope():
        attempt = TaskAttempt.objects.get(task_instance=ti)
    assert "'runs.library' is not allowed for python tasks" in attempt.error
    assert "accepted: functions of these modules and their submodules: reports" in attempt.error
