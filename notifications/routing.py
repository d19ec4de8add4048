"""The outbox consumer: each new event is matched against the tenant's rules and its
workflow spec's `notify`, and becomes one Delivery per channel, in one transaction with
marking the event routed (so a crash routes it again, whole, and never twice). Quiet
periods collapse a storm of one workflow on one channel into one message and a count."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from notifications import delivery
from notifications.models import Channel, Delivery, QuietWindow, Rule
from orchestrator.context import tenant_scope
from runs.models import Event
from workflows.models import Workflow
from workflows.spec import EVENT_TYPES

__all__ = ["flush_quiet_windows", "route", "route_leftovers", "route_one"]

logger = logging.getLogger(__name__)

# An event not routed this long after it was written lost its after-commit message.
LEFTOVER_AFTER = dt.timedelta(seconds=5)
BATCH = 500


@dataclass(frozen=True)
class Target:
    channel: Channel
    rule: Rule | None  # None: the workflow spec's notify
    quiet_period: int


def route(event_ids: Iterable[int]) -> int:
    """Route each event (one transaction each); returns the deliveries made."""
    return sum(route_one(event_id) for event_id in event_ids)


def route_one(event_id: int) -> int:
    with transaction.atomic():
        now = timezone.now()
        if (
            Event.objects.dangerously_unscoped()
            .filter(pk=event_id, routed_at__isnull=True)
            .update(routed_at=now)
            != 1
        ):
            return 0  # routed already (a redelivered message, or the reconciler was first)
        event = (
            Event.objects.dangerously_unscoped()
            .select_related("workflow", "run__version", "workflow__current_version")
            .get(pk=event_id)
        )
        made: list[int] = []
        with tenant_scope([event.tenant_id]):  # the routing of one tenant's event
            for target in _targets(event):
                made += _deliveries(event, target, now)
        delivery.send_after_commit(made)
        return len(made)


def _targets(event: Event) -> list[Target]:
    """The channels this event goes to: each enabled channel once, with the shortest quiet
    period of the routes that chose it (the spec's notify has none)."""
    if event.type not in EVENT_TYPES:  # a dataset update or a published event: not news
        return []
    workflow = event.workflow
    chosen: dict[int, Target] = {}

    def add(channel: Channel, rule: Rule | None, quiet: int) -> None:
        if not channel.enabled:
            return
        known = chosen.get(channel.pk)
        if known is None or quiet < known.quiet_period:
            chosen[channel.pk] = Target(channel, rule, quiet)

    rules = (
        Rule.objects.dangerously_unscoped()
        .filter(tenant_id=event.tenant_id, enabled=True)
        .prefetch_related("channels")
        .order_by("id")
    )
    for rule in rules:
        if _matches(rule, event, workflow):
            for channel in rule.channels.all():
                add(channel, rule, rule.quiet_period if workflow is not None else 0)
    names = _notified_channels(event)
    if names:
        for channel in Channel.objects.dangerously_unscoped().filter(
            tenant_id=event.tenant_id, name__in=names
        ):
            add(channel, None, 0)
    return list(chosen.values())


def _matches(rule: Rule, event: Event, workflow: Workflow | None) -> bool:
    if rule.event_types and event.type not in rule.event_types:
        return False
    if rule.workflows and (workflow is None or workflow.name not in rule.workflows):
        return False
    return not rule.tags or (workflow is not None and bool(set(rule.tags) & set(workflow.tags)))


def _notified_channels(event: Event) -> list[str]:
    """The channels the workflow's spec names for this event type: the spec of the run's
    version, else (no run: a deadline missed) the workflow's current one."""
    version = event.run.version if event.run is not None else None
    if version is None and event.workflow is not None:
        version = event.workflow.current_version
    notify = (version.spec or {}).get("notify") if version is not None else None
    if not notify or event.type not in notify.get("on", []):
        return []
    return list(notify.get("channels", []))


def _deliveries(event: Event, target: Target, now: dt.datetime) -> list[int]:
    """The delivery of the event to one channel (pending, or suppressed inside a quiet
    period); returns the ids of pending deliveries made (a quiet period's summary too)."""
    status = Delivery.Status.PENDING
    made: list[int] = []
    if target.quiet_period and target.rule is not None and event.workflow_id is not None:
        window = _window(event, target, now)
        if window.ends_at > now:
            window.suppressed += 1
            window.last_event = event
            window.save(update_fields=["suppressed", "last_event"])
            status = Delivery.Status.SUPPRESSED
        else:
            made += _summarize(window)
            window.ends_at = now + dt.timedelta(seconds=target.quiet_period)
            window.save(update_fields=["ends_at"])
    row, created = Delivery.objects.dangerously_unscoped().get_or_create(
        tenant_id=event.tenant_id,
        key=f"e{event.pk}:c{target.channel.pk}",
        defaults={"event": event, "channel": target.channel, "rule": target.rule, "status": status},
    )
    if created and status == Delivery.Status.PENDING:
        made.append(row.pk)
    return made


def _window(event: Event, target: Target, now: dt.datetime) -> QuietWindow:
    """The quiet window of (rule, channel, workflow), locked; made (already ended) if new."""
    assert target.rule is not None
    assert event.workflow_id is not None
    lookup = {"rule": target.rule, "channel": target.channel, "workflow_id": event.workflow_id}
    windows = QuietWindow.objects.dangerously_unscoped().select_for_update()
    window = windows.filter(**lookup).first()
    if window is None:
        try:
            with transaction.atomic():  # a savepoint: another router may make it first
                QuietWindow.objects.dangerously_unscoped().create(
                    tenant_id=event.tenant_id, ends_at=now, **lookup
                )
        except IntegrityError:
            pass
        window = windows.get(**lookup)
    return window


def _summarize(window: QuietWindow) -> list[int]:
    """The (locked) window's summary delivery, if it suppressed anything; resets the count."""
    if not window.suppressed or window.last_event_id is None:
        return []
    window.summaries += 1
    row = Delivery.objects.dangerously_unscoped().create(
        tenant_id=window.tenant_id,
        key=f"q{window.pk}:{window.summaries}",
        event_id=window.last_event_id,
        channel_id=window.channel_id,
        rule_id=window.rule_id,
        kind=Delivery.Kind.SUMMARY,
        suppressed_count=window.suppressed,
    )
    window.suppressed = 0
    window.save(update_fields=["suppressed", "summaries"])
    return [row.pk]


def flush_quiet_windows() -> int:
    """Send the count of every quiet period that has ended with events suppressed."""
    now = timezone.now()
    due = list(
        QuietWindow.objects.dangerously_unscoped()
        .filter(suppressed__gt=0, ends_at__lte=now)
        .values_list("id", flat=True)[:BATCH]
    )
    sent = 0
    for window_id in due:
        with transaction.atomic():
            window = (
                QuietWindow.objects.dangerously_unscoped()
                .select_for_update()
                .filter(pk=window_id, suppressed__gt=0, ends_at__lte=now)
                .first()
            )
            if window is not None:
                made = _summarize(window)
                delivery.send_after_commit(made)
                sent += len(made)
    return sent


def route_leftovers() -> int:
    """Route events whose after-commit message was lost (a crash, a broker outage)."""
    ids = list(
        Event.objects.dangerously_unscoped()
        .filter(routed_at__isnull=True, time__lt=timezone.now() - LEFTOVER_AFTER)
        .order_by("id")
        .values_list("id", flat=True)[:BATCH]
    )
    for event_id in ids:
        try:
            route_one(event_id)
        except Exception:  # one bad event must not stop the others
            logger.exception("routing event %s failed", event_id)
    return len(ids)
