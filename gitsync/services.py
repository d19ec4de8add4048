"""Every change to git sources, and their syncs (GitOps pull mode, docs/gitops.md):
keyword-only, authorised by the policy, audited in the same transaction. REST, GraphQL,
the portal, the admin and the Celery tasks all call these.

A sync clones the source's branch (gitsync.git), reads the spec files under its path and
applies them through workflows.services.apply_workflows, as the system actor
`gitsync:<name>`, with the commit recorded on every version it makes. A commit already
synced without error is skipped (unless forced). Its outcome (commit, status, error, what
changed) is kept on the source; a sync whose outcome differs from the last one is audited
as `git_source.sync`."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from connections import runtime as connection_runtime
from connections.models import Secret
from gitsync import git
from gitsync.models import GitSource
from orchestrator import audit, crypto
from orchestrator.actors import Actor
from orchestrator.celery import queue_task
from orchestrator.context import tenant_scope
from orchestrator.errors import Conflict, DomainError, FieldError, Invalid, NotFound
from orchestrator.hooks import Received, problem, rate_limited
from orchestrator.models import Tenant
from orchestrator.policy import authorize
from orchestrator.ratelimit import RateLimited, charge_webhook
from orchestrator.tenancy import tenant_quota
from workflows.services import ApplyPlan, apply_workflows, limits_for
from workflows.spec import NAME_PATTERN
from workflows.specfiles import InvalidFiles, error_line

__all__ = [
    "INTERVAL_MAX",
    "UNSET",
    "SyncResult",
    "create_source",
    "delete_source",
    "queue_due_sources",
    "queue_sync",
    "receive_push",
    "rotate_webhook_secret",
    "sync_source",
    "update_source",
    "webhook_url",
]

UNSET: Any = object()
INTERVAL_MAX = 7 * 86400
SECRET_PREFIX = "gitsec_"  # noqa: S105 (a prefix, not a secret)
NAMES = "lowercase letters, digits, - and _, starting with a letter or digit, at most 63 characters"
AUDITED_FIELDS = ["name", "url", "branch", "path", "deploy_key", "prune", "interval_seconds"]
SYNC_FIELDS = ["last_commit", "last_status", "last_error"]
_UNKNOWN_KEY = secrets.token_bytes(32)  # what an unknown URL's signature is checked with


def webhook_url(source: GitSource) -> str:
    return f"{settings.PUBLIC_URL.rstrip('/')}/hooks/git/{source.webhook_uid}"


# --- changes ---------------------------------------------------------------------------------


def _allowed_hosts(tenant: Tenant) -> list[str]:
    return [*settings.GITSYNC_ALLOWED_HOSTS, *tenant.policy.get("git_allowed_hosts", [])]


def _checked(tenant: Tenant, values: Mapping[str, Any]) -> list[FieldError]:
    """Errors of the given fields (all of a new source's, or those a change sets)."""
    errors: list[FieldError] = []
    name = values.get("name", "")
    if "name" in values and (not isinstance(name, str) or not re.match(NAME_PATTERN, name)):
        errors.append(("name", f"{name!r} is not a valid name; accepted: {NAMES}"))
    checks: dict[str, Callable[[str], object]] = {
        "url": _url_error,
        "branch": git.check_branch,
        "path": git.check_path,
    }
    for key, check in checks.items():
        if key in values:
            value = values[key]
            if not isinstance(value, str):
                errors.append((key, "expected text"))
                continue
            try:
                check(value)
            except git.GitError as exc:
                errors.append((key, str(exc)))
    if "interval_seconds" in values:
        every = values["interval_seconds"]
        if (
            isinstance(every, bool)
            or not isinstance(every, int)
            or not (every == 0 or 60 <= every <= INTERVAL_MAX)
        ):
            errors.append(
                (
                    "interval_seconds",
                    f"{every!r}: 0 (no schedule) or seconds from 60 to {INTERVAL_MAX}",
                )
            )
    if "prune" in values and not isinstance(values["prune"], bool):
        errors.append(("prune", "expected true or false"))
    if "deploy_key" in values:
        errors += _deploy_key_errors(tenant, values["deploy_key"])
    return errors


def _url_error(url: str) -> None:
    git.check_remote(url, allow_local=settings.GITSYNC_ALLOW_LOCAL, check_network=False)


def _deploy_key_errors(tenant: Tenant, name: Any) -> list[FieldError]:
    if name == "":
        return []
    if not isinstance(name, str):
        return [("deploy_key", "expected the name of one of the tenant's secrets, or empty")]
    with tenant_scope([tenant]):
        exists = Secret.objects.filter(name=name).exists()
    if not exists:
        return [
            (
                "deploy_key",
                f"tenant {tenant.slug!r} has no secret {name!r}: create it (an SSH private "
                "key) first, or leave deploy_key empty for a public repository",
            )
        ]
    return []


def _new_secret() -> tuple[str, str, str]:
    """(plaintext, encrypted, prefix shown)."""
    plaintext = SECRET_PREFIX + secrets.token_urlsafe(32)
    return plaintext, crypto.encrypt(plaintext), plaintext[: len(SECRET_PREFIX) + 6]


@transaction.atomic
def create_source(
    *,
    actor: Actor,
    tenant: Tenant,
    name: str,
    url: str,
    branch: str = "main",
    path: str = "",
    deploy_key: str = "",
    prune: bool = False,
    interval_seconds: int = 0,
) -> tuple[GitSource, str]:
    """A new git source and its webhook secret, returned this once (only its prefix is
    kept readable). Nothing is synced yet: a push, its schedule or a manual sync does."""
    authorize(actor, "git_source.manage", tenant)
    values = {
        "name": name,
        "url": url,
        "branch": branch,
        "path": path,
        "deploy_key": deploy_key,
        "prune": prune,
        "interval_seconds": interval_seconds,
    }
    if errors := _checked(tenant, values):
        raise Invalid(errors)
    plaintext, encrypted, prefix = _new_secret()
    source = GitSource(
        tenant=tenant,
        name=name,
        url=url.strip(),
        branch=branch,
        path=git.check_path(path),
        deploy_key=deploy_key,
        prune=prune,
        interval_seconds=interval_seconds,
        webhook_uid=secrets.token_urlsafe(24),
        webhook_secret_encrypted=encrypted,
        webhook_secret_prefix=prefix,
    )
    try:
        with transaction.atomic():
            source.save()
    except IntegrityError:
        raise Conflict(f"git source {name!r} exists; choose another name") from None
    audit.record(
        actor=actor,
        action="git_source.create",
        tenant=tenant,
        obj=source,
        after={**audit.snapshot(source, AUDITED_FIELDS), "webhook_secret_prefix": prefix},
    )
    return source, plaintext


@transaction.atomic
def update_source(*, actor: Actor, source: GitSource, **changes: Any) -> GitSource:
    """Change any of url, branch, path, deploy_key, prune, interval_seconds (its name
    stays: versions and the audit log name it). A change of what is synced (url, branch,
    path) makes the next sync apply again even at the same commit."""
    authorize(actor, "git_source.manage", source.tenant)
    allowed = set(AUDITED_FIELDS) - {"name"}
    unknown = sorted(set(changes) - allowed)
    accepted = ", ".join(sorted(allowed))
    errors: list[FieldError] = [(k, f"unknown field; accepted: {accepted}") for k in unknown]
    values = {k: v for k, v in changes.items() if v is not UNSET and k in allowed}
    if errors := errors + _checked(source.tenant, values):
        raise Invalid(errors)
    locked = GitSource.objects.dangerously_unscoped().select_for_update().get(pk=source.pk)
    before = audit.snapshot(locked, AUDITED_FIELDS)
    for key, value in values.items():
        setattr(locked, key, git.check_path(value) if key == "path" else value)
    after = audit.snapshot(locked, AUDITED_FIELDS)
    if after != before:
        if any(before[k] != after[k] for k in ("url", "branch", "path")):
            locked.last_commit = ""  # another tree: the next sync applies it, whatever commit
        locked.save()
        audit.record(
            actor=actor,
            action="git_source.update",
            tenant=source.tenant,
            obj=locked,
            before=before,
            after=after,
        )
    return locked


@transaction.atomic
def delete_source(*, actor: Actor, source: GitSource) -> None:
    """Delete the source; its workflows stay as they are (their versions keep the commit
    and `git:<name>`), and its webhook URL stops answering."""
    authorize(actor, "git_source.manage", source.tenant)
    audit.record(
        actor=actor,
        action="git_source.delete",
        tenant=source.tenant,
        obj=source,
        before=audit.snapshot(source, AUDITED_FIELDS),
    )
    GitSource.objects.dangerously_unscoped().filter(pk=source.pk).delete()


@transaction.atomic
def rotate_webhook_secret(*, actor: Actor, source: GitSource) -> tuple[GitSource, str]:
    """A new webhook secret, returned this once; the old one stops working at once (a
    push missed meanwhile is caught by the schedule or a manual sync)."""
    authorize(actor, "git_source.manage", source.tenant)
    locked = GitSource.objects.dangerously_unscoped().select_for_update().get(pk=source.pk)
    before = {"webhook_secret_prefix": locked.webhook_secret_prefix}
    plaintext, encrypted, prefix = _new_secret()
    locked.webhook_secret_encrypted, locked.webhook_secret_prefix = encrypted, prefix
    locked.save(update_fields=["webhook_secret_encrypted", "webhook_secret_prefix", "updated_at"])
    audit.record(
        actor=actor,
        action="git_source.rotate_secret",
        tenant=source.tenant,
        obj=locked,
        before=before,
        after={"webhook_secret_prefix": prefix},
    )
    return locked, plaintext


# --- syncing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    """What a sync did: `status` ok, failed, or skipped (the commit was synced already);
    `plan` when it applied (None otherwise); `errors` the invalid files' errors, each
    {"file", "path", "message"}."""

    source: GitSource
    status: str
    commit: str | None
    plan: ApplyPlan | None = None
    error: str = ""
    errors: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        changes = self.plan.as_dict()["changes"] if self.plan is not None else []
        return {
            "source": self.source.name,
            "status": self.status,
            "commit": self.commit,
            "changes": changes,
            "error": self.error,
            "errors": self.errors,
        }


def sync_source(*, actor: Actor, source: GitSource, force: bool = False) -> SyncResult:
    """Clone the source's branch and apply its spec files (see the module's docstring).
    `actor` is who asked (an operator, or the system for a push or the schedule); the
    workflows are changed by the system actor `gitsync:<name>` either way."""
    tenant = source.tenant
    authorize(actor, "git_source.sync", tenant)
    limits = limits_for(tenant)
    try:
        key = _deploy_key(source)
        remote = git.check_remote(
            source.url,
            allow_local=settings.GITSYNC_ALLOW_LOCAL,
            allowed_hosts=_allowed_hosts(tenant),
        )
        checkout = git.checkout(
            source.url,
            source.branch,
            source.path,
            remote=remote,
            deploy_key=key,
            known_hosts=settings.GITSYNC_SSH_KNOWN_HOSTS,
            timeout=settings.GITSYNC_TIMEOUT_SECONDS,
            max_file_bytes=limits.max_spec_bytes,
            max_files=tenant_quota(tenant.quotas, "max_workflows") + 1,
        )
    except git.GitError as exc:
        with transaction.atomic():
            return _record(actor, source, commit=None, error=str(exc))
    with transaction.atomic():
        locked = _locked(source)
        ok = GitSource.Status.OK
        if not force and locked.last_commit == checkout.commit and locked.last_status == ok:
            # Checked, not audited: the schedule's next check counts from now.
            locked.last_synced_at, locked.sync_queued_at = timezone.now(), None
            locked.save(update_fields=["last_synced_at", "sync_queued_at"])
            return SyncResult(locked, "skipped", checkout.commit)
        try:
            if checkout.too_large:
                raise InvalidFiles(
                    [
                        (
                            p,
                            "",
                            f"spec is {n} bytes; this tenant's limit is {limits.max_spec_bytes}",
                        )
                        for p, n in checkout.too_large
                    ],
                    invalid=len(checkout.too_large),
                    total=len(checkout.files) + len(checkout.too_large),
                )
            plan = apply_workflows(
                actor=Actor.system(name=locked.actor_name),
                tenant=tenant,
                files=checkout.files,
                dry_run=False,
                prune=locked.prune,
                source_commit=checkout.commit,
                source=f"git:{locked.name}",
            )
        except InvalidFiles as exc:
            lines = [error_line(*e) for e in exc.file_errors]
            error = "\n".join([exc.message, *lines])
            return _record(actor, locked, checkout.commit, error=error, errors=exc.details())
        except DomainError as exc:
            where = f" under {locked.path!r}" if locked.path else ""
            error = f"{exc.message}{where} at commit {checkout.commit[:12]}; nothing was applied"
            return _record(actor, locked, checkout.commit, error=error)
        return _record(actor, locked, checkout.commit, plan=plan)


def _locked(source: GitSource) -> GitSource:
    """The source's row, locked until the transaction ends; NotFound once it is deleted
    (while its repository was being cloned, say)."""
    locked = GitSource.objects.dangerously_unscoped().select_for_update().filter(pk=source.pk)
    found = locked.first()
    if found is None:
        raise NotFound(f"git source {source.name!r} was deleted; nothing was applied")
    found.tenant = source.tenant
    return found


def _deploy_key(source: GitSource) -> str | None:
    if not source.deploy_key:
        return None
    try:
        key = connection_runtime.get_secret(source.tenant_id, source.deploy_key)
    except crypto.DecryptionError as exc:
        raise git.GitError(str(exc)) from None
    if key is None:
        raise git.GitError(
            f"the deploy key's secret {source.deploy_key!r} does not exist (any more): create "
            "it, or change the source's deploy_key"
        )
    return key


def _record(
    actor: Actor,
    source: GitSource,
    commit: str | None,
    *,
    plan: ApplyPlan | None = None,
    error: str = "",
    errors: list[dict[str, str]] | None = None,
) -> SyncResult:
    """Keep the sync's outcome on the source; audit it when it differs from the last."""
    locked = _locked(source)
    before = audit.snapshot(locked, SYNC_FIELDS)
    status = GitSource.Status.FAILED if error else GitSource.Status.OK
    if commit is not None:
        locked.last_commit = commit
    locked.last_status, locked.last_error = status, error
    locked.last_synced_at, locked.sync_queued_at = timezone.now(), None
    changes = plan.as_dict()["changes"] if plan is not None else []
    shown = ("workflow", "path", "action", "version")
    locked.last_changes = [{k: c[k] for k in shown} for c in changes]
    locked.save()
    after = audit.snapshot(locked, SYNC_FIELDS)
    if after != before:
        audit.record(
            actor=actor,
            action="git_source.sync",
            tenant=source.tenant,
            obj=locked,
            before=before,
            after=after,
            extra={"changes": locked.last_changes},
        )
    locked.tenant = source.tenant
    return SyncResult(locked, str(status), commit, plan, error, list(errors or []))


