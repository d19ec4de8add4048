"""Bearer token authentication, shared by REST and GraphQL."""

from __future__ import annotations

import datetime as dt
import functools
import hmac

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.utils import timezone

from orchestrator import tokens
from orchestrator.fastsql import Columns, attach, quote, statement
from orchestrator.models import ApiToken, Membership, Tenant

__all__ = ["TokenRejected", "authenticate_bearer"]


class TokenRejected(Exception):
    """The request carried a bearer token that is malformed, unknown, expired or revoked,
    or one of a suspended tenant."""


_TOKEN = Columns(ApiToken)
_USER = Columns(get_user_model())
_TENANT = Columns(Tenant)


@functools.cache
def _token_query(vendor: str) -> str:
    """The token by prefix, with its user, its tenant and the user's membership role in
    that tenant (None when the user left it): one statement per request, written once
    (every API call starts here; see orchestrator/fastsql.py)."""
    return (
        f"SELECT {_TOKEN.select('k')}, {_USER.select('u')}, {_TENANT.select('t')}, "  # noqa: S608
        f"(SELECT m.{quote('role')} FROM {quote(Membership._meta.db_table)} m "
        f"WHERE m.{quote('tenant_id')} = k.{quote('tenant_id')} "
        f"AND m.{quote('user_id')} = k.{quote('user_id')} LIMIT 1) "
        f"FROM {_TOKEN.table} k JOIN {_USER.table} u ON u.{quote('id')} = k.{quote('user_id')} "
        f"JOIN {_TENANT.table} t ON t.{quote('id')} = k.{quote('tenant_id')} "
        f"WHERE k.{quote('prefix')} = %s"
    )


@statement("token_by_prefix")
def _read_token(prefix: str) -> ApiToken | None:
    # Tokens are looked up before any tenant is known: crossing tenants is the point here.
    with connection.cursor() as cursor:
        cursor.execute(_token_query(connection.vendor), [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    token = _TOKEN.build(row)
    attach(token, "user", _USER.build(row, len(_TOKEN)))
    attach(token, "tenant", _TENANT.build(row, len(_TOKEN) + len(_USER)))
    token.member_role = row[-1]  # type: ignore[attr-defined]
    return token


def authenticate_bearer(header: str) -> tuple[AbstractBaseUser, ApiToken] | None:
    """Resolve an `Authorization` header. None when it is not a bearer header at all."""
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    raw = raw.strip()
    prefix = tokens.parse(raw)
    if prefix is None:
        raise TokenRejected("malformed token: expected orc_<prefix>_<secret>")
    token = _read_token(prefix)
    if token is None or not _same_hash(token.token_hash, tokens.hash_token(raw)):
        raise TokenRejected("invalid token")
    now = timezone.now()
    if token.revoked_at is not None:
        raise TokenRejected("token revoked")
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenRejected("token expired")
    if not token.user.is_active:
        raise TokenRejected("token's user is deactivated")
    if token.tenant.suspended_at is not None:
        # Platform staff suspended the tenant (services.suspend_tenant): say why.
        raise TokenRejected(f"tenant suspended: {token.tenant.suspended_reason}")
    _touch(token, now)
    return token.user, token


def _same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


def _touch(token: ApiToken, now: dt.datetime) -> None:
    """Record last use, at most once per resolution window (one UPDATE, never per request)."""
    window = dt.timedelta(seconds=settings.API_TOKEN_LAST_USED_RESOLUTION_SECONDS)
    if token.last_used_at is None or now - token.last_used_at >= window:
        ApiToken.objects.dangerously_unscoped().filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
