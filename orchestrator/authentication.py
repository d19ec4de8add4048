"""Bearer token authentication, shared by REST and GraphQL."""

from __future__ import annotations

import datetime as dt
import hmac

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from orchestrator import tokens
from orchestrator.models import ApiToken, Membership

__all__ = ["TokenRejected", "authenticate_bearer"]


class TokenRejected(Exception):
    """The request carried a bearer token that is malformed, unknown, expired or revoked."""


# The holder's membership role in the token's tenant, read with the token (see Actor).
_role_in_token_tenant = (
    Membership.objects.dangerously_unscoped()
    .filter(tenant_id=OuterRef("tenant_id"), user_id=OuterRef("user_id"))
    .values("role")[:1]
)


def authenticate_bearer(header: str) -> tuple[AbstractBaseUser, ApiToken] | None:
    """Resolve an `Authorization` header. None when it is not a bearer header at all."""
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    raw = raw.strip()
    prefix = tokens.parse(raw)
    if prefix is None:
        raise TokenRejected("malformed token: expected orc_<prefix>_<secret>")
    # Tokens are looked up before any tenant is known: crossing tenants is the point here.
    token = (
        ApiToken.objects.dangerously_unscoped()
        .select_related("user", "tenant")
        .annotate(member_role=Subquery(_role_in_token_tenant))
        .filter(prefix=prefix)
        .first()
    )
    if token is None or not _same_hash(token.token_hash, tokens.hash_token(raw)):
        raise TokenRejected("invalid token")
    now = timezone.now()
    if token.revoked_at is not None:
        raise TokenRejected("token revoked")
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenRejected("token expired")
    if not token.user.is_active:
        raise TokenRejected("token's user is deactivated")
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
