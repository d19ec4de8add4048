"""Tenant quotas and policy: their keys, defaults and validation (no database)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from orchestrator.errors import Invalid
from orchestrator.task_types import TASK_TYPES

__all__ = [
    "RATE_LIMIT_PER",
    "RATE_LIMIT_SCOPES",
    "TASK_NETWORKS",
    "fair_share",
    "max_map_length",
    "rate_limit",
    "retention_days",
    "task_limits",
    "task_mounts",
    "task_network",
    "task_queue",
    "tenant_quota",
    "validate_policy",
    "validate_quotas",
]


POLICY_KEYS = {
    "allowed_task_types": "list of task types, or null for all",
    "http_allowed_hosts": "list of host names or networks the http task may reach",
    "sql_allowed_hosts": "list of host names or networks the sql task may reach",
    "git_allowed_hosts": "list of host names or networks git sources may clone from",
    "task_limits": "object of shell and python tasks' resource limits (memory_mb, "
    "cpu_seconds, processes, open_files, file_size_mb), each a positive integer",
    "task_network": "network of shell and python tasks: egress (default) or none",
    "task_mounts": "list of host directories the tenant's shell and python tasks see, "
    'each {"path": "/absolute/path", "writable": false}',
    "task_queue": "Celery queue of the tenant's tasks, for a dedicated worker pool "
    "(letters, digits, '.', '_', ':', '-'; null: the shared queue)",
    "rate_limits": 'requests per minute, e.g. {"triggers": {"per_token": 60, "per_tenant": '
    '300}, "reads": {"per_token": 1200, "per_tenant": 6000}}; each a non-negative integer '
    "(0: no limit), a missing one the platform's default",
    "max_map_length": "the most instances one mapped task may fan out into (docs/runs.md), "
    "an integer from 1 to 100000; the platform's default is 10000",
    "share": "the tenant's weight when busy workers are shared between tenants (fair "
    "share, docs/runs.md): an integer from 1 to 1000; the default is 1",
    "retention_days": "days finished runs and old events are kept (docs/retention.md): an "
    "integer from 1 to the platform's RETENTION_DAYS_MAX (0: forever, only where that "
    "maximum is 0)",
}
RATE_LIMIT_SCOPES = ("triggers", "reads")
RATE_LIMIT_PER = ("per_token", "per_tenant")
TASK_NETWORKS = ("egress", "none")
# Where a tenant's mount would hide the sandbox's own files (runs/tasktypes/sandbox.py).
RESERVED_MOUNT_ROOTS = frozenset({"proc", "dev", "usr", "etc", "orc"})
RESERVED_MOUNTS = frozenset({"/tmp", "/home", "/home/task"})  # noqa: S108 (inside the sandbox)
RESERVED_QUEUES = frozenset({"tasks", "housekeeping", "notifications", "celery"})
QUEUE_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


def tenant_quota(quotas: Mapping[str, Any], key: str) -> int:
    """A tenant's quota (its `quotas`), or the platform's default for new tenants when it
    has none set for `key`."""
    return int(quotas.get(key, settings.DEFAULT_TENANT_QUOTAS[key]))


def validate_quotas(value: Any, *, path: str = "quotas") -> dict[str, int]:
    """Merge over the defaults; every value an integer from 0 up to the platform's limit."""
    if not isinstance(value, Mapping):
        raise Invalid([(path, "expected an object")])
    limits: dict[str, int] = settings.PLATFORM_QUOTA_LIMITS
    errors = []
    merged = dict(settings.DEFAULT_TENANT_QUOTAS)
    for key, item in value.items():
        if key not in limits:
            errors.append(
                (f"{path}.{key}", f"unknown quota; accepted: {', '.join(sorted(limits))}")
            )
        elif isinstance(item, bool) or not isinstance(item, int):
            errors.append((f"{path}.{key}", "expected an integer"))
        elif not 0 <= item <= limits[key]:
            errors.append(
                (f"{path}.{key}", f"must be between 0 and {limits[key]} (platform limit)")
            )
        else:
            merged[key] = item
    if errors:
        raise Invalid(errors)
    return merged


