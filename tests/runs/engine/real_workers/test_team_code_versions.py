"""Team code through real workers: a package built from a source tree (with a dependency
from the local index) runs as a workflow's python tasks, the second taking the first's
result through a template; version 2 uploaded and applied runs in new runs, while a task of
a run of version 1 cleared and run again still runs version 1's code. The worker builds a
package's environment on first use, in the log of the attempt that waited for it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runs import operations
from runs.models import TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine, attempts_of, run_to_end, states
from tests.runs.engine.real_workers.test_team_code_support import (
    TeamCode,
    attempt_log,
    team_code_worker,
    upload,
    use_team_code,
)
from tests.teamcode_support import archive_tree, wheel_bytes, write_source_tree
from tests.workers import Workers, wait_for
from workflows.models import WorkflowVersion

pytestmark = pytest.mark.slow

SPEC = {
    "name": "etl",
    "code": {"package": "acme-etl"},
    "tasks": {
        "a": {"type": "python", "callable": "acme_etl:greet", "kwargs": {"name": "team"}},
        "b": {
            "type": "python",
            "callable": "acme_etl.measure:measure",
            "depends_on": ["a"],
            "kwargs": {"greeting": "{{ tasks.a.result }}", "times": 2},
        },
    },
}


def source(release: str) -> dict[str, str]:
    """The package at one release: `greet` uses the dependency; `measure` the upstream's
    result; each says which release it is."""
    return {
        "acme_etl/__init__.py": (
            "from tinydep import shout\n\n"
            f"RELEASE = {release!r}\n\n\n"
            "def greet(name):\n"
            "    return {'greeting': shout(f'hello {name}'), 'release': RELEASE}\n"
        ),
        "acme_etl/measure.py": (
            "from acme_etl import RELEASE\n\n\n"
            "def measure(greeting, times):\n"
            "    return {'length': len(greeting['greeting']) * times,\n"
            "            'upstream': greeting['release'], 'release': RELEASE}\n"
        ),
    }


def results(engine: Engine, run: WorkflowRun) -> dict[str, Any]:
    with engine.scope():
        return dict(TaskInstance.objects.filter(run=run).values_list("task_id", "result"))


@pytest.fixture(scope="module")
def team_code(workers: Workers) -> Iterator[TeamCode]:
    with team_code_worker(workers) as team_code:
        yield team_code


@pytest.fixture
def team(engine: Engine, team_code: TeamCode, settings: Any) -> Engine:
    return use_team_code(engine, team_code, settings)


def test_a_rerun_of_a_version_1_run_runs_version_1_while_new_runs_run_version_2(
    team: Engine, tmp_path: Path
) -> None:
    tree = write_source_tree(tmp_path, "acme-etl", "1.0", source("1.0"), requires=["tinydep"])
    v1 = upload(team, "acme-etl-1.0.tar.gz", archive_tree(tree))
    assert (v1.source_kind, v1.index) == (
        "tree",
        {"acme_etl": ["greet"], "acme_etl.measure": ["measure"]},
    )

    first = run_to_end(team, SPEC, timeout=90)

    assert states(team, first) == {"a": "success", "b": "success"}
    assert results(team, first) == {
        "a": {"greeting": "HELLO TEAM", "release": "1.0"},
        "b": {"length": 20, "upstream": "1.0", "release": "1.0"},
    }

    filename, data = wheel_bytes("acme-etl", "2.0", source("2.0"), requires=["tinydep>=0.3"])
    v2 = upload(team, filename, data)
    second = run_to_end(team, SPEC, timeout=90)  # applied again: a new version, pinned to 2.0

    with team.scope():
        pins = dict(
            WorkflowVersion.objects.filter(workflow=first.workflow).values_list("number", "code")
        )
    assert pins == {
        1: {t: {"package": "acme-etl", "version": "1.0", "digest": v1.digest} for t in "ab"},
        2: {t: {"package": "acme-etl", "version": "2.0", "digest": v2.digest} for t in "ab"},
    }
    assert results(team, second) == {
        "a": {"greeting": "HELLO TEAM", "release": "2.0"},
        "b": {"length": 20, "upstream": "2.0", "release": "2.0"},
    }

    assert operations.clear(first.pk, "a", downstream=True) == ["a", "b"]

    def cleared_run_ended() -> bool:
        first.refresh_from_db()
        return first.state in WorkflowRun.FINISHED and len(attempts_of(team, first, "b")) == 2

    wait_for(cleared_run_ended, 90, "the cleared run to end", team.workers)
    assert first.state == "success"
    assert results(team, first) == {
        "a": {"greeting": "HELLO TEAM", "release": "1.0"},
        "b": {"length": 20, "upstream": "1.0", "release": "1.0"},
    }
    assert [a.state for a in attempts_of(team, first, "a")] == ["success", "success"]


def test_the_environment_is_built_in_the_log_of_the_attempt_that_waited_for_it(
    team: Engine,
) -> None:
    files = {
        "built_here/__init__.py": "from tinydep import shout\n\ndef hi():\n    return shout('hi')\n"
    }
    filename, data = wheel_bytes("built-here", "0.1", files, requires=["tinydep"])
    package = upload(team, filename, data)
    spec: dict[str, Any] = {
        "name": "build-log",
        "code": {"package": "built-here"},
        "tasks": {
            "first": {"type": "python", "callable": "built_here:hi"},
            "then": {"type": "python", "callable": "built_here:hi", "depends_on": ["first"]},
        },
    }

    run = run_to_end(team, spec, timeout=90)

    assert states(team, run) == {"first": "success", "then": "success"}
    [first] = attempts_of(team, run, "first")
    log = attempt_log(first)
    label = f"built-here 0.1 (sha256 {package.digest[:8]}…)"
    assert f"building the environment of {label}" in log, log
    assert re.search(r"^built in \d+\.\d\d s$", log, re.MULTILINE), log
    [then] = attempts_of(team, run, "then")
    assert "building the environment" not in attempt_log(then)

    with team.scope():
        again = trigger_run(actor=team.actor, workflow=run.workflow).run
    wait_for(lambda: _ended(again), 60, "the second run to end", team.workers)
    assert "building the environment" not in attempt_log(attempts_of(team, again, "first")[0])


def test_parallel_tasks_on_a_packages_first_run_all_run(team: Engine) -> None:
    """The worker's pool processes start at once, all wanting the environment: one builds
    it, the others wait for the build; none may wait for more (the builder's zygote holds
    the environment's shared lock while it runs: tests/runs/tasktypes/
    test_zygote_environment_waiters.py)."""
    files = {"fan_pkg/__init__.py": "def part(i):\n    return i * i\n"}
    upload(team, *wheel_bytes("fan-pkg", "0.1", files))
    parts = {
        f"p{i}": {"type": "python", "callable": "fan_pkg:part", "kwargs": {"i": i}}
        for i in range(3)
    }
    spec = {"name": "fan", "code": {"package": "fan-pkg"}, "tasks": parts}

    run = run_to_end(team, spec, timeout=30)

    assert states(team, run) == {"p0": "success", "p1": "success", "p2": "success"}
    assert results(team, run) == {"p0": 0, "p1": 1, "p2": 4}


def _ended(run: WorkflowRun) -> bool:
    run.refresh_from_db()
    return run.state in WorkflowRun.FINISHED
