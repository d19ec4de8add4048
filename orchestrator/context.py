"""Per-request (or per-job) context: the request id and the tenant scope.

Tenant-owned querysets read the scope from here and refuse to run without one, so a
forgotten filter fails loudly instead of leaking another tenant's rows.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

__all__ = [
    "REQUEST_ID_MAX_LENGTH",
    "TenantScopeMissing",
    "current_request_id",
    "current_tenant_ids",
    "new_request_id",
    "request_id_context",
    "tenant_scope",
]

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_tenant_ids: contextvars.ContextVar[frozenset[int] | None] = contextvars.ContextVar(
    "tenant_ids", default=None
)

# A caller's id is kept only when it is 1 to 64 of these characters: enough for a UUID or a
# W3C traceparent, and nothing a log line, a header or a terminal could misread.
REQUEST_ID_MAX_LENGTH = 64
_REQUEST_ID_RE = re.compile(rf"[A-Za-z0-9._:-]{{1,{REQUEST_ID_MAX_LENGTH}}}")


class TenantScopeMissing(RuntimeError):
    """A tenant-owned model was queried outside a tenant scope."""


def new_request_id(incoming: str | None = None) -> str:
    """Keep a caller's well-formed X-Request-ID (the whole value: 1 to 64 ASCII letters,
    digits and `.`, `_`, `:`, `-`), otherwise make one (32 hex digits)."""
    if incoming and _REQUEST_ID_RE.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return _request_id.get()


@contextmanager
def request_id_context(request_id: str) -> Iterator[str]:
    token = _request_id.set(request_id)
    try:
        yield request_id
    finally:
        _request_id.reset(token)


def current_tenant_ids() -> frozenset[int]:
    ids = _tenant_ids.get()
    if ids is None:
        raise TenantScopeMissing(
            "tenant-owned rows queried with no tenant in scope: wrap the code in "
            "tenant_scope(...) or, for deliberate cross-tenant work, use "
            ".objects.dangerously_unscoped()"
        )
    return ids


@contextmanager
def tenant_scope(tenants: Iterable[object]) -> Iterator[frozenset[int]]:
    """Scope tenant-owned querysets to these tenants (Tenant objects or ids)."""
    ids = frozenset(int(getattr(t, "pk", t)) for t in tenants)  # type: ignore[call-overload]
    token = _tenant_ids.set(ids)
    try:
        yield ids
    finally:
        _tenant_ids.reset(token)
