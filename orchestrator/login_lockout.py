"""Hooks of the login lockout (django-axes, configured in settings "Login lockout"): which
address a login comes from, and the page a locked-out login gets.

Axes counts failed logins per (username, client address) and refuses that pair once it
reaches LOGIN_FAILURE_LIMIT, until LOGIN_COOLOFF_SECONDS pass without another failure.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from axes.helpers import get_cool_off, get_failure_limit
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

__all__ = ["client_ip", "describe_duration", "lockout_response"]


def client_ip(request: HttpRequest) -> str | None:
    """The address a request comes from. Behind TRUST_X_FORWARDED_FOR = N proxies, each of
    which appends the address it received the request from to X-Forwarded-For, the N-th
    entry from the right (the leftmost ones are whatever the client chose to send)."""
    proxies: int = settings.TRUST_X_FORWARDED_FOR
    if proxies > 0:
        forwarded = [
            part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        ]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= proxies:
            return str(forwarded[-proxies])
    remote = request.META.get("REMOTE_ADDR")
    return str(remote) if remote else None


def describe_duration(delta: timedelta) -> str:
    """15 minutes, 1 hour 30 minutes, 45 seconds: a cool-off in words."""
    seconds = max(0, round(delta.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    units = [(hours, "hour"), (minutes, "minute"), (seconds, "second")]
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in units if n]
    return " ".join(words) or "0 seconds"


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """429 Too Many Requests, with a page that says how long the lockout lasts and a
    Retry-After header of the same."""
    cool_off = get_cool_off(request)
    context = {
        "failure_limit": get_failure_limit(request, credentials),
        "cool_off": describe_duration(cool_off) if cool_off else None,
    }
    response = HttpResponse(
        render_to_string("orchestrator/lockout.html", context, request=request), status=429
    )
    if cool_off:
        response["Retry-After"] = str(max(1, round(cool_off.total_seconds())))
    return response
