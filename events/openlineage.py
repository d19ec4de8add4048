"""Sending OpenLineage run events: the engine writes a `LineageEvent` row per attempt and
run event (runs.engine.lineage); after commit, a worker on the `notifications` queue sends
the attempts' pending rows through the configured transport of the OpenLineage client
(http to Marquez or any OpenLineage endpoint, console, file), oldest first.

A row is claimed with a compare-and-set that moves its `next_attempt_at` past the longest
send (a lease) and counts the attempt; the outcome is recorded only while that lease holds.
A worker that dies while sending leaves the row to be sent again once the lease lapses:
at least once, which OpenLineage consumers take (an event is identified by its run id,
type and time). An attempt's events go out in order: a row waits while an earlier one of
its attempt is pending. Temporary errors (no answer, 5xx, 408, 429) are tried again with
the notifications' backoff up to OPENLINEAGE_MAX_ATTEMPTS; others end the row `failed`.

What is sent (docs/lineage.md, "OpenLineage"): job `<workflow>.<task id>` in namespace
`<OPENLINEAGE_NAMESPACE>/<tenant>`, run id a UUID (v7) derived from the attempt, the
workflow run as the parent run, the task's `inlets` as inputs and `outlets` as outputs
(namespace `<OPENLINEAGE_NAMESPACE>://<owning tenant>`), and on FAIL the attempt's
(masked) error and the end of its log."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
from collections.abc import Iterable
from importlib import metadata
from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from orchestrator.celery import queue_task
from runs.engine.events import log_tail
from runs.graph import graph_for
from runs.models import LineageEvent, TaskAttempt, WorkflowRun
from workflows.spec import dataset_key

if TYPE_CHECKING:
    import requests
    from openlineage.client.event_v2 import RunEvent
    from openlineage.client.transport.transport import Transport

# The OpenLineage client is imported where it is used, not here: importing it takes a
# quarter of a second, which every process (web, CLI) would pay even with OpenLineage off.

__all__ = [
    "PRODUCER",
    "SendError",
    "backoff",
    "build",
    "claim_timeout",
    "dataset_namespace",
    "job_namespace",
    "parent_run_id",
    "resend_due",
    "run_id",
    "send",
    "transport",
]

logger = logging.getLogger(__name__)
STATUS = LineageEvent.Status
# Who made the events (the `producer` of every event and facet): this service, by version.
PRODUCER = f"urn:orchestrator:{metadata.version('orchestrator')}"
# A pending row with no attempt to send it this long after its time lost its message.
RESEND_AFTER = dt.timedelta(seconds=10)
BATCH = 500
MAX_RETRY_AFTER = 86400.0  # a receiver may ask for a pause of at most a day
ERROR_CHARS = 10000


class SendError(Exception):
    """The event did not go out. `permanent`: sending it again cannot help (the endpoint
    refused it: 400, 401, 404, ...); `retry_after`: seconds the receiver asked for."""

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


# --- naming -------------------------------------------------------------------------------


def job_namespace(tenant: str) -> str:
    return f"{settings.OPENLINEAGE_NAMESPACE}/{tenant}"


def dataset_namespace(tenant: str) -> str:
    return f"{settings.OPENLINEAGE_NAMESPACE}://{tenant}"


def run_id(attempt: TaskAttempt) -> UUID:
    """The attempt's OpenLineage run id: a UUIDv7 at its start, the same at every send."""
    from openlineage.client.uuid import generate_static_uuid

    name = f"{settings.OPENLINEAGE_NAMESPACE}/attempts/{attempt.pk}"
    return generate_static_uuid(attempt.started_at, name.encode())


def parent_run_id(run: WorkflowRun) -> UUID:
    """The workflow run's OpenLineage run id (its tasks' parent): a UUIDv7 at its creation."""
    from openlineage.client.uuid import generate_static_uuid

    name = f"{settings.OPENLINEAGE_NAMESPACE}/runs/{run.pk}"
    return generate_static_uuid(run.created_at, name.encode())


# --- the event ----------------------------------------------------------------------------


