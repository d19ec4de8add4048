"""Team code packages (docs/team-code.md): the upload, one service called alike by REST,
GraphQL, the portal and `manage.py upload_package`, and the reads of what was uploaded.

An upload becomes one immutable CodePackage, and everything a worker will need is settled
then, once, so that running a task needs no decision:
- the wheel (built in the tenant's sandbox from an sdist or source tree: the build backend
  is the team's code) is stored under its sha256 through the "packages" storage;
- its dependencies are locked (versions and hashes) against the configured index; no
  package code runs for that, so it runs here, unsandboxed;
- its environment is built through the workers' EnvironmentCache (the upload proves it
  installs, and warms this host's cache);
- its modules are imported in the tenant's sandbox, as the tenant's uid, from that
  environment, and their public functions recorded (`index`): that is what the spec's
  `callable`s are checked against.
The slow steps run outside any transaction; the row and its audit event are written
together at the end, under the tenant's lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from orchestrator import audit
from orchestrator.actors import Actor
from orchestrator.errors import Conflict, Invalid
from orchestrator.models import Tenant
from orchestrator.policy import authorize
from runs.tasktypes import indexer
from runs.tasktypes.environments import (
    Environment,
    EnvironmentBuildFailed,
    PackageSpec,
    uv_binary,
)
from runs.tasktypes.local import tenant_sandbox
from runs.tasktypes.package_store import environment_cache, store_wheel
from runs.tasktypes.packages import (
    BuiltWheel,
    PackageError,
    Upload,
    WheelInfo,
    build_wheel,
    lock_dependencies,
    read_upload,
    wheel_info,
)
from runs.tasktypes.process import OutputSink, run_process
from runs.tasktypes.sandbox import HOME, RUNNER_DIR, TMP, SandboxUnavailable, interpreter
from workflows.models import CodePackage

__all__ = [
    "package_versions",
    "packages_of",
    "upload_package",
]

LOG_LIMIT = 256 * 1024  # bytes of each step's output kept in build_log
INDEX_LIMIT = 16 * 1024 * 1024  # the largest index (JSON) read back from the sandbox
INDEX_FILE = "orchestrator-index.json"
PATH = "/usr/local/bin:/usr/bin:/bin"
AUDITED_FIELDS = (
    "name",
    "version",
    "digest",
    "filename",
    "size",
    "source_kind",
    "source_digest",
    "requires_python",
    "requirements",
    "lock",
)


# --- reads -----------------------------------------------------------------------------------


def packages_of(tenant: Tenant, *, name: str | None = None) -> QuerySet[CodePackage]:
    """The tenant's packages by name, newest first within a name (callers are inside the
    tenant's scope). `name` in any spelling PEP 503 folds together."""
    rows = CodePackage.objects.filter(tenant=tenant)
    if name is not None:
        rows = rows.filter(name=canonicalize_name(name))
    return rows.order_by("name", "-created_at", "-id")


def package_versions(tenant: Tenant, name: str) -> list[CodePackage]:
    """The versions of one package, highest first by PEP 440 (not by upload time)."""
    return sorted(packages_of(tenant, name=name), key=lambda p: _version(p.version), reverse=True)


