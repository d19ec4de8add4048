"""Every change to workflows: apply (create or new version), apply a set of spec files at
once (GitOps), delete, pause, unpause. Transactional, authorised by the policy, audited in
the same transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from orchestrator import audit
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Conflict, Invalid
from orchestrator.models import Tenant
from orchestrator.policy import authorize
from orchestrator.tenancy import task_limits, tenant_quota
from workflows import references, scheduling
from workflows.code import resolve_code
from workflows.models import Workflow, WorkflowVersion
from workflows.selectors import live_workflows
from workflows.spec import WorkflowSpec
from workflows.specfiles import FileError, InvalidFiles, load_documents
from workflows.validation import (
    Limits,
    ValidSpec,
    canonical_json,
    parse_document,
    validate_spec,
)

__all__ = [
    "APPLY_CHECKS",
    "DELETE_GUARDS",
    "ApplyPlan",
    "ApplyResult",
    "PlannedChange",
    "apply_workflow",
    "apply_workflows",
    "check_workflow",
    "delete_workflow",
    "limits_for",
    "parse_spec",
    "set_paused",
    "spec_diff",
    "spec_yaml",
]

# Checks run before a workflow is deleted; each returns why not (e.g. "3 runs are active"),
# or None. The engine registers its own, so this app needs no knowledge of runs.
DELETE_GUARDS: list[Callable[[Workflow], str | None]] = []

# Checks of what a spec names in the tenant (e.g. notify.channels exist), run at apply
# after the spec itself is valid; each returns (path, message) errors. Registered by the
# apps that own those names (notifications), so this app needs no knowledge of them.
APPLY_CHECKS: list[Callable[[Tenant, WorkflowSpec], list[tuple[str, str]]]] = []


@dataclass(frozen=True)
class ApplyResult:
    workflow: Workflow
    version: WorkflowVersion
    created: bool  # a new workflow
    changed: bool  # a new version (False: identical to the current one, nothing stored)


@dataclass(frozen=True)
class PlannedChange:
    """What an apply of spec files did (or, in a dry run, would do) to one workflow."""

    workflow: str
    path: str | None  # the file that defines it; None for a pruned workflow
    action: str  # created | updated | unchanged | pruned
    version: int | None  # its current version afterwards; None when pruned
    # Unified diff of the canonical YAML from the live version to the new one; for a new
    # workflow the whole spec as added lines; empty when unchanged or pruned.
    diff: str


@dataclass(frozen=True)
class ApplyPlan:
    dry_run: bool
    changes: list[PlannedChange]

    def as_dict(self) -> dict[str, Any]:
        """The JSON form REST and GraphQL answer with (and workflows.specfiles.format_plan
        reads)."""
        return {"dry_run": self.dry_run, "changes": [dataclasses.asdict(c) for c in self.changes]}


COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


def limits_for(tenant: Tenant) -> Limits:
    allowed = tenant.policy.get("allowed_task_types")
    return Limits(
        allowed_task_types=list(allowed) if allowed is not None else None,
        max_tasks=tenant_quota(tenant.quotas, "max_tasks_per_workflow"),
        max_spec_bytes=tenant_quota(tenant.quotas, "max_spec_bytes"),
        task_limits=task_limits(tenant.policy),
        python_modules=settings.PYTHON_TASK_MODULES,
    )


def parse_spec(text: str | bytes, tenant: Tenant) -> Any:
    """Parse YAML or JSON text within the tenant's size limit."""
    return parse_document(text, max_bytes=limits_for(tenant).max_spec_bytes)


def check_workflow(
    *, actor: Actor, tenant: Tenant, data: Any, name: str | None = None
) -> ApplyResult:
    """Everything apply_workflow checks, and nothing kept: the apply runs and is rolled
    back (no version, no schedule change, no audit event). Raises what apply would raise.
    A new version comes back as it would be stored (the database orders a spec's keys its
    own way), to compare with the stored current one line by line."""
    with transaction.atomic():
        result = apply_workflow(actor=actor, tenant=tenant, data=data, name=name)
        if result.changed:
            result.version.refresh_from_db(fields=["spec"])
        transaction.set_rollback(True)
    return result


def _snapshot(workflow: Workflow) -> dict[str, Any]:
    version = workflow.current_version
    return {
        **audit.snapshot(workflow, ["name", "description", "tags", "paused", "deleted_at"]),
        "version": version.number if version else None,
        "spec": version.spec if version else None,
    }


