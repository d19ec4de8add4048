"""`manage.py validate` (CI, no database) and `manage.py apply` (GitOps: a folder of specs
synced to a tenant, all or nothing, with --dry-run and --prune)."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from orchestrator.models import AuditEvent
from tests.harness import Team, audit_count, make_team, new_audit_events, tenant_state
from workflows.models import Workflow, WorkflowVersion

EXAMPLES = Path(settings.BASE_DIR) / "examples"


def spec_text(name: str, timeout: str = "1m") -> str:
    return f"""\
name: {name}
tasks:
  extract: {{type: shell, command: [echo, "{{{{ ds }}}}"], timeout: {timeout}}}
  build: {{type: python, callable: "runs.library:echo", depends_on: [extract]}}
  done: {{type: noop, depends_on: [build]}}
"""


def write(folder: Path, name: str, text: str | None = None, suffix: str = ".yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{suffix}"
    path.write_text(text if text is not None else spec_text(name))
    return path


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_failing(*args: str) -> tuple[str, str, str]:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as caught:
        call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue(), str(caught.value)


def live(team: Team) -> dict[str, int]:
    """Live workflow name -> its current version number."""
    rows = Workflow.objects.dangerously_unscoped().filter(tenant=team.tenant, deleted_at=None)
    return dict(rows.values_list("name", "current_version__number"))


def version_count(team: Team) -> int:
    return WorkflowVersion.objects.dangerously_unscoped().filter(tenant=team.tenant).count()


@pytest.fixture
def acme(db: None) -> Team:
    return make_team("acme", roles=[])


# --- validate -----------------------------------------------------------------------------


def test_it_validates_every_example() -> None:
    out, _ = run("validate", str(EXAMPLES))
    assert sorted(out.splitlines()) == [
        f"{EXAMPLES / 'etl-daily-sales.yaml'}: OK (etl-daily-sales, 5 tasks)",
        f"{EXAMPLES / 'fan-in-report.yaml'}: OK (fan-in-report, 7 tasks)",
        f"{EXAMPLES / 'hourly-cleanup.yaml'}: OK (hourly-cleanup, 2 tasks)",
        f"{EXAMPLES / 'parametrised-export.yaml'}: OK (parametrised-export, 2 tasks)",
        f"{EXAMPLES / 'per-file-load.yaml'}: OK (per-file-load, 3 tasks)",
        f"{EXAMPLES / 'sales-forecast.yaml'}: OK (sales-forecast, 1 tasks)",
    ]


def test_it_validates_a_folder_of_runnable_specs(tmp_path: Path) -> None:
    write(tmp_path, "alpha")
    write(tmp_path / "nested", "beta", suffix=".yml")
    write(tmp_path, "gamma", '{"name": "gamma", "tasks": {"a": {"type": "noop"}}}', ".json")
    (tmp_path / "README.md").write_text("not a spec")
    out, err = run("validate", str(tmp_path))
    assert out.splitlines() == [
        f"{tmp_path / 'alpha.yaml'}: OK (alpha, 3 tasks)",
        f"{tmp_path / 'gamma.json'}: OK (gamma, 1 tasks)",
        f"{tmp_path / 'nested' / 'beta.yml'}: OK (beta, 3 tasks)",
    ]
    assert err == ""


def test_it_reports_each_invalid_file_with_its_paths(tmp_path: Path) -> None:
    write(tmp_path, "alpha")
    write(tmp_path, "broken", spec_text("broken", timeout="5x").replace("[build]", "[built]"))
    write(tmp_path, "copy", spec_text("alpha"))  # the same name as alpha.yaml
    out, err, message = run_failing("validate", str(tmp_path))
    assert message == "3 of 3 files are invalid"
    assert out == ""
    assert err.splitlines() == [
        f"{tmp_path / 'alpha.yaml'}: name: workflow 'alpha' is also defined in "
        f"{tmp_path / 'copy.yaml'}",
        f"{tmp_path / 'broken.yaml'}: tasks.extract.timeout: '5x' is not a duration: expected "
        "a number of seconds or a duration like 30s, 10m, 1h30m, 2d",
        f"{tmp_path / 'broken.yaml'}: tasks.done.depends_on[0]: unknown task 'built'; "
        "tasks: build, done, extract",
        f"{tmp_path / 'copy.yaml'}: name: workflow 'alpha' is also defined in "
        f"{tmp_path / 'alpha.yaml'}",
    ]


def test_it_refuses_a_missing_path_or_an_empty_folder(tmp_path: Path) -> None:
    assert run_failing("validate", str(tmp_path / "nope"))[2].endswith("no such file or folder")
    assert "no spec files" in run_failing("validate", str(tmp_path))[2]


def test_it_validates_without_a_database(tmp_path: Path) -> None:
    write(tmp_path, "alpha")
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/does_not_exist",
        "DJANGO_SETTINGS_MODULE": "orchestrator.settings",
    }
    manage = str(Path(settings.BASE_DIR) / "manage.py")
    done = subprocess.run(
        [sys.executable, manage, "validate", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"{tmp_path / 'alpha.yaml'}: OK (alpha, 3 tasks)\n"


# --- apply --------------------------------------------------------------------------------


def test_it_creates_then_leaves_unchanged_then_adds_a_version(acme: Team, tmp_path: Path) -> None:
    write(tmp_path, "alpha")
    write(tmp_path, "beta")

    out, _ = run("apply", str(tmp_path), "--tenant", "acme")
    assert out.splitlines() == ["alpha: created (version 1)", "beta: created (version 1)"]
    assert live(acme) == {"alpha": 1, "beta": 1}
    events = new_audit_events(acme.tenant, 0)
    assert [(e.action, e.source) for e in events[-2:]] == [
        ("workflow.create", "cli"),
        ("workflow.create", "cli"),
    ]

    before = tenant_state(acme.tenant)
    out, _ = run("apply", str(tmp_path), "--tenant", "acme")
    assert out.splitlines() == ["alpha: unchanged (version 1)", "beta: unchanged (version 1)"]
    assert tenant_state(acme.tenant) == before

    write(tmp_path, "alpha", spec_text("alpha", timeout="5m"))
    count = audit_count(acme.tenant)
    out, _ = run("apply", str(tmp_path), "--tenant", "acme")
    assert out.splitlines() == ["alpha: new version 2", "beta: unchanged (version 1)"]
    assert live(acme) == {"alpha": 2, "beta": 1}
    assert version_count(acme) == 3
    assert [e.action for e in new_audit_events(acme.tenant, count)] == ["workflow.update"]


def test_it_changes_nothing_on_a_dry_run_but_prints_the_plan(acme: Team, tmp_path: Path) -> None:
    write(tmp_path, "alpha")
    before = tenant_state(acme.tenant)
    out, _ = run("apply", str(tmp_path), "--tenant", "acme", "--dry-run")
    assert out.splitlines() == ["alpha: would be created (version 1)"]
    assert tenant_state(acme.tenant) == before

    run("apply", str(tmp_path), "--tenant", "acme")
    write(tmp_path, "alpha", spec_text("alpha", timeout="5m"))
    write(tmp_path, "beta")
    before = tenant_state(acme.tenant)
    out, _ = run("apply", str(tmp_path), "--tenant", "acme", "--dry-run")
    assert out.splitlines() == [
        "alpha: would be new version 2",
        "beta: would be created (version 1)",
    ]
    assert tenant_state(acme.tenant) == before
    assert live(acme) == {"alpha": 1}


def test_it_prunes_workflows_no_file_defines(acme: Team, tmp_path: Path) -> None:
    for name in ("alpha", "beta", "gamma"):
        write(tmp_path, name)
    run("apply", str(tmp_path), "--tenant", "acme")
    (tmp_path / "beta.yaml").unlink()
    (tmp_path / "gamma.yaml").unlink()

    before = tenant_state(acme.tenant)
    out, _ = run("apply", str(tmp_path), "--tenant", "acme", "--prune", "--dry-run")
    assert out.splitlines() == [
        "alpha: unchanged (version 1)",
        "beta: would be pruned",
        "gamma: would be pruned",
    ]
    assert tenant_state(acme.tenant) == before

    out, _ = run("apply", str(tmp_path), "--tenant", "acme")  # without --prune: kept
    assert live(acme) == {"alpha": 1, "beta": 1, "gamma": 1}

    count = audit_count(acme.tenant)
    out, _ = run("apply", str(tmp_path), "--tenant", "acme", "--prune")
    assert out.splitlines() == ["alpha: unchanged (version 1)", "beta: pruned", "gamma: pruned"]
    assert live(acme) == {"alpha": 1}
    assert [e.action for e in new_audit_events(acme.tenant, count)] == ["workflow.delete"] * 2
    assert version_count(acme) == 3  # pruning keeps the versions


def test_it_applies_nothing_when_any_file_is_invalid(acme: Team, tmp_path: Path) -> None:
    write(tmp_path, "alpha")
    run("apply", str(tmp_path), "--tenant", "acme")
    write(tmp_path, "alpha", spec_text("alpha", timeout="5m"))  # a valid change
    write(tmp_path, "beta")  # a valid new workflow
    write(tmp_path, "gamma", spec_text("gamma").replace("type: noop", "type: nope"))
    before = tenant_state(acme.tenant)

    out, err, message = run_failing("apply", str(tmp_path), "--tenant", "acme", "--prune")

    assert message == "1 of 3 files are invalid; nothing was applied"
    assert out == ""
    assert err.startswith(f"{tmp_path / 'gamma.yaml'}: tasks.done: unknown task type 'nope'")
    assert tenant_state(acme.tenant) == before
    assert live(acme) == {"alpha": 1}


def test_it_applies_the_tenants_policy(acme: Team, tmp_path: Path) -> None:
    acme.tenant.policy = {"allowed_task_types": ["noop", "python"]}
    acme.tenant.save()
    write(tmp_path, "alpha")
    before = tenant_state(acme.tenant)
    _, err, _ = run_failing("apply", str(tmp_path), "--tenant", "acme")
    assert err.splitlines() == [
        f"{tmp_path / 'alpha.yaml'}: tasks.extract.type: task type 'shell' is not allowed in "
        "this tenant (allowed: noop, python)"
    ]
    assert tenant_state(acme.tenant) == before


def test_it_refuses_an_unknown_tenant(db: None, tmp_path: Path) -> None:
    write(tmp_path, "alpha")
    assert run_failing("apply", str(tmp_path), "--tenant", "nope")[2] == "no tenant 'nope'"
    assert not Workflow.objects.dangerously_unscoped().exists()
    assert not AuditEvent.objects.dangerously_unscoped().exists()
