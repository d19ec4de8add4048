"""Read queries of the platform core."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from orchestrator.actors import Actor
from orchestrator.errors import NotFound
from orchestrator.models import AuditEvent, Membership, Role, Tenant
from orchestrator.policy import authorize

__all__ = [
    "audit_log",
    "authorized_tenant",
    "get_tenant",
    "memberships_of",
    "tenants_visible_to",
]


def get_tenant(slug: str) -> Tenant:
    """The tenant by slug (the policy decides whether the caller may see it)."""
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise NotFound(f"tenant {slug!r} not found")
    return tenant


def authorized_tenant(actor: Actor, slug: str, permission: str) -> tuple[Tenant, Role]:
    """The tenant by slug and the actor's role in it, once the policy allowed `permission`
    (NotFound when missing or invisible, Forbidden when the role is too low)."""
    token = actor.token
    # A token's own tenant came with it (authenticate_bearer): no second read.
    tenant = token.tenant if token is not None and token.tenant.slug == slug else get_tenant(slug)
    return tenant, authorize(actor, permission, tenant)


def memberships_of(actor: Actor) -> QuerySet[Membership]:
    """The actor's memberships in live tenants (only the token's tenant, for a token)."""
    if actor.user_id is None:
        return Membership.objects.none()
    # A user's memberships span tenants by nature: this is the one place that lists them.
    qs = Membership.objects.dangerously_unscoped().filter(
        user_id=actor.user_id, tenant__archived_at__isnull=True
    )
    if actor.token is not None:
        qs = qs.filter(tenant_id=actor.token.tenant_id)
    return qs.select_related("tenant").order_by("tenant__slug")


def tenants_visible_to(actor: Actor) -> QuerySet[Tenant]:
    return Tenant.objects.filter(pk__in=memberships_of(actor).values("tenant_id")).order_by("slug")


def audit_log(
    *,
    actor: str | None = None,
    action: str | None = None,
    obj: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> QuerySet[AuditEvent]:
    """The scoped tenant's audit events, newest first. `actor`: a user name or `system`;
    `action`: one action, or a prefix ending in a dot (`token.`); `obj`: `type` or
    `type:id`."""
    qs = AuditEvent.objects.all()
    if actor:
        qs = qs.filter(actor_label=actor)
    if action:
        qs = (
            qs.filter(action__startswith=action)
            if action.endswith(".")
            else qs.filter(action=action)
        )
    if obj:
        object_type, _, object_id = obj.partition(":")
        qs = qs.filter(object_type=object_type)
        if object_id:
            qs = qs.filter(object_id=object_id)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    return qs.order_by("-id")
