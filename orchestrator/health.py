"""Probes: /healthz says the process serves; /readyz that the database and broker answer,
and whether tasks run sandboxed (informational: it does not change readiness)."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from orchestrator.celery import app, broker_reachable

__all__ = ["healthz", "readyz"]


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["database"] = f"error: {type(exc).__name__}: {exc}"
    error = broker_reachable(app)
    checks["broker"] = "ok" if error is None else f"error: {error}"
    ready = all(v == "ok" for v in checks.values())
    sandbox = (
        "on"
        if settings.TASK_SANDBOX == "on"
        else "off: tasks run as the worker's own processes (single-tenant installations only)"
    )
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks, "task_sandbox": sandbox},
        status=200 if ready else 503,
    )
