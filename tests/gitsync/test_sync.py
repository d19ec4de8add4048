"""Syncing a git source (gitsync.services.sync_source): a real bare repository and a
working clone that commits and pushes, cloned through file://; never the network. A sync
applies the branch's spec files all or none, records the commit on each new version,
skips a commit synced already, prunes when asked, and keeps its outcome (and git's error,
or every invalid file's) on the source."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from connections.models import Secret
from connections.services import create_secret
from gitsync import tasks
from gitsync.models import GitSource
from gitsync.services import (
    SyncResult,
    create_source,
    queue_due_sources,
    sync_source,
    update_source,
)
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent
from tests.gitsync.repos import Repo, spec_text
from tests.harness import Team, audit_count, new_audit_events
from workflows.models import Workflow, WorkflowVersion
from workflows.services import apply_workflow, parse_spec

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_repositories(settings: Any) -> None:
    settings.GITSYNC_ALLOW_LOCAL = True


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    repo = Repo(tmp_path / "repo")
    repo.write("etl/alpha.yaml", spec_text("alpha"))
    repo.write("etl/beta.yml", spec_text("beta"))
    repo.write("README.md", "not a spec")
    return repo


def a_source(team: Team, repo: Repo, **fields: Any) -> GitSource:
    fields = {"name": "flows", "url": repo.url, **fields}
    with tenant_scope([team.tenant]):
        source, _ = create_source(actor=Actor.cli(), tenant=team.tenant, **fields)
    return source


def sync(source: GitSource, force: bool = False) -> SyncResult:
    source = GitSource.objects.dangerously_unscoped().select_related("tenant").get(pk=source.pk)
    with tenant_scope([source.tenant]):
        actor = Actor.system(name=source.actor_name)
        return sync_source(actor=actor, source=source, force=force)


def live(team: Team) -> dict[str, int]:
    rows = Workflow.objects.dangerously_unscoped().filter(tenant=team.tenant, deleted_at=None)
    return dict(rows.values_list("name", "current_version__number"))


def commits(team: Team) -> dict[tuple[str, int], tuple[str | None, str | None]]:
    versions = WorkflowVersion.objects.dangerously_unscoped().filter(tenant=team.tenant)
    rows = versions.values_list("workflow__name", "number", "source_commit", "source")
    return {(name, number): (commit, source) for name, number, commit, source in rows}


def summary(result: SyncResult) -> list[tuple[str, str | None, str, int | None]]:
    assert result.plan is not None, result.error
    return [(c.workflow, c.path, c.action, c.version) for c in result.plan.changes]


def test_a_sync_applies_the_specs_and_records_the_commit_on_each_version(
    team: Team, repo: Repo
) -> None:
    first = repo.push("two workflows")
    source = a_source(team, repo)
    count = audit_count(team.tenant)

    result = sync(source)

    assert (result.status, result.commit, result.error) == ("ok", first, "")
    assert summary(result) == [
        ("alpha", "etl/alpha.yaml", "created", 1),
        ("beta", "etl/beta.yml", "created", 1),
    ]
    assert commits(team) == {
        ("alpha", 1): (first, "git:flows"),
        ("beta", 1): (first, "git:flows"),
    }
    source.refresh_from_db()
    assert (source.last_commit, source.last_status, source.last_error) == (first, "ok", "")
    assert source.last_synced_at is not None
    assert source.last_changes == [
        {"workflow": "alpha", "path": "etl/alpha.yaml", "action": "created", "version": 1},
        {"workflow": "beta", "path": "etl/beta.yml", "action": "created", "version": 1},
    ]
    events = new_audit_events(team.tenant, count)
    assert [(e.action, e.actor_label, e.source) for e in events] == [
        ("workflow.create", "gitsync:flows", "system"),
        ("workflow.create", "gitsync:flows", "system"),
        ("git_source.sync", "gitsync:flows", "system"),
    ]
    assert events[0].changes["extra"]["source_commit"] == first
    assert events[-1].changes["after"] == {"last_commit": first, "last_status": "ok"}


def test_a_second_push_updates_and_an_unchanged_commit_is_skipped(team: Team, repo: Repo) -> None:
    first = repo.push()
    source = a_source(team, repo)
    sync(source)
    repo.write("etl/alpha.yaml", spec_text("alpha", timeout="5m"))
    second = repo.push("longer timeout")

    result = sync(source)

    assert (result.status, result.commit) == ("ok", second)
    assert summary(result) == [
        ("alpha", "etl/alpha.yaml", "updated", 2),
        ("beta", "etl/beta.yml", "unchanged", 1),
    ]
    assert "+    timeout: 5m" in result.plan.changes[0].diff  # type: ignore[union-attr]
    assert commits(team) == {
        ("alpha", 1): (first, "git:flows"),
        ("alpha", 2): (second, "git:flows"),
        ("beta", 1): (first, "git:flows"),  # unchanged: where it came from stays
    }

    count = audit_count(team.tenant)
    skipped = sync(source)
    assert (skipped.status, skipped.commit, skipped.plan) == ("skipped", second, None)
    assert audit_count(team.tenant) == count
    assert len(commits(team)) == 3

    forced = sync(source, force=True)  # applied again: nothing differs, nothing audited
    assert [c[2] for c in summary(forced)] == ["unchanged", "unchanged"]
    assert audit_count(team.tenant) == count


def test_an_invalid_spec_fails_the_sync_with_file_and_path_and_applies_nothing(
    team: Team, repo: Repo
) -> None:
    good = repo.push()
    source = a_source(team, repo)
    sync(source)
    repo.write("etl/alpha.yaml", spec_text("alpha", timeout="5m"))  # a valid change
    repo.write("etl/gamma.yaml", spec_text("gamma").replace("type: noop", "type: nope"))
    bad = repo.push("a typo")
    versions = commits(team)

    result = sync(source)

    assert (result.status, result.commit, result.plan) == ("failed", bad, None)
    assert [(e["file"], e["path"]) for e in result.errors] == [("etl/gamma.yaml", "tasks.done")]
    assert result.error.splitlines()[0] == "1 of 3 files are invalid; nothing was applied"
    assert result.error.splitlines()[1].startswith(
        "etl/gamma.yaml: tasks.done: unknown task type 'nope'"
    )
    assert commits(team) == versions  # not even alpha's valid change
    source.refresh_from_db()
    assert (source.last_commit, source.last_status) == (bad, "failed")
    assert source.last_error == result.error
    syncs = AuditEvent.objects.dangerously_unscoped().filter(action="git_source.sync")
    [event] = syncs.filter(tenant=team.tenant).order_by("seq")[1:]
    assert event.changes["after"]["last_status"] == "failed"

    count = audit_count(team.tenant)
    again = sync(source)  # a failed commit is tried again, not skipped; the same outcome
    assert again.status == "failed"
    assert audit_count(team.tenant) == count  # is not audited twice

    repo.write("etl/gamma.yaml", spec_text("gamma"))
    fixed = repo.push("fixed")
    result = sync(source)
    assert (result.status, result.commit) == ("ok", fixed)
    assert live(team) == {"alpha": 2, "beta": 1, "gamma": 1}
    assert good != fixed


def test_prune_deletes_the_workflows_no_file_defines_only_when_asked(
    team: Team, repo: Repo
) -> None:
    repo.push()
    with tenant_scope([team.tenant]):  # a workflow applied by hand, not from git
        data = parse_spec(spec_text("manual"), team.tenant)
        apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data)
    keeping, pruning = a_source(team, repo), a_source(team, repo, name="strict", prune=True)
    sync(keeping)
    repo.remove("etl/beta.yml")
    repo.push("beta retired")

    assert [c[2] for c in summary(sync(keeping))] == ["unchanged"]
    assert live(team) == {"alpha": 1, "beta": 1, "manual": 1}

    result = sync(pruning)
    assert summary(result) == [
        ("alpha", "etl/alpha.yaml", "unchanged", 1),
        ("beta", None, "pruned", None),
        ("manual", None, "pruned", None),  # prune: the repository is the whole truth
    ]
    assert live(team) == {"alpha": 1}


def test_only_the_files_under_the_path_are_read(team: Team, repo: Repo) -> None:
    repo.write("prod/deep/gamma.json", '{"name": "gamma", "tasks": {"a": {"type": "noop"}}}')
    repo.push()
    result = sync(a_source(team, repo, path="prod"))
    assert summary(result) == [("gamma", "prod/deep/gamma.json", "created", 1)]


def test_a_path_without_specs_fails_and_prunes_nothing(team: Team, repo: Repo) -> None:
    repo.write("docs/index.md", "# docs")
    repo.push()
    sync(a_source(team, repo))
    source = a_source(team, repo, name="wrong-path", path="docs", prune=True)
    result = sync(source)
    assert result.status == "failed"
    assert result.error.startswith("files: no spec files (*.yaml, *.yml, *.json) under 'docs'")
    missing = sync(a_source(team, repo, name="no-folder", path="nowhere", prune=True))
    assert "the branch has no folder 'nowhere'" in missing.error
    assert live(team) == {"alpha": 1, "beta": 1}


def test_a_symlink_in_the_repository_is_read_as_the_text_it_holds(team: Team, repo: Repo) -> None:
    (repo.work / "etl" / "passwd.yaml").symlink_to("/etc/passwd")
    repo.push("a link out of the checkout")
    result = sync(a_source(team, repo))
    assert result.status == "failed"
    assert [(e["file"], e["path"]) for e in result.errors] == [("etl/passwd.yaml", "")]
    assert "root:" not in result.error
    assert live(team) == {}


def test_a_file_over_the_tenants_spec_size_fails_the_sync_unread(team: Team, repo: Repo) -> None:
    team.tenant.quotas = {**team.tenant.quotas, "max_spec_bytes": 200}
    team.tenant.save()
    repo.write("etl/big.yaml", spec_text("big") + "#" * 300)
    repo.push()
    result = sync(a_source(team, repo))
    assert result.status == "failed"
    [error] = result.errors
    assert (error["file"], error["path"]) == ("etl/big.yaml", "")
    assert "this tenant's limit is 200" in error["message"]


def test_what_git_says_when_it_fails_is_recorded(team: Team, repo: Repo, tmp_path: Path) -> None:
    repo.push()
    result = sync(a_source(team, repo, branch="release"))
    assert result.status == "failed"
    assert result.commit is None
    assert result.error.startswith("git clone failed (exit 128): ")
    assert "release" in result.error
    gone = sync(a_source(team, repo, name="gone", url=f"file://{tmp_path}/missing.git"))
    assert "does not appear to be a git repository" in gone.error
    source = GitSource.objects.dangerously_unscoped().get(name="gone")
    assert (source.last_status, source.last_commit) == ("failed", "")


def test_a_local_repository_is_refused_without_the_setting(
    team: Team, repo: Repo, settings: Any
) -> None:
    repo.push()
    source = a_source(team, repo)
    settings.GITSYNC_ALLOW_LOCAL = False
    result = sync(source)
    assert result.status == "failed"
    assert "unless the platform sets GITSYNC_ALLOW_LOCAL=1" in result.error
    assert live(team) == {}


def test_a_private_host_is_refused_unless_allowed(team: Team) -> None:
    with tenant_scope([team.tenant]):
        source, _ = create_source(
            actor=Actor.cli(), tenant=team.tenant, name="lan", url="https://10.1.2.3/acme/flows"
        )
    result = sync(source)
    assert result.status == "failed"
    assert "10.1.2.3 is a private address" in result.error
    assert "GITSYNC_ALLOWED_HOSTS" in result.error
    assert "git_allowed_hosts" in result.error


FAKE_SSH = """#!/bin/sh
# ssh for the tests (no sshd here): records how git ran it and the deploy key it was
# given, then runs the remote command (git-upload-pack '<path>') on this machine.
log="{log}"
key=""
prev=""
for arg in "$@"; do
  if [ "$prev" = "-i" ]; then key="$arg"; fi
  prev="$arg"
