"""A statement timeout for API requests on PostgreSQL: no query of a REST or GraphQL request
runs longer than API_STATEMENT_TIMEOUT_MS; the request answers 503 (REST) or a TIMEOUT
error (GraphQL) instead of holding a web thread and a database backend.

Set per request and reset after it, on the web process's own connection: the connection
is reused (CONN_MAX_AGE) by later requests, never by a Celery worker (another process;
only the embedded mode runs both in one process, on SQLite, where this does nothing)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, OperationalError, connection
from django.http import HttpRequest, HttpResponse

__all__ = ["API_PATHS", "StatementTimeoutMiddleware", "is_statement_timeout", "timeout_message"]

API_PATHS = ("/api/", "/graphql")
QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement cancelled by its timeout
log = logging.getLogger(__name__)


def is_statement_timeout(exc: BaseException) -> bool:
    return (
        isinstance(exc, OperationalError)
        and getattr(exc.__cause__, "pgcode", None) == QUERY_CANCELED
    )


def timeout_message() -> str:
    return (
        f"a database query of this request took longer than "
        f"{settings.API_STATEMENT_TIMEOUT_MS} ms, the limit: ask for less "
        "(a smaller limit, narrower filters) or try again later"
    )


class StatementTimeoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        timeout = settings.API_STATEMENT_TIMEOUT_MS
        if (
            timeout <= 0
            or connection.vendor != "postgresql"
            or not request.path_info.startswith(API_PATHS)
        ):
            return self.get_response(request)
        applied = _TimeoutOnFirstQuery(timeout)
        try:
            with connection.execute_wrapper(applied):
                return self.get_response(request)
        finally:
            if applied.done:
                _reset_timeout()


class _TimeoutOnFirstQuery:
    """Sets the timeout just before the request's first query, so a request that never
    queries (a 401, a 413) costs no round trip and opens no connection."""

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self.done = False

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        if not self.done:
            self.done = True
            # The driver's own cursor: this statement does not pass through the wrapper again.
            context["cursor"].cursor.execute("SET statement_timeout = %s", [self.timeout_ms])
        return execute(sql, params, many, context)


def _reset_timeout() -> None:
    """Back to the server's default; a connection that cannot say so is not reused."""
    if connection.connection is None:
        return  # closed during the request: the next one starts without the setting
    try:
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")
    except DatabaseError:
        if connection.in_atomic_block:
            return  # the enclosing transaction's rollback undoes the SET as well
        log.warning("statement_timeout could not be reset; closing the connection")
        connection.close()
