"""Every response carries an X-Request-ID (the caller's, when well formed); audit events
and logs of the request carry the same id."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from orchestrator.context import new_request_id, request_id_context

__all__ = ["RequestIDMiddleware"]


class RequestIDMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = new_request_id(request.headers.get("X-Request-ID"))
        request.request_id = request_id  # type: ignore[attr-defined]
        with request_id_context(request_id):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