done
printf '%s\\n' "$@" > "$log"
stat -c '%a' "$key" >> "$log"
cat "$key" >> "$log"
eval "$prev"
"""


def documented_key_pair(folder: Path) -> str:
    """The deploy key docs/gitops.md tells teams to make, made by its own command: the
    private key's text."""
    text = (Path(django_settings.BASE_DIR) / "docs" / "gitops.md").read_text()
    [command] = [line for line in text.splitlines() if line.startswith("ssh-keygen ")]
    done = subprocess.run(command, shell=True, cwd=folder, capture_output=True, timeout=30)  # noqa: S602 (the docs' own line)
    assert done.returncode == 0, done.stderr
    assert (folder / "flows_deploy_key.pub").read_text().startswith("ssh-ed25519 ")
    return (folder / "flows_deploy_key").read_text().strip()


def test_a_deploy_key_goes_to_ssh_alone_in_a_0600_file(
    team: Team, repo: Repo, tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "ssh.log"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text(FAKE_SSH.format(log=log))
    ssh.chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    settings.GITSYNC_ALLOWED_HOSTS = ["127.0.0.1"]
    key = documented_key_pair(tmp_path)
    with tenant_scope([team.tenant]):
        create_secret(actor=Actor.cli(), tenant=team.tenant, name="deploy", value=key)
    commit = repo.push()
    source = a_source(team, repo, url=f"git@127.0.0.1:{repo.bare}", deploy_key="deploy")

    result = sync(source)

    assert (result.status, result.commit) == ("ok", commit), result.error
    said = log.read_text().splitlines()
    assert "IdentitiesOnly=yes" in said
    assert "BatchMode=yes" in said
    assert said[said.index("-i") + 1].endswith("/deploy_key")
    lines = key.splitlines()
    assert said[-len(lines) - 1 :] == ["600", *lines]
    assert not Path(said[said.index("-i") + 1]).exists()  # removed with the clone
    assert "git@127.0.0.1" in said


FAILING_SSH = """#!/bin/sh
prev=""
key=""
for arg in "$@"; do
  if [ "$prev" = "-i" ]; then key="$arg"; fi
  prev="$arg"
done
echo "Load key \\"$key\\": invalid format" >&2
exit 255
"""


def test_git_errors_never_show_the_deploy_keys_path(
    team: Team, repo: Repo, tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text(FAILING_SSH)
    ssh.chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    settings.GITSYNC_ALLOWED_HOSTS = ["127.0.0.1"]
    with tenant_scope([team.tenant]):
        create_secret(actor=Actor.cli(), tenant=team.tenant, name="deploy", value="not a key")
    source = a_source(team, repo, url=f"ssh://git@127.0.0.1/{repo.bare}", deploy_key="deploy")
    result = sync(source)
    assert result.status == "failed"
    assert "<tmp>/deploy_key" in result.error
    assert "/gitsync-" not in result.error


def test_a_missing_deploy_key_secret_fails_the_sync(team: Team, repo: Repo) -> None:
    with tenant_scope([team.tenant]):
        create_secret(actor=Actor.cli(), tenant=team.tenant, name="deploy", value="k")
    source = a_source(team, repo, url="git@192.0.2.1:acme/flows.git", deploy_key="deploy")
    Secret.objects.dangerously_unscoped().filter(tenant=team.tenant).delete()
    result = sync(source)
    assert result.status == "failed"
    assert "the deploy key's secret 'deploy' does not exist" in result.error


# --- the schedule and the Celery tasks -------------------------------------------------------


def test_the_schedule_queues_a_source_once_per_interval(
    team: Team, repo: Repo, django_capture_on_commit_callbacks: Any
) -> None:
    repo.push()
    every = a_source(team, repo, interval_seconds=300)
    a_source(team, repo, name="on-push-only")
    now = timezone.now()

    with django_capture_on_commit_callbacks() as queued:
        assert queue_due_sources(now) == 1  # never synced: due
        assert queue_due_sources(now + dt.timedelta(seconds=60)) == 0  # queued already
    assert sum(1 for c in queued if c.__qualname__.startswith("queue_sync")) == 1

    assert tasks.sync(every.pk) == "ok"  # what the worker runs
    every.refresh_from_db()
    assert every.sync_queued_at is None
    synced = every.last_synced_at
    assert synced is not None
    assert queue_due_sources(synced + dt.timedelta(seconds=280)) == 0  # not due yet
    # Due at the tick an interval after the one that queued it, though the sync ended a
    # few seconds after that tick (a minute's interval must not become two).
    assert queue_due_sources(synced + dt.timedelta(seconds=297)) == 1
    assert tasks.sync(every.pk) == "skipped"  # the same commit
    assert live(team) == {"alpha": 1, "beta": 1}


def test_the_schedules_tick_is_a_periodic_task_on_the_housekeeping_queue(db: None) -> None:
    tick = PeriodicTask.objects.get(name="gitsync.sync_due")
    assert (tick.task, tick.queue, tick.interval.every) == ("gitsync.sync_due", "housekeeping", 60)  # type: ignore[union-attr]
    assert tasks.sync_due() == 0


def test_a_sync_queued_for_a_deleted_source_does_nothing(team: Team, repo: Repo) -> None:
    source = a_source(team, repo)
    GitSource.objects.dangerously_unscoped().filter(pk=source.pk).delete()
    assert tasks.sync(source.pk) == "gone"


def test_a_new_path_is_applied_at_the_next_sync_even_at_the_same_commit(
    team: Team, repo: Repo
) -> None:
    repo.write("prod/gamma.yaml", spec_text("gamma"))
    repo.push()
    source = a_source(team, repo, path="etl")
    assert sync(source).status == "ok"
    with tenant_scope([team.tenant]):
        update_source(actor=Actor.cli(), source=source, path="prod")
    result = sync(source)
    assert summary(result) == [("gamma", "prod/gamma.yaml", "created", 1)]


def test_staff_see_every_tenants_sources_in_the_admin(team: Team, repo: Repo) -> None:
    source = a_source(team, repo)
    sync(source)
    staff = User.objects.create_superuser("staff", password=None)
    client = Client()
    client.force_login(staff)
    listing = client.get("/admin/gitsync/gitsource/")
    assert listing.status_code == 200
    assert "flows" in listing.text
    page = client.get(f"/admin/gitsync/gitsource/{source.pk}/change/")
    assert page.status_code == 200
    assert source.webhook_secret_prefix in page.text
    assert "webhook_secret_encrypted" not in page.text
