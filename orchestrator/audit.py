"""Append-only audit log, chained per tenant with an HMAC.

Each event's hash is HMAC-SHA256(key, canonical JSON of the event including the previous
event's hash). Appending locks the chain's head row, so concurrent writers queue instead
of forking the chain; editing, deleting or inserting a row anywhere breaks a link that
`manage.py verify_audit` reports.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.utils import timezone

from orchestrator.actors import Actor
from orchestrator.fastsql import Insert, execute_in_one_trip, quote, statement
from orchestrator.models import AuditChainHead, AuditEvent, Tenant

__all__ = ["MASK", "ChainReport", "chain_key", "record", "snapshot", "verify_chain"]

MASK = "********"
GENESIS = "0" * 64
PLATFORM_CHAIN = "platform"
_SECRET_NAME = re.compile(r"(password|secret|token_hash|private_key|api_key)", re.IGNORECASE)


def chain_key(tenant_id: int | None) -> str:
    return PLATFORM_CHAIN if tenant_id is None else f"tenant:{tenant_id}"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def snapshot(obj: models.Model, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The object's concrete fields as JSON values, secret fields masked."""
    secret = set(getattr(obj, "AUDIT_SECRET_FIELDS", ()))
    wanted = set(fields) if fields is not None else None
    out: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        name = field.name
        if wanted is not None and name not in wanted:
            continue
        value = getattr(obj, field.attname)
        if value not in (None, "") and (name in secret or _SECRET_NAME.search(name)):
            value = MASK
        out[name] = value
    return dict(_jsonable(out))


def _diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, Any]:
    if before is None or after is None:
        return {"before": before, "after": after}
    keys = [k for k in after if before.get(k) != after.get(k)]
    keys += [k for k in before if k not in after]
    return {"before": {k: before.get(k) for k in keys}, "after": {k: after.get(k) for k in keys}}


def _canonical(event: AuditEvent) -> bytes:
    created = event.created_at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    body = {
        "action": event.action,
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "chain": event.chain,
        "changes": event.changes,
        "created_at": created,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "object_type": event.object_type,
        "prev_hash": event.prev_hash,
        "request_id": event.request_id,
        "seq": event.seq,
        "source": event.source,
        "tenant_id": event.tenant_id,
        "token_prefix": event.token_prefix,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _sign(event: AuditEvent) -> str:
    key = settings.AUDIT_HMAC_KEY.encode()
    return hmac.new(key, _canonical(event), hashlib.sha256).hexdigest()


@statement("audit_chain_head")
def _lock_head(key: str) -> AuditChainHead:
    """The chain's head, created when missing and locked until the transaction ends, in one
    statement: the no-op update on conflict takes the row lock and returns the row."""
    table = AuditChainHead._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (chain, seq, hash) VALUES (%s, 0, %s) "  # noqa: S608
            "ON CONFLICT (chain) DO UPDATE SET chain = EXCLUDED.chain RETURNING seq, hash",
            [key, "0" * 64],
        )
        seq, hash_ = cursor.fetchone()
    return AuditChainHead(chain=key, seq=int(seq), hash=str(hash_))


def record(
    *,
    actor: Actor,
    action: str,
    tenant: Tenant | None,
    obj: models.Model | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    object_repr: str | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the tenant's chain. Must run inside the change's transaction."""
    if not connection.in_atomic_block:
        raise RuntimeError("audit.record must run in the same transaction as the change")
    key = chain_key(tenant.pk if tenant is not None else None)
    head = _lock_head(key)
    changes = _diff(before, after)
    if extra:
        changes["extra"] = dict(extra)
    token = actor.token
    event = AuditEvent(
        tenant=tenant,
        chain=key,
        seq=head.seq + 1,
        created_at=timezone.now(),
        actor_id=actor.user_id,
        actor_label=actor.label[:200],
        token_prefix=token.prefix if token is not None else "",
        source=actor.source,
        request_id=actor.request_id or "",
        action=action,
        object_type=object_type or (obj._meta.model_name if obj is not None else "") or "",
        object_id=object_id if object_id is not None else str(obj.pk if obj is not None else ""),
        object_repr=(object_repr if object_repr is not None else str(obj or ""))[:200],
        changes=_jsonable(changes),
        prev_hash=head.hash,
    )
    event.hash = _sign(event)
    _append(event)
    return event


_EVENT = Insert(AuditEvent)


@functools.cache
def _move_head_sql(vendor: str) -> str:
    table = quote(AuditChainHead._meta.db_table)
    return f"UPDATE {table} SET seq = %s, hash = %s WHERE chain = %s"  # noqa: S608


@statement("audit_append")
def _append(event: AuditEvent) -> None:
    """Move the chain's head to the event and insert it (the order is free: the head's
    lock holds back every other audited change of the tenant until commit), in one round
    trip on PostgreSQL. As `event.save()` would: the fields' own conversions, the new id
    set."""
    head: list[Any] = [event.seq, event.hash, event.chain]
    with connection.cursor() as cursor:
        execute_in_one_trip(
            cursor,
            [(_move_head_sql(connection.vendor), head), (_EVENT.sql, _EVENT.values(event))],
        )
        (pk,) = cursor.fetchone()  # type: ignore[misc]
    _EVENT.saved(event, pk)


@dataclass(frozen=True)
class ChainReport:
    chain: str
    checked: int
    broken_seq: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


def verify_chain(key: str) -> ChainReport:
    """Walk one chain oldest first; report the first link that does not hold."""
    prev_hash, expected_seq, checked = GENESIS, 1, 0
    events = AuditEvent.objects.dangerously_unscoped().filter(chain=key).order_by("seq")
    for event in events.iterator(chunk_size=2000):
        if event.seq != expected_seq:
            return ChainReport(key, checked, expected_seq, f"event #{expected_seq} is missing")
        if event.prev_hash != prev_hash:
            return ChainReport(key, checked, event.seq, "prev_hash does not match event before")
        if not hmac.compare_digest(event.hash, _sign(event)):
            return ChainReport(key, checked, event.seq, "contents do not match their HMAC")
        prev_hash, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
    head = AuditChainHead.objects.filter(chain=key).first()
    if head is not None and (head.seq != checked or head.hash != prev_hash):
        return ChainReport(key, checked, checked + 1, f"events after #{checked} are missing")
    return ChainReport(key, checked)