@transaction.atomic
def apply_workflow(
    *,
    actor: Actor,
    tenant: Tenant,
    data: Any,
    name: str | None = None,
    now: dt.datetime | None = None,
    source_commit: str | None = None,
    source: str | None = None,
) -> ApplyResult:
    """Create the workflow or give it a new version; nothing when the spec is unchanged.
    Its schedule follows the new spec at once (a changed cron restarts it from `now`).

    `name`, when given (PUT to a workflow's URL), must match the spec's name.
    `source_commit` (a git commit, 40 hex digits) and `source` (e.g. "git:<name>") record
    where a new version's spec came from; an unchanged spec keeps its version's."""
    authorize(actor, "workflow.edit", tenant)
    _check_commit(source_commit)
    valid: ValidSpec = validate_spec(data, limits_for(tenant))
    resolution = resolve_code(tenant, valid.spec)
    checks = [error for check in APPLY_CHECKS for error in check(tenant, valid.spec)]
    if errors := resolution.errors + checks:
        raise Invalid(errors)
    content_hash = valid.content_hash
    if resolution.code:  # a new upload the spec's `code` now picks is a new version
        pinned = canonical_json({"spec": content_hash, "code": resolution.code})
        content_hash = hashlib.sha256(pinned.encode()).hexdigest()
    spec_name = valid.spec.name
    if name is not None and spec_name != name:
        raise Invalid([("name", f"the spec is named {spec_name!r} but was sent to {name!r}")])
    # One apply per tenant at once; the workflow locked too, so that a pause or a delete
    # committed meanwhile is not written back over by the save below.
    tenant = Tenant.objects.select_for_update(no_key=True).get(pk=tenant.pk)
    workflow = (
        Workflow.objects.select_related("current_version")
        .select_for_update(of=("self",), no_key=True)
        .filter(tenant=tenant, name=spec_name, deleted_at__isnull=True)
        .first()
    )
    created = workflow is None
    if workflow is None:
        live = Workflow.objects.filter(tenant=tenant, deleted_at__isnull=True).count()
        limit = tenant_quota(tenant.quotas, "max_workflows")
        if live >= limit:
            raise Conflict(f"tenant {tenant.slug!r} has {live} workflows, its quota ({limit})")
        workflow = Workflow.objects.create(tenant=tenant, name=spec_name)
    elif workflow.current_version and workflow.current_version.content_hash == content_hash:
        if valid.spec.cron_schedule is not None and scheduling.schedule_of(workflow) is None:
            # Applied before schedules were kept (an upgrade): the same spec starts it now.
            scheduling.sync_schedule(workflow=workflow, wanted=valid.spec.cron_schedule, now=now)
        return ApplyResult(workflow, workflow.current_version, created=False, changed=False)
    before = None if created else _snapshot(workflow)
    last = WorkflowVersion.objects.filter(workflow=workflow).aggregate(n=Max("number"))["n"]
    version = WorkflowVersion.objects.create(
        tenant=tenant,
        workflow=workflow,
        number=(last or 0) + 1,
        spec=valid.canonical,
        content_hash=content_hash,
        code=resolution.code,
        author_id=actor.user_id,
        source_commit=source_commit,
        source=source,
    )
    workflow.current_version = version
    workflow.description = valid.spec.description or ""
    workflow.tags = list(valid.spec.tags)
    workflow.save()
    scheduling.sync_schedule(workflow=workflow, wanted=valid.spec.cron_schedule, now=now)
    references.sync_references(workflow, valid.spec)
    audit.record(
        actor=actor,
        action="workflow.create" if created else "workflow.update",
        tenant=tenant,
        obj=workflow,
        before=before,
        after=_snapshot(workflow),
        extra={
            "content_hash": version.content_hash,
            "code": version.code,
            **({"source_commit": source_commit} if source_commit else {}),
            **({"source": source} if source else {}),
        },
    )
    return ApplyResult(workflow, version, created=created, changed=True)


def _check_commit(sha: str | None) -> None:
    if sha is not None and not COMMIT_SHA.fullmatch(sha):
        raise Invalid([("source_commit", f"{sha!r} is not a git commit: expected 40 hex digits")])


