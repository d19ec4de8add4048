"""Every response carries an X-Request-ID (the caller's, when well formed); audit events
and logs of the request carry the same id. API paths answer with and without their
trailing slash."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import is_valid_path

from orchestrator import metrics
from orchestrator.context import new_request_id, request_id_context
from orchestrator.logs import add_log_fields, log_context

__all__ = [
    "FORGIVING_PATH_PREFIXES",
    "ForgivingPathMiddleware",
    "RequestIDMiddleware",
    "RequestMetricsMiddleware",
]


class RequestIDMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = new_request_id(request.headers.get("X-Request-ID"))
        request.request_id = request_id  # type: ignore[attr-defined]
        with request_id_context(request_id), log_context():
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response

    def process_view(
        self, request: HttpRequest, view: Any, args: Any, kwargs: dict[str, Any]
    ) -> None:
        """What the URL names, on the request's log records."""
        add_log_fields(
            tenant=kwargs.get("tenant"), workflow=kwargs.get("workflow"), run=kwargs.get("run_id")
        )


class RequestMetricsMiddleware:
    """Each request's latency by its route's pattern (`api/v1/tenants/<slug:tenant>/runs/`,
    never the path: a run id is no label), method and status class; a path that matched no
    route counts as `unmatched`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        route = match.route if match is not None and match.route else "unmatched"
        metrics.observe(
            "orc_http_request_duration_seconds",
            time.perf_counter() - started,
            route=route,
            method=request.method if request.method in KNOWN_METHODS else "other",
            status=f"{response.status_code // 100}xx",
        )
        return response


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# Paths that services call: they answer with and without their trailing slash, for every
# method, without a redirect. Pages for browsers (the admin) keep Django's APPEND_SLASH
# redirect, so that the address bar shows the canonical path.
FORGIVING_PATH_PREFIXES = ("/api/", "/healthz", "/readyz", "/metrics", "/graphql")


class ForgivingPathMiddleware:
    """Serves an API path whose trailing slash is missing (or extra) as its canonical path.

    Near the end of MIDDLEWARE, so it costs nothing when the path resolves: only a response of
    a path that resolved to no view (a 404 with no `resolver_match`) makes it try the path
    with its trailing slash toggled, and when that one resolves, the request goes to its
    view, as if the caller had sent it (`request.path` and `path_info` say the canonical
    path). Placed after CommonMiddleware, which therefore never sees that 404 and never
    answers APPEND_SLASH's redirect (a 301 that drops a POST's body, or a 500 in DEBUG)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code != 404 or request.resolver_match is not None:
            return response
        canonical = self._canonical_path(request)
        if canonical is None:
            return response
        script_name = request.path[: len(request.path) - len(request.path_info)]
        request.path_info = canonical
        request.path = script_name + canonical
        return self.get_response(request)

    @staticmethod
    def _canonical_path(request: HttpRequest) -> str | None:
        path = request.path_info
        if not path.startswith(FORGIVING_PATH_PREFIXES):
            return None
        toggled = path[:-1] if path.endswith("/") else f"{path}/"
        urlconf = getattr(request, "urlconf", None)
        return toggled if toggled and is_valid_path(toggled, urlconf) else None
