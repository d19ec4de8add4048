"""`orc validate` checks spec files offline with the server's own validation: for broken
specs of every kind it gives the errors the server answers when the spec is sent to it
(for a tenant with the default quotas), prints the same lines as `manage.py validate`,
and exits 2."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import get_args

import httpx
import pytest
from django.core.management import CommandError, call_command

from orc.cli.specs import (
    MAX_SPEC_BYTES_DEFAULT,
    MAX_TASKS_DEFAULT,
    PYTHON_MODULES_DEFAULT,
    TASK_LIMITS_DEFAULT,
)
from tests.orc.support import OrcServer, orc, write_specs
from workflows.spec import WaitForDataset, WaitForHttp, WaitForSql, WaitForTime
from workflows.task_types import TASK_TYPES, runnable_kinds, runnable_types

pytestmark = pytest.mark.slow

BROKEN = {
    "cycle.yaml": (
        "name: cycle\ntasks:\n  a: {type: noop, depends_on: [b]}\n"
        "  b: {type: noop, depends_on: [a]}\n"
    ),
    "unknown-dependency.yaml": "name: dep\ntasks:\n  load: {type: noop, depends_on: [extract]}\n",
    "unknown-type.yaml": "name: kind\ntasks:\n  a: {type: teleport}\n",
    "bad-cron.yaml": "name: cron\nschedule: {cron: '61 * * * *'}\ntasks:\n  a: {type: noop}\n",
    "bad-fields.yaml": (
        "name: Not A Slug\ntasks:\n  a: {type: shell, command: echo, timeout: 5 parsecs}\n"
    ),
    "template.yaml": (
        "name: tpl\ntasks:\n  a: {type: shell, command: [echo, '{{ params.nope }}', '{{ ds']}\n"
    ),
    "callable.yaml": "name: py\ntasks:\n  a: {type: python, callable: 'os:system'}\n",
    "nested/one.yml": "name: twice\ntasks:\n  a: {type: noop}\n",
    "nested/two.json": '{"name": "twice", "tasks": {"b": {"type": "noop"}}}',
    "not-yaml.yaml": "name: [unclosed\n",
    "a-list.yaml": "- name: x\n",
    "duplicate-key.yaml": "name: dup\nname: dup2\ntasks:\n  a: {type: noop}\n",
    "empty.yaml": "",
    "fine.yaml": "name: fine\ntasks:\n  a: {type: noop}\n  b: {type: noop, depends_on: [a]}\n",
}
# What only a tenant's quotas and policy refuse (manage.py validate knows no tenant).
TENANT_LIMITED = {
    "too-many-tasks.yaml": "name: wide\ntasks:\n"
    + "".join(f"  t{i}: {{type: noop}}\n" for i in range(501)),
    "too-big.yaml": f"name: big\ndescription: {'x' * 270_000}\ntasks:\n  a: {{type: noop}}\n",
    "alias-bomb.yaml": "name: bomb\ntasks:\n  a: {type: noop}\n"
    + "x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]\n" for i in range(1, 6)),
    "rlimits.yaml": (
        "name: greedy\ntasks:\n  a: {type: shell, command: ['true'], rlimits: {memory_mb: 99999}}\n"
    ),
}


def manage_validate(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """`manage.py validate specs` in `cwd` (in this process: it needs no database): its
    stdout, and its stderr with the CommandError a shell would show last."""
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.chdir(cwd)
    try:
        call_command("validate", "specs", stdout=out, stderr=err)
    except CommandError as exc:
        err.write(f"CommandError: {exc}\n")
    return out.getvalue(), err.getvalue()


def user_env(home: Path) -> dict[str, str]:
    """A shell with the platform's PYTHON_TASK_MODULES, if this test run has one."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LC_ALL": "C.UTF-8"}
    if "PYTHON_TASK_MODULES" in os.environ:
        env["PYTHON_TASK_MODULES"] = os.environ["PYTHON_TASK_MODULES"]
    return env