def apply_workflows(
    *,
    actor: Actor,
    tenant: Tenant,
    files: Sequence[tuple[str, bytes | str]],
    dry_run: bool,
    prune: bool,
    source_commit: str | None = None,
    source: str | None = None,
) -> ApplyPlan:
    """Sync the tenant to a set of spec files (GitOps), all or nothing: every file is
    parsed and validated first, then each applied (apply_workflow: create, new version or
    unchanged) and, with `prune`, the live workflows no file defines deleted, in one
    transaction. Any invalid file (also what only applying finds, e.g. an unknown notify
    channel) raises InvalidFiles with every error and its file; nothing is kept. A dry run
    rolls everything back (no version, no audit event) and returns the same plan."""
    authorize(actor, "workflow.edit", tenant)
    _check_commit(source_commit)
    limit = tenant_quota(tenant.quotas, "max_workflows")
    if not files:
        raise Invalid([("files", "no spec files (*.yaml, *.yml, *.json)")])
    if len(files) > limit:
        raise Invalid(
            [("files", f"{len(files)} files; tenant {tenant.slug!r} may have {limit} workflows")]
        )
    loaded = load_documents(files, limits_for(tenant))
    invalid = [item for item in loaded if item.valid is None]
    errors: list[FileError] = [(i.path, p, m) for i in invalid for p, m in i.errors]
    if errors:
        raise InvalidFiles(errors, invalid=len(invalid), total=len(loaded))
    names = {item.valid.spec.name: item.path for item in loaded if item.valid is not None}
    with tenant_scope([tenant]), transaction.atomic():
        live = {w.name: w.current_version for w in live_workflows().filter(name__in=names)}
        changes: list[PlannedChange] = []
        for item in loaded:
            assert item.valid is not None
            try:
                result = apply_workflow(
                    actor=actor,
                    tenant=tenant,
                    data=item.valid.canonical,
                    source_commit=source_commit,
                    source=source,
                )
            except Invalid as exc:  # found only when applying: keep going to report all
                errors.extend((item.path, p, m) for p, m in exc.errors)
                continue
            except Conflict as exc:
                raise Conflict(f"{item.path}: {exc.message}") from exc
            changes.append(_planned(item.path, result, live.get(result.workflow.name)))
        if errors:
            raise InvalidFiles(errors, invalid=len({e[0] for e in errors}), total=len(loaded))
        if prune:
            for workflow in live_workflows().exclude(name__in=names).order_by("name"):
                delete_workflow(actor=actor, workflow=workflow)
                changes.append(PlannedChange(workflow.name, None, "pruned", None, ""))
        if dry_run:
            transaction.set_rollback(True)
    return ApplyPlan(dry_run=dry_run, changes=changes)


def _planned(path: str, result: ApplyResult, before: WorkflowVersion | None) -> PlannedChange:
    version = result.version
    if not result.changed:
        return PlannedChange(result.workflow.name, path, "unchanged", version.number, "")
    # As stored: the database orders a spec's keys its own way, and `before` was read back.
    version.refresh_from_db(fields=["spec"])
    if before is None:
        diff = "".join(
            difflib.unified_diff(
                [],
                spec_yaml(version.spec).splitlines(keepends=True),
                fromfile="/dev/null",
                tofile=f"{result.workflow.name}@v{version.number}",
            )
        )
    else:
        diff = spec_diff(before, version)
    action = "created" if result.created else "updated"
    return PlannedChange(result.workflow.name, path, action, version.number, diff)


@transaction.atomic
def delete_workflow(*, actor: Actor, workflow: Workflow, force: bool = False) -> Workflow:
    """Soft-delete: the name is freed; versions, runs and history are kept."""
    authorize(actor, "workflow.edit", workflow.tenant)
    workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow.pk)
    if workflow.deleted_at is not None:
        raise Conflict(f"workflow {workflow.name!r} is already deleted")
    if not force:
        reasons = [r for guard in DELETE_GUARDS if (r := guard(workflow))]
        if reasons:
            raise Conflict(
                f"workflow {workflow.name!r} cannot be deleted: "
                f"{'; '.join(reasons)} (pass force to delete anyway)"
            )
    before = _snapshot(workflow)
    workflow.deleted_at = timezone.now()
    workflow.save(update_fields=["deleted_at", "updated_at"])
    scheduling.stop_schedule(workflow=workflow)
    references.clear_references(workflow)
    audit.record(
        actor=actor,
        action="workflow.delete",
        tenant=workflow.tenant,
        obj=workflow,
        before=before,
        after=_snapshot(workflow),
        extra={"force": force},
    )
    return workflow


@transaction.atomic
def set_paused(
    *, actor: Actor, workflow: Workflow, paused: bool, now: dt.datetime | None = None
) -> Workflow:
    """Pause or unpause, the schedule with it; doing what is already so changes nothing and
    audits nothing. Unpausing resumes the schedule: what it missed follows its catch-up."""
    authorize(actor, "workflow.pause", workflow.tenant)
    updated = Workflow.objects.filter(pk=workflow.pk, paused=not paused).update(
        paused=paused, updated_at=timezone.now()
    )
    workflow.refresh_from_db()
    if updated:
        scheduling.set_schedule_paused(workflow=workflow, paused=paused, now=now)
        audit.record(
            actor=actor,
            action="workflow.pause" if paused else "workflow.unpause",
            tenant=workflow.tenant,
            obj=workflow,
            before={"paused": not paused},
            after={"paused": paused},
        )
    return workflow


def spec_yaml(spec: dict[str, Any]) -> str:
    """The canonical YAML of a spec: keys in spec order, block style, unicode as is."""
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, default_flow_style=False)


def spec_diff(old: WorkflowVersion, new: WorkflowVersion) -> str:
    """Unified diff of two versions' canonical YAML."""
    name = old.workflow.name
    return "".join(
        difflib.unified_diff(
            spec_yaml(old.spec).splitlines(keepends=True),
            spec_yaml(new.spec).splitlines(keepends=True),
            fromfile=f"{name}@v{old.number}",
            tofile=f"{name}@v{new.number}",
        )
    )
