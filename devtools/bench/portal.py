"""The portal's pages timed at the bench's table sizes (1M task instance rows, seeded by
list-1m): each page fetched over HTTP from the bench's gunicorn with a signed-in
session, as a browser would, its p50 and p99 recorded (docs/performance.md)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from devtools.bench.stats import Client, percentile
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs.models import WorkflowRun

__all__ = ["PAGES", "page_times", "session_cookie"]

# name -> path under /t/<tenant>/; {seeded} is a run of the 100-task seeded workflow (no
# attempts), {ran} a 100-task chain run the workers executed (attempts, a gantt).
PAGES = {
    "workflows": "workflows/",
    "workflow": "workflows/bench-seeded/",
    "versions": "workflows/bench-seeded/versions/",
    "runs": "runs/",
    "runs-filtered": "runs/?workflow=bench-seeded&state=success",
    "run-seeded": "runs/{seeded}/",
    "run": "runs/{ran}/",
    "run-live": "runs/{ran}/live/?seen=changed",
    "task": "runs/{ran}/tasks/t0050/",
    "backfills": "backfills/",
    "audit": "audit/",
}


def session_cookie(user: Any) -> str:
    """A signed-in session for `user`, made the way django.contrib.auth.login makes one."""
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def page_times(api: str, tenant: Tenant, user: Any, requests: int = 40) -> dict[str, float]:
    """p50 and p99 of each page over `requests` fetches (the first, a warm-up, dropped)."""
    parts = urlsplit(api)
    with tenant_scope([tenant]):
        runs = WorkflowRun.objects.filter(state="success").order_by("-id")
        # A run from the middle of the seeded table, not its newest page.
        seeded = list(
            runs.filter(workflow__name="bench-seeded").values_list("id", flat=True)[:5001]
        )[-1]
        ran = runs.filter(workflow__name="bench-chain-100").values_list("id", flat=True)[0]
    client = Client(f"{parts.scheme}://{parts.netloc}", cookie=session_cookie(user))
    figures: dict[str, float] = {}
    try:
        for name, path in PAGES.items():
            url = f"/t/{tenant.slug}/" + path.format(seeded=seeded, ran=ran)
            headers = {"HX-Request": "true"} if name == "run-live" else {}
            times = []
            for index in range(requests + 1):
                status, body, took = client.page(url, headers)
                if status != 200 or not re.search(rb"</html>|</div>", body):
                    raise AssertionError(f"{url}: {status} {body[:300]!r}")
                if index:
                    times.append(took * 1000)
            figures[f"{name}_p50_ms"] = percentile(times, 50)
            figures[f"{name}_p99_ms"] = percentile(times, 99)
    finally:
        client.close()
    return figures