def build(row: LineageEvent) -> RunEvent:
    """The run event of a row, read with its attempt, instance, run and tenant."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import error_message_run, parent_run

    attempt = row.attempt
    ti = attempt.task_instance
    run = ti.run
    tenant = run.tenant.slug
    graph = graph_for(run.version_id)
    task = graph.task(ti.task_id)
    workflow = graph.spec.name
    facets: dict[str, Any] = {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=str(parent_run_id(run))),
            job=parent_run.Job(namespace=job_namespace(tenant), name=workflow),
            producer=PRODUCER,
        )
    }
    if row.kind == LineageEvent.Kind.FAIL:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=attempt.error[:ERROR_CHARS] or "failed",
            programmingLanguage="python",
            stackTrace=log_tail(attempt.pk) or None,
            producer=PRODUCER,
        )
    inputs = []
    for ref in task.inlets:
        owner, name = dataset_key(ref)
        inputs.append(InputDataset(namespace=dataset_namespace(owner or tenant), name=name))
    return RunEvent(
        eventType=RunState(row.kind),
        eventTime=row.time.isoformat(),
        run=Run(runId=str(run_id(attempt)), facets=facets),
        job=Job(namespace=job_namespace(tenant), name=f"{workflow}.{ti.task_id}"),
        inputs=inputs,
        outputs=[
            OutputDataset(namespace=dataset_namespace(tenant), name=name) for name in task.outlets
        ],
        producer=PRODUCER,
    )


def transport() -> Transport:
    """The configured transport. The HTTP one does not retry by itself: the outbox does,
    later, without holding a worker."""
    from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport
    from openlineage.client.transport.file import FileConfig, FileTransport
    from openlineage.client.transport.http import (
        ApiKeyTokenProvider,
        HttpConfig,
        HttpTransport,
        TokenProvider,
    )

    kind = settings.OPENLINEAGE_TRANSPORT
    if kind == "console":
        return ConsoleTransport(ConsoleConfig())
    if kind == "file":
        return FileTransport(
            FileConfig.from_dict({"log_file_path": settings.OPENLINEAGE_FILE, "append": True})
        )
    key = settings.OPENLINEAGE_API_KEY
    return HttpTransport(
        HttpConfig(
            url=settings.OPENLINEAGE_URL,
            endpoint=settings.OPENLINEAGE_ENDPOINT,
            timeout=float(settings.OPENLINEAGE_TIMEOUT),
            auth=ApiKeyTokenProvider({"apiKey": key}) if key else TokenProvider({}),
            retry={"total": 0},
        )
    )


# --- sending ------------------------------------------------------------------------------


def claim_timeout() -> dt.timedelta:
    """How long a claim may last before its worker counts as dead: longer than a send."""
    return dt.timedelta(seconds=2 * float(settings.OPENLINEAGE_TIMEOUT) + 10)


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Seconds before the next attempt, as for notification deliveries: the base delay
    doubled per attempt made, capped, never before a Retry-After the receiver asked for."""
    seconds = float(settings.NOTIFY_RETRY_DELAY_SECONDS) * 2 ** max(0, attempts - 1)
    seconds = min(seconds, float(settings.NOTIFY_RETRY_MAX_DELAY_SECONDS))
    return float(max(seconds, retry_after or 0.0))


def send(attempt_ids: Iterable[int]) -> int:
    """Send the due pending events of these attempts, oldest first, until none is left that
    is ours to send; returns how many went out."""
    ids = sorted(set(attempt_ids))
    if not ids or not settings.OPENLINEAGE_ENABLED:
        return 0
    sent = 0
    out = transport()
    try:
        while True:
            now = timezone.now()
            due = list(
                _due(now)
                .filter(attempt_id__in=ids)
                .order_by("id")
                .values_list("id", flat=True)[:BATCH]
            )
            outcomes = [_send_one(out, row_id) for row_id in due]
            sent += outcomes.count(STATUS.SENT)
            # Go on only while rows ended (sent or given up): that may have let later rows
            # of their attempts go. Else the rest waits for its time, or another worker.
            if STATUS.SENT not in outcomes and STATUS.FAILED not in outcomes:
                return sent
    finally:
        out.close()