def _version(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


# --- the upload ------------------------------------------------------------------------------


def upload_package(*, actor: Actor, tenant: Tenant, filename: str, data: bytes) -> CodePackage:
    """Store an uploaded wheel, sdist or source tree archive as a new package version.

    Sending the same file again (or one that builds the same wheel) returns the package
    already stored, and audits nothing; another file for a name and version already
    uploaded is a Conflict: packages are immutable. Anything that is not an installable,
    importable package is Invalid on "file", with the reason."""
    authorize(actor, "package.upload", tenant)
    _check_size(data)
    source_digest = hashlib.sha256(data).hexdigest()
    same = packages_of(tenant).filter(source_digest=source_digest).first()
    if same is not None:
        return same
    log = _Log()
    try:
        upload = read_upload(data, filename, max_bytes=settings.PACKAGE_MAX_BYTES)
        built = _wheel_of(upload, tenant, log)
        info = wheel_info(built.data, built.filename)
    except PackageError as exc:
        raise Invalid([("file", str(exc))]) from None
    digest = hashlib.sha256(built.data).hexdigest()
    existing = packages_of(tenant, name=info.name).filter(version=info.version).first()
    if existing is not None:
        return _same_or_conflict(existing, digest)
    lock = _lock(info, built.data, log)
    env = _environment(info, digest, lock, built.data, log)
    index = _index(tenant, env, info, log)
    store_wheel(digest, info.filename, built.data)
    return _record(
        actor=actor,
        tenant=tenant,
        upload=upload,
        info=info,
        digest=digest,
        size=len(built.data),
        lock=lock,
        index=index,
        log=log,
    )


def _check_size(data: bytes) -> None:
    limit = settings.PACKAGE_MAX_BYTES
    if len(data) > limit:
        raise Invalid(
            [
                (
                    "file",
                    f"the file is {len(data)} bytes; packages of at most {limit} bytes are "
                    "accepted (PACKAGE_MAX_BYTES)",
                )
            ]
        )
    if not data:
        raise Invalid([("file", "the file is empty: expected a wheel, an sdist or an archive")])


def _same_or_conflict(existing: CodePackage, digest: str) -> CodePackage:
    if existing.digest == digest:
        return existing
    raise Conflict(
        f"{existing.name} {existing.version} is already uploaded (digest {existing.digest}); "
        "packages are immutable: upload a new version"
    )


class _Log:
    """The upload's build_log: each step's output under its own heading."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def section(self, title: str, text: str) -> None:
        text = text.strip()
        if len(text) > LOG_LIMIT:
            text = "[... earlier output dropped]\n" + text[-LOG_LIMIT:]
        self.parts.append(f"== {title} ==\n{text}\n" if text else f"== {title} ==\n")

    def text(self) -> str:
        return "\n".join(self.parts)


def _unavailable(exc: SandboxUnavailable) -> Conflict:
    return Conflict(
        f"packages cannot be built or indexed here: the task sandbox is unavailable: {exc}"
    )


def _wheel_of(upload: Upload, tenant: Tenant, log: _Log) -> BuiltWheel:
    """The uploaded wheel, or the wheel built from the sdist or tree in the tenant's
    sandbox (no python=True: the build needs only uv and the base interpreter)."""
    if upload.kind == "wheel":
        return BuiltWheel(upload.filename, upload.data, "")
    try:
        sandbox = tenant_sandbox(tenant.pk, tenant.policy, python=False)
    except SandboxUnavailable as exc:
        raise _unavailable(exc) from None
    built = build_wheel(
        upload,
        sandbox=sandbox,
        uv=_uv(),
        python=interpreter(),
        # The build backend is the tenant's code, able to read uv's command line: never
        # the index's credentials (its build requirements must be reachable without).
        index_url=_without_credentials(settings.PACKAGE_INDEX_URL) or None,
        find_links=list(settings.PACKAGE_FIND_LINKS),
        timeout=settings.PACKAGE_BUILD_TIMEOUT,
        max_bytes=settings.PACKAGE_MAX_BYTES,
    )
    log.section(f"build: {upload.filename} ({upload.kind}) -> {built.filename}", built.log)
    # What the tenant's backend made gets every check an uploaded wheel gets.
    if (
        read_upload(built.data, built.filename, max_bytes=settings.PACKAGE_MAX_BYTES).kind
        != "wheel"
    ):
        raise PackageError(f"building {upload.filename!r} made no wheel")
    return built


def _without_credentials(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _uv() -> str:
    try:
        return uv_binary()
    except EnvironmentBuildFailed as exc:
        raise Conflict(f"packages cannot be uploaded here: {exc}") from None


def _lock(info: WheelInfo, wheel: bytes, log: _Log) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="orc-upload-") as tmp:
        path = Path(tmp) / info.filename
        path.write_bytes(wheel)
        try:
            lock, output = lock_dependencies(
                path,
                uv=_uv(),
                python=interpreter(),
                index_url=settings.PACKAGE_INDEX_URL or None,
                find_links=list(settings.PACKAGE_FIND_LINKS),
                timeout=settings.PACKAGE_BUILD_TIMEOUT,
                cache_dir=str(Path(settings.PACKAGE_ENV_DIR) / ".uv-lock-cache"),
            )
        except PackageError as exc:
            raise Invalid([("file", str(exc))]) from None
    log.section("lock: the dependencies, resolved", "\n".join([output.strip(), *lock]))
    return lock


def _environment(
    info: WheelInfo, digest: str, lock: list[str], wheel: bytes, log: _Log
) -> Environment:
    spec = PackageSpec(digest, info.name, info.version, info.filename, tuple(lock))
    lines: list[str] = []
    try:
        env = environment_cache().ensure(spec, wheel=lambda: wheel, log=lines.append)
    except EnvironmentBuildFailed as exc:
        raise Invalid(
            [("file", f"{info.name} {info.version} could not be installed: {exc}")]
        ) from None
    log.section("environment", "\n".join(lines) or f"ready at {env.path}")
    return env


def _index(tenant: Tenant, env: Environment, info: WheelInfo, log: _Log) -> dict[str, list[str]]:
    """Import every module of the package in the tenant's sandbox (its uid, its limits, a
    clean environment), from the package's environment: {module: [function names]}."""
    label = f"{info.name} {info.version}"
    if not info.top_level:
        raise Invalid([("file", f"{label} holds no importable module or package")])
    try:
        sandbox = tenant_sandbox(tenant.pk, tenant.policy, python=True, environment=str(env.path))
    except SandboxUnavailable as exc:
        raise _unavailable(exc) from None
    sink = OutputSink(LOG_LIMIT)
    timeout = settings.PACKAGE_BUILD_TIMEOUT
    env_vars = {"PATH": PATH, "LANG": "C.UTF-8"}
    if sandbox is None:
        with tempfile.TemporaryDirectory(prefix="orc-index-") as tmp:
            output = Path(tmp) / INDEX_FILE
            argv = [str(env.python), "-I", str(indexer.__file__), "--output", str(output)]
            result = run_process(
                [*argv, *info.top_level],
                env={**env_vars, "HOME": tmp},
                cwd=tmp,
                timeout=timeout,
                sink=sink,
            )
            raw = _read_index(output) if result.exit_code == 0 else b""
    else:
        space = sandbox.workspace()
        try:
            script = f"{RUNNER_DIR}/runs/tasktypes/indexer.py"
            argv = [str(env.python), "-I", script, "--output", f"{TMP}/{INDEX_FILE}"]
            result = run_process(
                [*argv, *info.top_level],
                env={**env_vars, "HOME": HOME},
                cwd=None,
                timeout=timeout,
                sink=sink,
                sandbox=sandbox,
                workspace=space,
            )
            raw = _read_index(space.tmp / INDEX_FILE) if result.exit_code == 0 else b""
        finally:
            space.remove()
    output_text = sink.drain().decode("utf-8", "replace")
    log.section(f"index: importing {', '.join(info.top_level)}", output_text)
    if result.exit_code != 0 or not raw:
        why = result.error or (
            f"timed out after {timeout}s (PACKAGE_BUILD_TIMEOUT)"
            if result.timed_out
            else f"exit code {result.exit_code}"
        )
        tail = "\n".join(output_text.strip().splitlines()[-20:])
        raise Invalid([("file", f"importing {label} to index it failed ({why}):\n{tail}")])
    modules, errors = _parse_index(raw)
    if errors:
        log.section(
            "index: modules that did not import", "\n".join(f"{m}: {e}" for m, e in errors.items())
        )
    if not modules:
        shown = "; ".join(f"{m}: {e}" for m, e in errors.items())
        raise Invalid([("file", f"no module of {label} could be imported: {shown}")])
    return modules


