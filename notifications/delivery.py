"""Sending deliveries: a worker claims one with a compare-and-set (`claimed_at`), sends it
through its channel's transport and records how that went, again only while its claim
holds. Temporary errors are tried again later with exponential backoff (the time kept in
the row, not in the broker); permanent ones end the delivery `failed`.

At most once per channel: a claim whose worker died is never sent again on its own (the
message may have gone out just before), it ends `failed` saying so, and a person may
retry it."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from notifications import messages, transports
from notifications.models import Delivery
from orchestrator import audit, crypto, metrics
from orchestrator.actors import Actor
from orchestrator.celery import queue_task
from orchestrator.errors import Conflict
from orchestrator.policy import authorize

__all__ = [
    "backoff",
    "claim_timeout",
    "deliver",
    "fail_lost_claims",
    "resend_due",
    "retry_delivery",
    "send_after_commit",
]

logger = logging.getLogger(__name__)
STATUS = Delivery.Status
# A pending delivery with no claim this long after it was made lost its message.
RESEND_AFTER = dt.timedelta(seconds=10)
BATCH = 500


def send_after_commit(ids: Iterable[int]) -> None:
    """Queue the deliveries' messages once the transaction that made them commits."""
    ids = list(ids)
    if ids:
        transaction.on_commit(lambda: _enqueue(ids), robust=True)


def _enqueue(ids: list[int]) -> None:
    for delivery_id in ids:
        queue_task("notifications.deliver", delivery_id)


def claim_timeout() -> dt.timedelta:
    """How long a claim may last before its worker counts as dead: longer than any
    transport's timeout."""
    longest = max(settings.NOTIFY_TIMEOUT_SECONDS, float(settings.EMAIL_TIMEOUT or 0))
    return dt.timedelta(seconds=2 * longest + 10)


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Seconds before the next attempt: the base delay doubled per attempt made, capped,
    and never before a Retry-After the receiver asked for."""
    seconds = float(settings.NOTIFY_RETRY_DELAY_SECONDS) * 2 ** max(0, attempts - 1)
    seconds = min(seconds, float(settings.NOTIFY_RETRY_MAX_DELAY_SECONDS))
    return float(max(seconds, retry_after or 0.0))


def deliver(delivery_id: int) -> str | None:
    """Send one delivery if it is due and nobody has it; returns its new status, or None
    when it was not ours to send."""
    now = timezone.now()
    claimed = (
        Delivery.objects.dangerously_unscoped()
        .filter(pk=delivery_id, status=STATUS.PENDING, claimed_at__isnull=True)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(claimed_at=now, attempts=F("attempts") + 1)
    )
    if claimed != 1:
        return None  # sent, failed, not due yet, or another worker has it
    row = (
        Delivery.objects.dangerously_unscoped()
        .select_related("channel__tenant", "event")
        .get(pk=delivery_id)
    )
    changes: dict[str, Any]
    try:
        if not row.channel.enabled:
            raise transports.TransportError("the channel is disabled", permanent=True)
        answer = transports.send(row.channel, messages.for_delivery(row))
    except transports.TransportError as exc:
        changes = _after_error(row, exc, now)
    except crypto.DecryptionError:
        lost = transports.TransportError(
            "no configured ENCRYPTION_KEYS opens the channel's URL or secret: set it again",
            permanent=True,
        )
        changes = _after_error(row, lost, now)
    except Exception as exc:  # a bug must not leave the claim for ever: count it as temporary
        logger.exception("delivery %s failed unexpectedly", delivery_id)
        changes = _after_error(row, transports.TransportError(repr(exc), permanent=False), now)
    else:
        changes = {"status": STATUS.SENT, "sent_at": timezone.now(), "response": answer[:500]}
        changes["last_error"] = ""
    changes["claimed_at"] = None
    # Only while our claim holds: a claim declared lost meanwhile stays as it was declared.
    Delivery.objects.dangerously_unscoped().filter(pk=delivery_id, claimed_at=now).update(**changes)
    status = str(changes["status"])
    metrics.inc(
        "orc_notification_deliveries",
        tenant=row.tenant_id,
        kind=row.channel.kind,
        # pending again: it failed this time and will be tried again
        status="retrying" if status == STATUS.PENDING else status,
    )
    return status


def _after_error(row: Delivery, exc: transports.TransportError, now: dt.datetime) -> dict[str, Any]:
    error = str(exc)[:2000]
    if exc.permanent or row.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        if not exc.permanent:
            error = f"{error} (gave up after {row.attempts} attempts)"
        return {"status": STATUS.FAILED, "last_error": error}
    delay = backoff(row.attempts, exc.retry_after)
    return {
        "status": STATUS.PENDING,
        "last_error": error,
        "next_attempt_at": now + dt.timedelta(seconds=delay),
    }


def resend_due() -> int:
    """Queue pending deliveries that are due and unclaimed: retries whose time has come,
    and those whose message was lost."""
    now = timezone.now()
    ids = list(
        Delivery.objects.dangerously_unscoped()
        .filter(status=STATUS.PENDING, claimed_at__isnull=True)
        .filter(
            Q(next_attempt_at__lte=now)
            | Q(next_attempt_at__isnull=True, created_at__lt=now - RESEND_AFTER)
        )
        .order_by("id")
        .values_list("id", flat=True)[:BATCH]
    )
    _enqueue(ids)
    return len(ids)


def fail_lost_claims() -> int:
    """A claim older than any send can take: its worker died, maybe after sending. Not sent
    again (that could be a second message); failed, for a person to retry."""
    cutoff = timezone.now() - claim_timeout()
    return (
        Delivery.objects.dangerously_unscoped()
        .filter(status=STATUS.PENDING, claimed_at__lt=cutoff)
        .update(
            status=STATUS.FAILED,
            claimed_at=None,
            last_error="the worker sending it stopped before recording the outcome; not sent "
            "again automatically, as it may have arrived (retry it if it did not)",
        )
    )


@transaction.atomic
def retry_delivery(*, actor: Actor, delivery: Delivery) -> Delivery:
    """Send a failed delivery again (now; attempts go on counting)."""
    authorize(actor, "notification_delivery.retry", delivery.tenant)
    row = Delivery.objects.select_for_update().get(pk=delivery.pk)
    if row.status != STATUS.FAILED:
        raise Conflict(f"delivery {row.pk} is {row.status}: only a failed delivery can be retried")
    before = audit.snapshot(row, ["status", "attempts", "last_error"])
    row.status = STATUS.PENDING
    row.next_attempt_at = None
    row.claimed_at = None
    row.save(update_fields=["status", "next_attempt_at", "claimed_at"])
    audit.record(
        actor=actor,
        tenant=row.tenant,
        action="delivery.retry",
        obj=row,
        before=before,
        after=audit.snapshot(row, ["status", "attempts", "last_error"]),
    )
    send_after_commit([row.pk])
    return row
