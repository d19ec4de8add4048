"""Rate limits of the API, shared by REST and GraphQL: requests per minute per caller (an
API token, or a signed-in user) and per tenant, counted apart for triggers (requests that
start runs or run tasks again) and for every other request ("reads").

Counters live in Django's cache (Redis in the distributed mode, so every web process
shares them; process memory in the embedded mode). A sliding window: the count of the
current minute plus the previous minute's count weighted by how much of it still lies
within the last 60 seconds, so a burst across the turn of a minute gets no second budget.
A refused request is taken back out of the count: waiting `retry_after` seconds is enough.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.core.cache import cache

from orchestrator.models import ApiToken, Tenant
from orchestrator.tenancy import rate_limit

__all__ = [
    "READS",
    "TRIGGERS",
    "RateLimited",
    "Scope",
    "charge_caller",
    "charge_tenant",
    "charge_webhook",
    "scope_of",
]

logger = logging.getLogger(__name__)

Scope = Literal["triggers", "reads"]
TRIGGERS: Scope = "triggers"
READS: Scope = "reads"

# What counts as a trigger: the actions (by the permission they need) that start runs or
# run tasks again. Cancel, pause and mark-success/failed stop or settle work: they are
# "reads", so an operator over the trigger budget can still stop what it started.
TRIGGER_ACTIONS: dict[str, frozenset[str]] = {
    "run.operate": frozenset({"create", "retry", "clear"}),
    "backfill.operate": frozenset({"create", "resume"}),
    "event.publish": frozenset({"create"}),  # an event may start runs
}


def scope_of(permission: str | None, action: str | None) -> Scope:
    """The budget a request draws on, from the policy permission and the view action
    (REST) or the root field (GraphQL) it needs."""
    if permission is not None and action in TRIGGER_ACTIONS.get(permission, ()):
        return TRIGGERS
    return READS


@dataclass(frozen=True)
class RateLimited(Exception):
    """A request over a budget: which one, and how long until one more request fits."""

    scope: Scope
    per: Literal["token", "user", "tenant", "webhook"]
    who: str
    limit: int
    retry_after: int

    @property
    def message(self) -> str:
        what = "trigger requests" if self.scope == TRIGGERS else "requests"
        return (
            f"rate limit of {self.limit} {what} per minute per {self.per} ({self.who}) "
            f"reached; retry after {self.retry_after} second"
            f"{'s' if self.retry_after != 1 else ''}"
        )

    def __str__(self) -> str:
        return self.message


def charge_caller(*, user_id: int | None, token: ApiToken | None, scope: Scope) -> None:
    """Count one request of a caller: per API token (its limit from the token's tenant's
    policy), or per signed-in user (the platform's defaults). Anonymous callers are not
    counted here (they get no further than authentication). Raises RateLimited."""
    if token is not None:
        limit = rate_limit(token.tenant.policy, scope, "per_token")
        _charge(f"token:{token.pk}", scope, limit, per="token", who=f"orc_{token.prefix}")
    elif user_id is not None:
        limit = rate_limit({}, scope, "per_token")
        _charge(f"user:{user_id}", scope, limit, per="user", who=f"user id {user_id}")


def charge_tenant(tenant: Tenant, scope: Scope) -> None:
    """Count one request on the tenant's own budget. Call it only once the caller is
    authorised in the tenant, so outsiders cannot spend it. Raises RateLimited."""
    limit = rate_limit(tenant.policy, scope, "per_tenant")
    _charge(f"tenant:{tenant.pk}", scope, limit, per="tenant", who=tenant.slug)


def charge_webhook(uid: str, limit: int) -> None:
    """Count one POST to an inbound webhook's URL, known or not (so the answer says
    nothing of whether it exists). Raises RateLimited."""
    _charge(f"webhook:{uid}", TRIGGERS, limit, per="webhook", who="this URL")


def _charge(
    subject: str,
    scope: Scope,
    limit: int,
    *,
    per: Literal["token", "user", "tenant", "webhook"],
    who: str,
) -> None:
    if limit <= 0:  # 0: no limit
        return
    window = float(settings.RATE_LIMIT_WINDOW_SECONDS)
    now = time.time()
    index, into = divmod(now, window)
    key = f"ratelimit:{scope}:{subject}:{int(index)}"
    try:
        previous = int(cache.get(f"ratelimit:{scope}:{subject}:{int(index) - 1}") or 0)
        current = _increment(key, timeout=int(2 * window) + 1)
    except Exception:  # a cache outage must not take the API down with it
        logger.warning("rate limit not checked: the cache is unreachable", exc_info=True)
        return
    weight = 1 - into / window
    if previous * weight + current <= limit:
        return
    cache.decr(key)
    raise RateLimited(
        scope=scope,
        per=per,
        who=who,
        limit=limit,
        retry_after=_seconds_until_room(previous, current - 1, limit, into, window),
    )


def _increment(key: str, *, timeout: int) -> int:
    """Add one to the counter, creating it (with its expiry) on the window's first hit."""
    try:
        return int(cache.incr(key))
    except ValueError:  # no such key yet
        if cache.add(key, 1, timeout=timeout):
            return 1
        return int(cache.incr(key))


def _seconds_until_room(previous: int, current: int, limit: int, into: float, window: float) -> int:
    """How long until one more request fits, if none other comes: the previous window's
    weight shrinks as time goes by, and at the turn the current window becomes the
    previous one."""
    room = limit - 1 - current
    if current <= limit - 1 and previous > 0:
        # previous * (1 - t / window) <= room, for t the time into this window
        wait = (1 - room / previous) * window - into
    else:
        # in the next window: current * (1 - t / window) <= limit - 1
        wait = (window - into) + max(0.0, 1 - (limit - 1) / current) * window
    return max(1, math.ceil(wait))