def test_it_says_what_manage_py_validate_says(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_specs(tmp_path / "specs", BROKEN)
    ours = orc("validate", "specs", env=user_env(home), cwd=tmp_path)
    out, err = manage_validate(tmp_path, monkeypatch)
    assert ours.code == 2
    assert ours.out == out == "specs/fine.yaml: OK (fine, 2 tasks)\n"
    *their_lines, their_summary = err.splitlines()
    *our_lines, our_summary = ours.err.splitlines()
    assert our_lines == their_lines
    assert their_summary == "CommandError: 13 of 14 files are invalid"
    assert our_summary == "error: 13 of 14 files are invalid"
    # Every broken file is named, with the path of what is wrong in it.
    assert {line.split(": ", 1)[0] for line in our_lines} == {
        f"specs/{name}" for name in BROKEN if name != "fine.yaml"
    }
    assert (
        "specs/unknown-dependency.yaml: tasks.load.depends_on[0]: unknown task 'extract'; "
        "tasks: load"
    ) in our_lines


def test_json_output_lists_each_file_with_its_errors(tmp_path: Path, home: Path) -> None:
    chosen = ("fine.yaml", "unknown-dependency.yaml")
    write_specs(tmp_path / "specs", {name: BROKEN[name] for name in chosen})
    env = user_env(home)
    done = orc("validate", "specs", "-o", "json", env=env, cwd=tmp_path)
    assert done.code == 2
    assert json.loads(done.out) == [
        {"file": "specs/fine.yaml", "valid": True, "workflow": "fine", "errors": []},
        {
            "file": "specs/unknown-dependency.yaml",
            "valid": False,
            "workflow": None,
            "errors": [
                {
                    "path": "tasks.load.depends_on[0]",
                    "message": "unknown task 'extract'; tasks: load",
                }
            ],
        },
    ]
    assert done.err == "error: 1 of 2 files are invalid\n"
    assert orc("validate", "specs/fine.yaml", env=env, cwd=tmp_path).code == 0
    narrow = orc("validate", "specs/fine.yaml", "--max-tasks", "1", env=env, cwd=tmp_path)
    assert (narrow.code, narrow.err.splitlines()[0]) == (
        2,
        "specs/fine.yaml: tasks: 2 tasks; this tenant's limit is 1",
    )
    missing = orc("validate", "nowhere", env=env, cwd=tmp_path)
    assert (missing.code, missing.err) == (2, "error: nowhere: no such file or folder\n")


def test_it_gives_the_errors_the_server_answers(
    server: OrcServer, tmp_path: Path, home: Path
) -> None:
    """Each file sent to the server as a workflow: the same paths, the same messages."""
    specs = {**BROKEN, **TENANT_LIMITED}
    write_specs(tmp_path / "specs", specs)
    done = orc("validate", "specs", "-o", "json", env=user_env(home), cwd=tmp_path)
    ours = {item["file"]: item["errors"] for item in json.loads(done.out)}
    headers = {
        "Authorization": f"Bearer {server.tokens['dev:owner']}",
        "Content-Type": "application/yaml",
    }
    compared = 0
    for name, text in specs.items():
        if name.startswith("nested/") or name == "fine.yaml":
            continue  # the same name in two files: an error of a set of files, not of one
        answer = httpx.post(
            f"{server.base}/api/v1/tenants/dev/workflows/", content=text, headers=headers
        )
        assert answer.status_code == 400, (name, answer.text)
        assert ours[f"specs/{name}"] == answer.json()["errors"], name
        compared += 1
    assert compared == len(specs) - 3


def test_offline_it_assumes_what_the_server_can_run() -> None:
    """orc validate takes every task type (and wait_for kind) as runnable, and the limits
    of a tenant with the platform's defaults: what a server of this version does."""
    from django.conf import settings

    assert settings.DEFAULT_TENANT_QUOTAS["max_spec_bytes"] == MAX_SPEC_BYTES_DEFAULT
    assert settings.DEFAULT_TENANT_QUOTAS["max_tasks_per_workflow"] == MAX_TASKS_DEFAULT
    if not any(name.startswith("TASK_DEFAULT_") for name in os.environ):
        assert settings.TASK_LIMITS_DEFAULT == TASK_LIMITS_DEFAULT

    assert runnable_types() == list(TASK_TYPES)
    models = (WaitForDataset, WaitForHttp, WaitForSql, WaitForTime)
    kinds = {get_args(model.model_fields["kind"].annotation)[0] for model in models}
    assert set(runnable_kinds("wait_for") or kinds) == kinds
    if "PYTHON_TASK_MODULES" not in os.environ:
        assert settings.PYTHON_TASK_MODULES == [PYTHON_MODULES_DEFAULT]
