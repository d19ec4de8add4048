"""Read queries of notification channels, rules, deliveries and SLA misses. Callers are
inside the tenant's scope; filters come checked (REST and GraphQL check them alike here)."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from notifications.models import Channel, Delivery, Rule, SlaMiss
from orchestrator.errors import Invalid, NotFound
from orchestrator.integers import ascii_int

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

_MAX_ID = 2**63 - 1  # bigint: a larger id names no row


def all_channels() -> QuerySet[Channel]:
    return Channel.objects.select_related("tenant", "created_by", "updated_by")


def get_channel(name: str) -> Channel:
    channel = all_channels().filter(name=name).first()
    if channel is None:
        raise NotFound(f"notification channel {name!r} not found")
    return channel


def all_rules() -> QuerySet[Rule]:
    # Channels are tenant-owned: the prefetch runs in the caller's scope as well.
    channels = Prefetch("channels", queryset=Channel.objects.order_by("name").only("name"))
    return Rule.objects.select_related("tenant").prefetch_related(channels)


def get_rule(name: str) -> Rule:
    rule = all_rules().filter(name=name).first()
    if rule is None:
        raise NotFound(f"notification rule {name!r} not found")
    return rule


def _choice(path: str, value: str | None, accepted: list[str]) -> str | None:
    if value and value not in accepted:
        raise Invalid([(path, f"{value!r} is not one of: {', '.join(accepted)}")])
    return value or None


def _id(path: str, value: str | int | None) -> int | None:
    if value is None or value == "":
        return None
    number = ascii_int(str(value), maximum=_MAX_ID)
    if number is None:
        raise Invalid([(path, f"{value!r} is not an id; accepted: a positive integer")])
    return number


def delivery_list(
    *,
    status: str | None = None,
    channel: str | None = None,
    type: str | None = None,
    workflow: str | None = None,
    run: str | int | None = None,
) -> QuerySet[Delivery]:
    """Newest first, with what a delivery's representation shows."""
    qs = Delivery.objects.select_related("channel", "event", "event__workflow")
    if status := _choice("status", status, Delivery.Status.values):
        qs = qs.filter(status=status)
    if channel:
        qs = qs.filter(channel__name=channel)
    if type:
        qs = qs.filter(event__type=type)
    if workflow:
        qs = qs.filter(event__workflow__name=workflow)
    if (run_id := _id("run", run)) is not None:
        qs = qs.filter(event__run_id=run_id)
    return qs.order_by("-id")


def get_delivery(delivery_id: str | int) -> Delivery:
    pk = ascii_int(str(delivery_id), maximum=_MAX_ID)
    delivery = delivery_list().filter(pk=pk).first() if pk else None
    if delivery is None:
        raise NotFound(f"delivery {delivery_id!r} not found")
    return delivery


def sla_miss_list(
    *,
    workflow: str | None = None,
    kind: str | None = None,
    run: str | int | None = None,
) -> QuerySet[SlaMiss]:
    """Newest first, with what a miss's representation shows."""
    qs = SlaMiss.objects.select_related("workflow", "event")
    if workflow:
        qs = qs.filter(workflow__name=workflow)
    if kind := _choice("kind", kind, SlaMiss.Kind.values):
        qs = qs.filter(kind=kind)
    if (run_id := _id("run", run)) is not None:
        qs = qs.filter(run_id=run_id)
    return qs.order_by("-id")


def get_sla_miss(miss_id: str | int) -> SlaMiss:
    pk = ascii_int(str(miss_id), maximum=_MAX_ID)
    miss = sla_miss_list().filter(pk=pk).first() if pk else None
    if miss is None:
        raise NotFound(f"SLA miss {miss_id!r} not found")
    return miss