def _read_index(path: Path) -> bytes:
    """The indexer's result file: written by the tenant's uid, so never read through a
    link, never beyond INDEX_LIMIT."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return handle.read(INDEX_LIMIT + 1)


def _parse_index(raw: bytes) -> tuple[dict[str, list[str]], dict[str, str]]:
    if len(raw) > INDEX_LIMIT:
        raise Invalid([("file", f"the package's index is larger than {INDEX_LIMIT} bytes")])
    try:
        data: Any = json.loads(raw)
        modules = {str(m): sorted(str(f) for f in fs) for m, fs in data["modules"].items()}
        errors = {str(m): str(e) for m, e in data["errors"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Invalid([("file", f"the package's index could not be read: {exc}")]) from None
    return modules, errors


def _record(
    *,
    actor: Actor,
    tenant: Tenant,
    upload: Upload,
    info: WheelInfo,
    digest: str,
    size: int,
    lock: list[str],
    index: dict[str, list[str]],
    log: _Log,
) -> CodePackage:
    """The row and its audit event, under the tenant's lock: a concurrent upload of the
    same version is seen here, not as an integrity error."""
    with transaction.atomic():
        Tenant.objects.select_for_update(no_key=True).get(pk=tenant.pk)
        existing = packages_of(tenant, name=info.name).filter(version=info.version).first()
        if existing is not None:
            return _same_or_conflict(existing, digest)
        package = CodePackage.objects.create(
            tenant=tenant,
            name=info.name,
            version=info.version,
            digest=digest,
            filename=info.filename,
            size=size,
            source_kind=upload.kind,
            source_digest=upload.digest,
            requires_python=info.requires_python,
            requirements=list(info.requires_dist),
            lock=lock,
            index=index,
            build_log=log.text(),
            uploaded_by_id=actor.user_id,
        )
        audit.record(
            actor=actor,
            action="package.upload",
            tenant=tenant,
            obj=package,
            after=audit.snapshot(package, AUDITED_FIELDS),
            extra={"modules": len(index), "functions": sum(len(f) for f in index.values())},
        )
    return package