def queue_sync(source: GitSource, *, now: dt.datetime | None = None) -> None:
    """Send the source's sync to a worker once this transaction commits."""
    GitSource.objects.dangerously_unscoped().filter(pk=source.pk).update(
        sync_queued_at=now or timezone.now()
    )
    transaction.on_commit(lambda: queue_task("gitsync.sync", source.pk))


TICK_SLACK = dt.timedelta(seconds=15)


def queue_due_sources(now: dt.datetime | None = None) -> int:
    """Queue the sync of every scheduled source whose interval has elapsed since its last
    sync, unless one was queued within its interval (a tick's compare-and-set: two beats
    or a slow worker never queue a source twice)."""
    now = now or timezone.now()
    scheduled = GitSource.objects.dangerously_unscoped().filter(
        interval_seconds__gt=0,
        tenant__archived_at__isnull=True,
        tenant__suspended_at__isnull=True,
    )
    queued = 0
    for source in scheduled.only("pk", "interval_seconds", "last_synced_at", "sync_queued_at"):
        # Less a little: a sync ends seconds after the tick that queued it, and the tick an
        # interval later must still find it due (else every 60 s would be every 120 s).
        every = dt.timedelta(seconds=source.interval_seconds) - TICK_SLACK
        if source.last_synced_at is not None and source.last_synced_at > now - every:
            continue
        if source.sync_queued_at is not None and source.sync_queued_at > now - every:
            continue
        claimed = (
            GitSource.objects.dangerously_unscoped()
            .filter(pk=source.pk)
            .filter(_unchanged(source.sync_queued_at))
            .update(sync_queued_at=now)
        )
        if claimed:
            with transaction.atomic():
                queue_sync(source, now=now)
            queued += 1
    return queued


