"""Read queries of notification channels, rules, deliveries and SLA misses. Callers are
inside the tenant's scope."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from notifications.models import Channel, Delivery, Rule, SlaMiss
from orchestrator.errors import Invalid, NotFound
from orchestrator.integers import ascii_int
from runs.models import Event

__all__ = [
    "all_channels",
    "all_rules",
    "delivery_list",
    "get_channel",
    "get_delivery",
    "get_rule",
    "get_sla_miss",
    "sla_miss_list",
]


def all_channels() -> QuerySet[Channel]:
    return Channel.objects.select_related("tenant", "created_by", "updated_by")


def get_channel(name: str) -> Channel:
    channel = all_channels().filter(name=name).first()
    if channel is None:
        raise NotFound(f"notification channel {name!r} not found")
    return channel


def all_rules() -> QuerySet[Rule]:
    return Rule.objects.select_related("tenant", "created_by", "updated_by").prefetch_related(
        "channels"
    )


def get_rule(name: str) -> Rule:
    rule = all_rules().filter(name=name).first()
    if rule is None:
        raise NotFound(f"notification rule {name!r} not found")
    return rule


def _choice(path: str, value: str | None, accepted: list[str]) -> str | None:
    if value and value not in accepted:
        raise Invalid([(path, f"{value!r} is not accepted; accepted: {', '.join(accepted)}")])
    return value or None


def delivery_list(
    *,
    base: QuerySet[Delivery] | None = None,
    status: str | None = None,
    channel: str | None = None,
    event_type: str | None = None,
    workflow: str | None = None,
    run_id: int | None = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
) -> QuerySet[Delivery]:
    """Newest first, with what a delivery's representation shows; `base` narrows further
    (an interface's queryset)."""
    qs = (Delivery.objects.all() if base is None else base).select_related(
        "channel", "rule", "event", "event__workflow"
    )
    if status := _choice("status", status, Delivery.Status.values):
        qs = qs.filter(status=status)
    if channel:
        qs = qs.filter(channel__name=channel)
    if event_type := _choice("type", event_type, Event.Type.values):
        qs = qs.filter(event__type=event_type)
    if workflow:
        qs = qs.filter(event__workflow__name=workflow)
    if run_id is not None:
        qs = qs.filter(event__run_id=run_id)
    if created_after:
        qs = qs.filter(created_at__gte=created_after)
    if created_before:
        qs = qs.filter(created_at__lt=created_before)
    return qs.order_by("-id")


def get_delivery(delivery_id: str | int) -> Delivery:
    pk = ascii_int(delivery_id)
    delivery = delivery_list().filter(pk=pk).first() if pk else None
    if delivery is None:
        raise NotFound(f"delivery {delivery_id!r} not found")
    return delivery


def sla_miss_list(
    *,
    base: QuerySet[SlaMiss] | None = None,
    workflow: str | None = None,
    kind: str | None = None,
    run_id: int | None = None,
) -> QuerySet[SlaMiss]:
    """Newest first, with what a miss's representation shows."""
    qs = (SlaMiss.objects.all() if base is None else base).select_related("workflow", "event")
    if workflow:
        qs = qs.filter(workflow__name=workflow)
    if kind := _choice("kind", kind, SlaMiss.Kind.values):
        qs = qs.filter(kind=kind)
    if run_id is not None:
        qs = qs.filter(run_id=run_id)
    return qs.order_by("-id")


def get_sla_miss(miss_id: str | int) -> SlaMiss:
    pk = ascii_int(miss_id)
    miss = sla_miss_list().filter(pk=pk).first() if pk else None
    if miss is None:
        raise NotFound(f"SLA miss {miss_id!r} not found")
    return miss
