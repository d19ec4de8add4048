"""The connections API's `test` action: can this installation reach the connection? One
probe per kind, the same code the tasks use (the SSRF guard for http, the platform
database refusal for SQL)."""

from __future__ import annotations

from collections.abc import Sequence

from runs.taskapi import ConnectionInfo

__all__ = ["check"]


def check(info: ConnectionInfo, allowed_hosts: Sequence[str]) -> tuple[bool, str]:
    """(reached, what happened), in words safe to show: no password, no header value."""
    if info.kind == "http":
        from runs import http_task

        return http_task.probe(info, allowed_hosts)
    from runs import sql_task

    return sql_task.probe(info)
