"""The connections API's `test` action: can this installation reach the connection? One
probe per kind, the same code the tasks use (the network guard for http and SQL, the
platform database refusal for SQL)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings

from runs.taskapi import ConnectionInfo

__all__ = ["check", "sqlite_refusal"]


def sqlite_refusal(info: ConnectionInfo, tenant_slug: str) -> str | None:
    """Why a tenant may not open this SQLite file, or None. With SQLITE_TASK_ROOT set, each
    tenant's files live under <root>/<tenant slug>/: a path outside it (another tenant's
    warehouse, any file the worker can read) is refused."""
    root = settings.SQLITE_TASK_ROOT
    if info.kind != "sqlite" or not root or info.database == ":memory:":
        return None
    allowed = (Path(root) / tenant_slug).resolve()
    if not Path(info.database).resolve().is_relative_to(allowed):
        return (
            f"connection {info.name!r}: SQLite files of this tenant must be under {allowed}/ "
            "(platform setting SQLITE_TASK_ROOT)"
        )
    return None


def check(
    info: ConnectionInfo, policy: Mapping[str, Any], tenant_slug: str = ""
) -> tuple[bool, str]:
    """(reached, what happened), in words safe to show: no password, no header value.
    `policy`: the tenant's (its http_allowed_hosts and sql_allowed_hosts)."""
    refusal = sqlite_refusal(info, tenant_slug)
    if refusal is not None:
        return False, refusal
    if info.kind == "http":
        from runs import http_task

        return http_task.probe(info, policy.get("http_allowed_hosts", []))
    from runs import sql_task

    return sql_task.probe(info, policy.get("sql_allowed_hosts", []))
