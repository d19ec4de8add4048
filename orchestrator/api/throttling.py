"""Rate limits of the REST API (orchestrator.ratelimit counts): per caller as a DRF throttle,
before anything else about the request is known; per tenant from TenantScopedViewSet,
once the caller is authorised in the tenant. Over a limit: 429, `Retry-After`, and a
problem+json body of type `urn:orchestrator:problem:throttled`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from orchestrator.models import ApiToken, Tenant
from orchestrator.ratelimit import RateLimited, Scope, charge_caller, charge_tenant, scope_of

if TYPE_CHECKING:  # DRF's APIView reads this module's throttle while it is being defined
    from rest_framework.views import APIView

__all__ = ["CallerRateThrottle", "Throttled", "throttle_tenant_request"]


class Throttled(exceptions.Throttled):
    """DRF's 429 (the exception handler adds `Retry-After` from `wait`), with our detail."""

    def __init__(self, limited: RateLimited) -> None:
        exceptions.APIException.__init__(self, limited.message, "throttled")
        self.wait = limited.retry_after


def _scope(view: APIView, request: Request) -> Scope:
    action = getattr(view, "action", None)
    permissions: dict[str, str] = getattr(view, "permissions", {})
    return scope_of(permissions.get(action or ""), action)


class CallerRateThrottle(BaseThrottle):
    """Counts every authenticated request against its API token's (or user's) budget."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        token = request.auth if isinstance(request.auth, ApiToken) else None
        user_id = request.user.pk if request.user.is_authenticated else None
        try:
            charge_caller(user_id=user_id, token=token, scope=_scope(view, request))
        except RateLimited as limited:
            raise Throttled(limited) from None
        return True


def throttle_tenant_request(view: Any, request: Request, tenant: Tenant) -> None:
    """Count the request on the tenant's budget; call it after authorisation only."""
    try:
        charge_tenant(tenant, _scope(view, request))
    except RateLimited as limited:
        raise Throttled(limited) from None
