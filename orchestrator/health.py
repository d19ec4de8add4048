"""Probes: /healthz says the process serves; /readyz that the database and broker answer,
and whether tasks run sandboxed (informational: it does not change readiness). /metrics:
the Prometheus exposition (docs/metrics.md), for the operator's scraper only."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from orchestrator import metrics
from orchestrator.celery import app, broker_reachable
from orchestrator.login_lockout import client_ip
from orchestrator.models import Tenant

__all__ = ["healthz", "metrics_view", "readyz"]


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


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics, to a caller with the bearer METRICS_TOKEN or from METRICS_ALLOWED_NETWORKS;
    off (404) when neither is set; anyone else gets a 403 and no number."""
    if not settings.METRICS_TOKEN and not settings.METRICS_ALLOWED_NETWORKS:
        raise Http404("metrics are off: set METRICS_TOKEN or METRICS_ALLOWED_NETWORKS")
    if not (_has_token(request) or _from_allowed_network(request)):
        return JsonResponse(
            {
                "title": "Forbidden",
                "status": 403,
                "detail": "metrics need the METRICS_TOKEN as a bearer token, or a scraper "
                "in METRICS_ALLOWED_NETWORKS",
            },
            status=403,
            content_type="application/problem+json",
        )
    from prometheus_client.exposition import choose_encoder

    # The classic text format, or OpenMetrics when the scraper asks for it.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(_Registry()), content_type=content_type)


class _Registry:
    """What prometheus-client's exposition asks of a registry: the metric families."""

    def collect(self) -> Iterator[Any]:
        return metrics.collect(_tenant_slugs)


def _tenant_slugs(ids: Iterable[int]) -> dict[int, str]:
    return dict(Tenant.objects.filter(pk__in=list(ids)).values_list("pk", "slug"))


def _has_token(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    scheme, _, token = given.partition(" ")
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    )


def _from_allowed_network(request: HttpRequest) -> bool:
    address = client_ip(request)
    if not address or not settings.METRICS_ALLOWED_NETWORKS:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for allowed in settings.METRICS_ALLOWED_NETWORKS:
        try:
            if ip in ipaddress.ip_network(allowed, strict=False):
                return True
        except ValueError:
            continue
    return False
