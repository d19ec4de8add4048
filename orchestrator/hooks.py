"""What the public webhook endpoints answer (events' `/hooks/<uid>`, gitsync's
`/hooks/git/<uid>`): a status, a JSON body (problems as problem+json, with the field paths
of `errors` where there are any) and headers; and the answers every such endpoint gives
alike (a method other than POST, a body too large, a rate limit)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.http import JsonResponse

from orchestrator.ratelimit import RateLimited

__all__ = ["Received", "not_allowed", "problem", "rate_limited", "respond", "too_large"]


@dataclass(frozen=True)
class Received:
    """What a webhook endpoint answers: a status, a JSON body, and headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def problem(
    status: int,
    title: str,
    detail: str,
    errors: Iterable[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Received:
    """A problem answer; `errors`: (field path, message) pairs."""
    body: dict[str, Any] = {
        "type": f"urn:orchestrator:problem:{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    listed = [{"path": path, "message": message} for path, message in errors or ()]
    if listed:
        body["errors"] = listed
    return Received(status, body, dict(headers or {}))


def not_allowed(method: str, what: str) -> Received:
    """405: `what` ("a webhook URL") takes POST only."""
    detail = f"{what} takes POST only, not {method}"
    return problem(405, "Method Not Allowed", detail, headers={"Allow": "POST"})


def too_large(detail: str) -> Received:
    return problem(413, "Payload Too Large", detail)


def rate_limited(exc: RateLimited) -> Received:
    headers = {"Retry-After": str(exc.retry_after)}
    return problem(429, "Too Many Requests", exc.message, headers=headers)


def respond(received: Received) -> JsonResponse:
    """The HTTP response of an answer (problem+json from 400 on)."""
    response = JsonResponse(
        received.body,
        status=received.status,
        content_type="application/json" if received.status < 400 else "application/problem+json",
    )
    for name, value in received.headers.items():
        response[name] = value
    return response
