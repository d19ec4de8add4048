"""What happened: backfills with their progress, and the tenant's audit log."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.urls import path

from orchestrator.models import AuditEvent
from orchestrator.selectors import audit_log
from portal.pages import (
    KeysetPage,
    TenantPage,
    fingerprint,
    is_htmx,
    keyset_page,
    time_filter,
    unchanged,
)
from runs.backfills import backfill_list, progress
from runs.models import Backfill

__all__ = ["AuditPage", "BackfillListPage", "urlpatterns"]

PAGE_SIZE = 50


class BackfillListPage(TenantPage):
    """Backfills newest first, each with its progress; the table refreshes itself every
    5 s while any backfill on the page is still running."""

    permission = "backfill.view"
    template_name = "portal/history/backfills.html"
    part_template_name = "portal/history/backfills_table.html"
    nav = "backfills"

    def context(self, **kwargs: Any) -> dict[str, Any] | HttpResponse:
        get = self.request.GET
        workflow, state = get.get("workflow", "").strip(), get.get("state", "")
        qs = backfill_list()
        if workflow:
            qs = qs.filter(workflow__name=workflow)
        if state in Backfill.State.values:
            qs = qs.filter(state=state)
        page = keyset_page(
            qs, key="id", descending=True, cursor=get.get("cursor"), size=PAGE_SIZE, parse=int
        )
        rows = [(backfill, progress(backfill)) for backfill in page.items]
        live = any(b.state in (Backfill.State.RUNNING, Backfill.State.PAUSED) for b, _ in rows)
        seen = fingerprint([(b.pk, b.state, sorted(p.items())) for b, p in rows])
        if is_htmx(self.request) and (nothing_new := unchanged(self.request, seen)):
            return nothing_new
        return {
            "rows": rows,
            "page": page,
            "live": live,
            "seen": seen,
            "filters": {"workflow": workflow, "state": state},
            "states": Backfill.State.values,
        }

    def context_after_error(self, **kwargs: Any) -> dict[str, Any]:
        return {"rows": [], "filters": {}, "states": Backfill.State.values}


class AuditPage(TenantPage):
    """Every change in the tenant, newest first, filterable like the API's audit-events/."""

    permission = "audit.view"
    template_name = "portal/history/audit.html"
    nav = "audit"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        get = self.request.GET
        filters = {name: get.get(name, "").strip() for name in ("actor", "action", "object")}
        events = audit_log(
            actor=filters["actor"],
            action=filters["action"],
            obj=filters["object"],
            since=time_filter(self.request, "since"),
            until=time_filter(self.request, "until"),
        ).select_related(None)
        page = keyset_page(
            events, key="id", descending=True, cursor=get.get("cursor"), size=PAGE_SIZE, parse=int
        )
        return {
            "page": page,
            "events": [(event, _changes(event)) for event in page.items],
            "filters": filters | {"since": get.get("since", ""), "until": get.get("until", "")},
        }

    def context_after_error(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "events": [],
            "filters": {
                name: self.request.GET.get(name, "")
                for name in ("actor", "action", "object", "since", "until")
            },
        }


def _page(queryset: QuerySet[Any], cursor: str | None) -> KeysetPage[Any]:
    return keyset_page(
        queryset, key="id", descending=True, cursor=cursor, size=PAGE_SIZE, parse=int
    )


def _changes(event: AuditEvent) -> list[tuple[str, Any, Any]]:
    """(field, before, after) for each field the event changed; secrets are already masked
    in the log itself (orchestrator.audit)."""
    changes = event.changes or {}
    before, after = changes.get("before") or {}, changes.get("after") or {}
    if not isinstance(before, dict) or not isinstance(after, dict):
        return [("", before, after)]
    fields = sorted(set(before) | set(after))
    rows = [(f, before.get(f), after.get(f)) for f in fields if before.get(f) != after.get(f)]
    extra = changes.get("extra")
    return rows + ([("(details)", None, extra)] if extra else [])


urlpatterns = [
    path("backfills/", BackfillListPage.as_view(), name="backfills"),
    path("audit/", AuditPage.as_view(), name="audit"),
]
