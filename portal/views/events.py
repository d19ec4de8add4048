"""The tenant's event log in the portal (docs/events.md, "The event log and the events
API"): every event, the engine's own and the published ones, newest first, as the
CloudEvent the API returns, with the runs each one started here; filtered by type. An
operator publishes one with a small form, through the service the API's POST calls (the
same checks, the same audit entry, the same trigger budget)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from django.urls import path, reverse

from orchestrator.errors import Invalid
from portal.actions import FieldErrors, TenantForm, by_field
from portal.pages import TenantPage, keyset_page
from runs.engine.events import cloudevent
from runs.eventlog import publish_event
from runs.models import Event
from runs.selectors import event_list, runs_started_by

__all__ = ["EventPublish", "EventsPage", "publish_defaults", "urlpatterns"]

PAGE_SIZE = 50
FIELDS = ("type", "source", "subject", "id", "data")


def publish_defaults() -> dict[str, str]:
    """What the publish form starts with."""
    return {"source": "/portal", "data": "{}"}


class EventsPage(TenantPage):
    """Newest first, by keyset pages of the log's ids; `?type=` one type."""

    permission = "event.view"
    template_name = "portal/events/events.html"
    nav = "events"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        chosen = self.filters()["type"]
        page = keyset_page(
            event_list(types=[chosen] if chosen else ()),
            key="id",
            descending=True,
            cursor=self.request.GET.get("cursor"),
            size=PAGE_SIZE,
            parse=int,
        )
        envelopes = [cloudevent(event, self.tenant.slug) for event in page.items]
        started = runs_started_by([envelope["id"] for envelope in envelopes])
        rows = [
            (event, envelope, json.dumps(envelope, indent=2), started.get(envelope["id"], []))
            for event, envelope in zip(page.items, envelopes, strict=True)
        ]
        return self.common() | {"page": page, "rows": rows}

    def context_after_error(self, **kwargs: Any) -> dict[str, Any]:
        return self.common() | {"rows": []}

    def common(self) -> dict[str, Any]:
        return {
            "filters": self.filters(),
            "engine_types": Event.Type.values,
            "publish": publish_defaults(),
        }

    def filters(self) -> dict[str, str]:
        return {"type": self.request.GET.get("type", "").strip()}


class EventPublish(TenantForm):
    """GET: the form alone; POST: publish, then back to the log. An `id` published before
    from the same source publishes nothing new, and says so."""

    permission = "event.publish"
    api_action = "create"  # it may start runs: the API's trigger budgets apply
    template_name = "portal/events/publish.html"
    nav = "events"
    fields: ClassVar[tuple[str, ...]] = FIELDS

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        return {
            "values": publish_defaults() if values is None else values,
            "errors": errors,
            "general": errors.get("", []),
            "engine_types": Event.Type.values,
        }

    def again(self, errors: FieldErrors, status: int, **kwargs: Any) -> Any:
        return super().again(by_field(errors, FIELDS), status, **kwargs)

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        post = self.request.POST
        type_ = post.get("type", "").strip()
        event, created = publish_event(
            actor=self.actor,
            tenant=self.tenant,
            type=type_,
            source=post.get("source", "").strip(),
            subject=post.get("subject", "").strip() or None,
            data=_data(post.get("data", "")),
            id=post.get("id", "").strip() or None,
        )
        url = reverse("portal:events", args=[self.tenant.slug])
        if not created:
            return url, (
                f"An event with id {event.external_id} from {event.source} was published "
                "before: nothing new was published."
            )
        return url, f"Event {type_} published."


def _data(text: str) -> Any:
    """The data box's JSON (empty: none)."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise Invalid([("data", f"not JSON: {exc.msg} ({where})")]) from None


urlpatterns = [
    path("events/", EventsPage.as_view(), name="events"),
    path("events/publish/", EventPublish.as_view(), name="event-publish"),
]
