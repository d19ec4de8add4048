"""The connections API's `test` action: can this installation reach the connection? One
probe per kind, the same code the tasks use (the network guard for http and SQL, the
platform database refusal for SQL). Registered with `connections` when the app is ready
(`connections.services.register_connection_test`): connections knows no task type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connections.info import ConnectionInfo
from runs.tasktypes import http, sql

__all__ = ["check"]


def check(
    info: ConnectionInfo, policy: Mapping[str, Any], tenant_slug: str = ""
) -> tuple[bool, str]:
    """(reached, what happened), in words safe to show: no password, no header value.
    `policy`: the tenant's (its http_allowed_hosts and sql_allowed_hosts)."""
    refusal = sql.sqlite_refusal(info, tenant_slug)
    if refusal is not None:
        return False, refusal
    if info.kind == "http":
        return http.probe(info, policy.get("http_allowed_hosts", []))
    return sql.probe(info, policy.get("sql_allowed_hosts", []))