def _unchanged(queued_at: dt.datetime | None) -> Q:
    """`sync_queued_at` as it was read: nobody queued the source meanwhile."""
    return Q(sync_queued_at=queued_at) if queued_at else Q(sync_queued_at__isnull=True)


# --- the push webhook ------------------------------------------------------------------------


UNAUTHORIZED = (
    "a git push webhook needs X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body> "
    "(GitHub, Gitea) or X-Gitlab-Token: <secret> (GitLab), made with the source's webhook "
    "secret (docs/gitops.md)"
)


def _signed(key: bytes, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether the body carries a valid GitHub/Gitea signature or GitLab token."""
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    offered = headers.get("X-Hub-Signature-256", "").strip()
    gitea = headers.get("X-Gitea-Signature", "").strip()
    token = headers.get("X-Gitlab-Token", "")
    matched = False
    if offered.lower().startswith("sha256="):
        matched |= hmac.compare_digest(expected, offered[7:].strip().lower())
    if gitea:
        matched |= hmac.compare_digest(expected, gitea.lower())
    if token:
        matched |= hmac.compare_digest(key, token.encode())
    return matched


def _pushed_ref(body: bytes) -> str | None:
    """The ref a push payload names (`refs/heads/main`), None when it names none."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    ref = data.get("ref") if isinstance(data, dict) else None
    return ref if isinstance(ref, str) else None


def receive_push(*, uid: str, headers: Mapping[str, str], body: bytes) -> Received:
    """Check one POST to /hooks/git/<uid> and queue the source's sync: 202. An unknown
    URL and a bad or missing signature are one and the same 401; a push to another branch
    (or GitHub's ping) is 200 and queues nothing."""
    try:
        charge_webhook(f"git:{uid}", settings.WEBHOOK_RATE_LIMIT)
    except RateLimited as exc:
        return rate_limited(exc)
    source = (
        GitSource.objects.dangerously_unscoped()
        .select_related("tenant")
        .filter(
            webhook_uid=uid,
            tenant__archived_at__isnull=True,
            tenant__suspended_at__isnull=True,
        )
        .first()
    )
    key = _UNKNOWN_KEY
    if source is not None:
        try:
            key = crypto.decrypt(source.webhook_secret_encrypted).encode()
        except crypto.DecryptionError:  # its key was removed: rotate the secret
            source = None
    if not _signed(key, headers, body) or source is None:
        return problem(401, "Unauthorized", UNAUTHORIZED)
    if headers.get("X-GitHub-Event", "") == "ping" or headers.get("X-Gitea-Event", "") == "ping":
        return Received(200, {"queued": False, "detail": "pong: the signature is valid"})
    ref = _pushed_ref(body)
    wanted = f"refs/heads/{source.branch}"
    if ref is not None and ref != wanted:
        detail = f"a push to {ref}, not {wanted}: nothing to sync"
        return Received(200, {"queued": False, "detail": detail})
    with transaction.atomic():
        queue_sync(source)
    return Received(202, {"queued": True, "detail": f"sync of {source.name!r} queued"})