def validate_policy(value: Any, *, path: str = "policy") -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise Invalid([(path, "expected an object")])
    errors = []
    for key in value:
        if key not in POLICY_KEYS:
            errors.append((f"{path}.{key}", f"unknown policy; accepted: {', '.join(POLICY_KEYS)}"))
    types = value.get("allowed_task_types")
    if types is not None:
        if not isinstance(types, list):
            errors.append((f"{path}.allowed_task_types", POLICY_KEYS["allowed_task_types"]))
        else:
            for i, name in enumerate(types):
                if name not in TASK_TYPES:
                    errors.append(
                        (
                            f"{path}.allowed_task_types[{i}]",
                            f"unknown task type {name!r}; accepted: {', '.join(TASK_TYPES)}",
                        )
                    )
    for key in ("http_allowed_hosts", "sql_allowed_hosts", "git_allowed_hosts"):
        hosts = value.get(key, [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
            errors.append((f"{path}.{key}", POLICY_KEYS[key]))
    errors += _task_policy_errors(value, path)
    errors += _rate_limit_errors(value.get("rate_limits", {}), f"{path}.rate_limits")
    errors += _retention_errors(value.get("retention_days"), f"{path}.retention_days")
    for key, top in (("max_map_length", MAP_LENGTH_MAX), ("share", SHARE_MAX)):
        item = value.get(key)
        if item is not None and (
            isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= top
        ):
            errors.append((f"{path}.{key}", POLICY_KEYS[key]))
    if errors:
        raise Invalid(errors)
    return dict(value)


def _task_policy_errors(value: Mapping[str, Any], path: str) -> list[tuple[str, str]]:
    errors = []
    limits = value.get("task_limits", {})
    if not isinstance(limits, Mapping):
        errors.append((f"{path}.task_limits", POLICY_KEYS["task_limits"]))
        limits = {}
    maxima: dict[str, int] = settings.TASK_LIMITS_MAX
    for key, item in limits.items():
        where = f"{path}.task_limits.{key}"
        if key not in maxima:
            errors.append((where, f"unknown limit; accepted: {', '.join(maxima)}"))
        elif isinstance(item, bool) or not isinstance(item, int) or item < 1:
            errors.append((where, "expected a positive integer"))
        elif maxima[key] and item > maxima[key]:
            errors.append((where, f"must be at most {maxima[key]} (platform limit)"))
    network = value.get("task_network", "egress")
    if network not in TASK_NETWORKS:
        errors.append((f"{path}.task_network", POLICY_KEYS["task_network"]))
    errors += _mount_errors(value.get("task_mounts", []), f"{path}.task_mounts")
    queue = value.get("task_queue")
    if queue is not None and not (isinstance(queue, str) and QUEUE_NAME.match(queue)):
        errors.append((f"{path}.task_queue", POLICY_KEYS["task_queue"]))
    elif queue in RESERVED_QUEUES:
        errors.append(
            (f"{path}.task_queue", f"{queue!r} is the platform's own queue; choose another name")
        )
    return errors


def _rate_limit_errors(limits: Any, path: str) -> list[tuple[str, str]]:
    if not isinstance(limits, Mapping):
        return [(path, POLICY_KEYS["rate_limits"])]
    errors = []
    for scope, counts in limits.items():
        if scope not in RATE_LIMIT_SCOPES:
            errors.append(
                (f"{path}.{scope}", f"unknown scope; accepted: {', '.join(RATE_LIMIT_SCOPES)}")
            )
        elif not isinstance(counts, Mapping):
            errors.append((f"{path}.{scope}", 'expected an object like {"per_token": 60}'))
        else:
            for per, item in counts.items():
                where = f"{path}.{scope}.{per}"
                if per not in RATE_LIMIT_PER:
                    errors.append((where, f"unknown limit; accepted: {', '.join(RATE_LIMIT_PER)}"))
                elif isinstance(item, bool) or not isinstance(item, int) or item < 0:
                    errors.append((where, "expected requests per minute: an integer, 0 or more"))
    return errors


def _retention_errors(days: Any, path: str) -> list[tuple[str, str]]:
    if days is None:
        return []
    maximum: int = settings.RETENTION_DAYS_MAX
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        return [(path, POLICY_KEYS["retention_days"])]
    if maximum and not 1 <= days <= maximum:
        return [(path, f"must be between 1 and {maximum} days (platform limit)")]
    return []


def _mount_errors(mounts: Any, path: str) -> list[tuple[str, str]]:
    if not isinstance(mounts, list):
        return [(path, POLICY_KEYS["task_mounts"])]
    errors = []
    for i, mount in enumerate(mounts):
        where = f"{path}[{i}]"
        if not isinstance(mount, Mapping) or set(mount) - {"path", "writable"}:
            errors.append((where, POLICY_KEYS["task_mounts"]))
            continue
        target = mount.get("path")
        if (
            not isinstance(target, str)
            or not target.startswith("/")
            or posixpath.normpath(target) != target
            or target == "/"
        ):
            errors.append((f"{where}.path", "expected an absolute, normalised path other than /"))
        elif _reserved(target):
            errors.append(
                (
                    f"{where}.path",
                    f"{target} would hide part of the sandbox's own file system; not "
                    "/tmp, /home/task or anything under /proc, /dev, /usr, /etc or /orc",  # noqa: S108
                )
            )
        if not isinstance(mount.get("writable", False), bool):
            errors.append((f"{where}.writable", "expected true or false"))
    return errors


def _reserved(path: str) -> bool:
    return (
        path in RESERVED_MOUNTS
        or path.startswith("/home/task/")
        or path.split("/")[1] in RESERVED_MOUNT_ROOTS
    )


def task_mounts(policy: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """Host directories of the tenant's tasks: (path, writable)."""
    return [(m["path"], bool(m.get("writable", False))) for m in policy.get("task_mounts", [])]


def task_limits(policy: Mapping[str, Any]) -> dict[str, int]:
    """The tenant's limits of shell and python tasks (0: none): its policy over the
    platform's defaults. A task's `rlimits` may lower them, never raise them."""
    return {**settings.TASK_LIMITS_DEFAULT, **policy.get("task_limits", {})}


def rate_limit(policy: Mapping[str, Any], scope: str, per: str) -> int:
    """Requests per minute the tenant allows in `scope` ("triggers", "reads") `per`
    ("per_token", "per_tenant"): its policy's, else the platform's default. 0: no limit."""
    limits: Mapping[str, Any] = policy.get("rate_limits", {}).get(scope, {})
    return int(limits.get(per, settings.RATE_LIMITS[scope][per]))


def retention_days(policy: Mapping[str, Any]) -> int:
    """Days the tenant's finished runs and old events are kept (0: forever): its policy's,
    else the platform's default, never more than the platform's maximum (0: none)."""
    own = policy.get("retention_days")
    days = int(settings.RETENTION_DAYS_DEFAULT if own is None else own)
    maximum = int(settings.RETENTION_DAYS_MAX)
    if maximum and (days == 0 or days > maximum):
        return maximum
    return days


def task_network(policy: Mapping[str, Any]) -> str:
    return str(policy.get("task_network", "egress"))


MAP_LENGTH_DEFAULT, MAP_LENGTH_MAX = 10_000, 100_000
SHARE_MAX = 1000


def max_map_length(policy: Mapping[str, Any]) -> int:
    """The most instances one mapped task of the tenant may fan out into."""
    return int(policy.get("max_map_length") or MAP_LENGTH_DEFAULT)


def fair_share(policy: Mapping[str, Any]) -> int:
    """The tenant's weight when busy workers are shared between tenants (1 by default)."""
    return int(policy.get("share") or 1)


def task_queue(policy: Mapping[str, Any]) -> str | None:
    """The Celery queue of the tenant's tasks, or None for the shared one."""
    queue = policy.get("task_queue")
    return str(queue) if queue else None
