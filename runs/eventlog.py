"""Publishing into a tenant's event log (docs/events.md, "The events API"): an event of
the team's own type (`com.acme.file.landed`), CloudEvent-shaped, that the events
dispatcher matches against the tenant's event triggers. An `id` makes a repeated publish
the same event (unique per source), so a retried request starts nothing more."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.dateparse import parse_datetime

from orchestrator import audit
from orchestrator.actors import Actor
from orchestrator.errors import FieldError, Invalid
from orchestrator.models import Tenant
from orchestrator.policy import authorize
from runs.engine.events import emit
from runs.models import Event
from workflows.spec import EVENT_TYPE_PATTERN

__all__ = ["RESERVED_PREFIXES", "publish_event"]

# The engine's own types and the names it gives the events it makes start so.
RESERVED_PREFIXES = ("run.", "task.", "sla.", "dataset.", "datasets.", "webhook.")


def _errors(
    *, type: Any, source: Any, subject: Any, id: Any, time: Any, data: Any
) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(type, str) or not re.fullmatch(EVENT_TYPE_PATTERN, type):
        errors.append(
            (
                "type",
                "required: letters, digits and . _ : / -, at most 200 characters, e.g. "
                "com.acme.file.landed",
            )
        )
    elif type.startswith(RESERVED_PREFIXES):
        errors.append(
            (
                "type",
                f"reserved for the service's own events ({', '.join(RESERVED_PREFIXES)}"
                "...): use a type of your own, e.g. com.acme.file.landed",
            )
        )
    if not isinstance(source, str) or not 1 <= len(source) <= 500:
        errors.append(
            ("source", "required: a URI-reference of at most 500 characters, e.g. /acme/uploader")
        )
    if subject is not None and (not isinstance(subject, str) or len(subject) > 500):
        errors.append(("subject", "a string of at most 500 characters"))
    if id is not None and (not isinstance(id, str) or not 1 <= len(id) <= 200):
        errors.append(("id", "a string of 1 to 200 characters, unique per source"))
    if time is not None and _when(time) is None:
        errors.append(("time", "an ISO 8601 time such as 2026-12-06T10:00:00Z"))
    if len(json.dumps(data)) > settings.EVENT_MAX_BYTES:
        errors.append(("data", f"at most {settings.EVENT_MAX_BYTES} bytes as JSON"))
    return errors


def publish_event(
    *,
    actor: Actor,
    tenant: Tenant,
    type: Any,
    source: Any,
    subject: Any = None,
    data: Any = None,
    id: Any = None,
    time: Any = None,
) -> tuple[Event, bool]:
    """Write the event into the tenant's log; returns it and whether it is new (False: an
    event with this source and id was published before, and is returned instead)."""
    authorize(actor, "event.publish", tenant)
    errors = _errors(type=type, source=source, subject=subject, id=id, time=time, data=data)
    if errors:
        raise Invalid(errors)
    existing = _published(tenant, source, id)
    if existing is not None:
        return existing, False
    when = _when(time) if time else None
    try:
        with transaction.atomic():
            event = emit(
                tenant_id=tenant.pk,
                type=type,
                data=data if data is not None else {},
                subject=subject or "",
                source=source,
                external_id=id or "",
                time=when,
            )
            audit.record(
                actor=actor,
                action="event.publish",
                tenant=tenant,
                obj=event,
                object_repr=f"{type} from {source}",
                after={"type": type, "source": source, "subject": subject or "", "id": id},
            )
    except IntegrityError:  # the same id, published at the same moment by another request
        existing = _published(tenant, source, id)
        if existing is None:
            raise
        return existing, False
    return event, True


def _when(value: Any) -> dt.datetime | None:
    """An ISO 8601 time (UTC when it names no zone), or None when it is not one."""
    try:
        when = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:  # well formed but impossible: 2026-13-01
        return None
    return when.replace(tzinfo=dt.UTC) if when is not None and when.tzinfo is None else when


def _published(tenant: Tenant, source: str, id: str | None) -> Event | None:
    if not id:
        return None
    return (
        Event.objects.dangerously_unscoped()
        .filter(tenant=tenant, source=source, external_id=id)
        .select_related("workflow")
        .first()
    )
