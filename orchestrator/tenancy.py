"""Tenant quotas and policy: their keys, defaults and validation (no database)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from orchestrator.errors import Invalid

__all__ = ["TASK_TYPES", "validate_policy", "validate_quotas"]

# Every task type the spec knows (DESIGN.md section 6); workflows' registry checks it matches.
TASK_TYPES = ("noop", "shell", "python", "http", "sql", "container", "wait_for")

POLICY_KEYS = {
    "allowed_task_types": "list of task types, or null for all",
    "http_allowed_hosts": "list of host names or networks the http task may reach",
    "sql_allowed_hosts": "list of host names or networks the sql task may reach",
}


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
    for key in ("http_allowed_hosts", "sql_allowed_hosts"):
        hosts = value.get(key, [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
            errors.append((f"{path}.{key}", POLICY_KEYS[key]))
    if errors:
        raise Invalid(errors)
    return dict(value)