def _due(now: dt.datetime) -> Any:
    return (
        LineageEvent.objects.dangerously_unscoped()
        .filter(status=STATUS.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    )


def _send_one(out: Transport, row_id: int) -> str | None:
    """Claim one row and send it; its new status, or None when it was not ours to send
    (sent, not due, claimed by another worker, or behind an earlier pending row)."""
    now = timezone.now()
    lease = now + claim_timeout()
    earlier = LineageEvent.objects.dangerously_unscoped().filter(
        attempt_id=OuterRef("attempt_id"), status=STATUS.PENDING, id__lt=OuterRef("id")
    )
    claimed = (
        _due(now)
        .filter(pk=row_id)
        .filter(~Exists(earlier))
        .update(next_attempt_at=lease, attempts=F("attempts") + 1)
    )
    if claimed != 1:
        return None
    row = (
        LineageEvent.objects.dangerously_unscoped()
        .select_related("attempt__task_instance__run__tenant")
        .get(pk=row_id)
    )
    changes: dict[str, Any]
    try:
        _emit(out, build(row))
    except SendError as exc:
        changes = _after_error(row, exc, now)
    except Exception as exc:  # a bug must not stop the others: count it as temporary
        logger.exception("lineage event %s failed unexpectedly", row_id)
        changes = _after_error(row, SendError(repr(exc), permanent=False), now)
    else:
        changes = {
            "status": STATUS.SENT,
            "sent_at": timezone.now(),
            "next_attempt_at": None,
            "last_error": "",
        }
    # Only while our claim holds: a lapsed claim is another worker's now.
    LineageEvent.objects.dangerously_unscoped().filter(pk=row_id, next_attempt_at=lease).update(
        **changes
    )
    return str(changes["status"])


def _emit(out: Transport, event: RunEvent) -> None:
    """Send through the transport, its errors told apart: permanent or temporary."""
    import requests

    try:
        out.emit(event)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        temporary = status >= 500 or status in (408, 425, 429)
        raise SendError(
            f"the OpenLineage endpoint answered {status}",
            permanent=not temporary,
            retry_after=_retry_after(exc.response),
        ) from exc
    except requests.RequestException as exc:
        raise SendError(f"no answer from the OpenLineage endpoint: {exc}", permanent=False) from exc


def _retry_after(response: requests.Response | None) -> float | None:
    """The Retry-After a receiver sent (seconds or an HTTP date), capped at a day."""
    raw = response.headers.get("Retry-After", "").strip() if response is not None else ""
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = (when - timezone.now()).total_seconds()
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


def _after_error(row: LineageEvent, exc: SendError, now: dt.datetime) -> dict[str, Any]:
    error = str(exc)[:2000]
    if exc.permanent or row.attempts >= settings.OPENLINEAGE_MAX_ATTEMPTS:
        if not exc.permanent:
            error = f"{error} (gave up after {row.attempts} attempts)"
        return {"status": STATUS.FAILED, "last_error": error, "next_attempt_at": None}
    delay = backoff(row.attempts, exc.retry_after)
    return {
        "status": STATUS.PENDING,
        "last_error": error,
        "next_attempt_at": now + dt.timedelta(seconds=delay),
    }


def resend_due() -> int:
    """Queue the attempts whose pending events are due: retries whose time has come, claims
    that lapsed, and events whose message was lost (none when OpenLineage is off)."""
    if not settings.OPENLINEAGE_ENABLED:
        return 0
    now = timezone.now()
    attempts = sorted(
        set(
            LineageEvent.objects.dangerously_unscoped()
            .filter(status=STATUS.PENDING)
            .filter(
                Q(next_attempt_at__lte=now)
                | Q(next_attempt_at__isnull=True, time__lt=now - RESEND_AFTER)
            )
            .order_by("id")
            .values_list("attempt_id", flat=True)[:BATCH]
        )
    )
    if attempts:
        queue_task("events.send_lineage", attempts)
    return len(attempts)
