"""Cross-tenant grants (DESIGN.md section 12): a tenant shares a workflow's events or a
dataset with another tenant. Nothing of one tenant reaches another without one; granting
and revoking are audited in the granting tenant."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from orchestrator import audit
from orchestrator.actors import Actor
from orchestrator.errors import Conflict, Invalid
from orchestrator.models import Grant, Tenant
from orchestrator.policy import authorize

__all__ = [
    "ANY",
    "DIRECTIONS",
    "create_grant",
    "delete_grant",
    "grants_of",
    "is_shared",
    "sharing_tenants",
]

ANY = "*"  # every workflow (events) or every dataset of the granting tenant


def is_shared(*, owner_id: int, grantee_id: int, kind: str, name: str) -> bool:
    """Does the owner share this workflow's events (or this dataset) with the grantee?"""
    if owner_id == grantee_id:
        return True
    return (
        Grant.objects.dangerously_unscoped()
        .filter(tenant_id=owner_id, grantee_id=grantee_id, kind=kind, name__in=[name, ANY])
        .exists()
    )


def sharing_tenants(*, grantee_id: int, kind: str, name: str) -> set[int]:
    """The tenants that share this name (or all of theirs) of this kind with the grantee."""
    return set(
        Grant.objects.dangerously_unscoped()
        .filter(grantee_id=grantee_id, kind=kind, name__in=[name, ANY])
        .values_list("tenant_id", flat=True)
    )


DIRECTIONS = ("given", "received")


def grants_of(tenant: Tenant, direction: str | None = None) -> QuerySet[Grant]:
    """What the tenant shares (given) and what is shared with it (received), newest
    first: a grant is both tenants' to see."""
    if direction not in (None, "", *DIRECTIONS):
        raise Invalid([("direction", f"accepted: {', '.join(DIRECTIONS)}")])
    mine = {
        "given": Q(tenant=tenant),
        "received": Q(grantee=tenant),
    }.get(direction or "", Q(tenant=tenant) | Q(grantee=tenant))
    return (
        Grant.objects.dangerously_unscoped()
        .filter(mine)
        .select_related("tenant", "grantee")
        .order_by("-id")
    )


def _snapshot(grant: Grant) -> dict[str, Any]:
    return {"grantee": grant.grantee.slug, "kind": grant.kind, "name": grant.name}


@transaction.atomic
def create_grant(*, actor: Actor, tenant: Tenant, grantee: str, kind: str, name: str) -> Grant:
    """Share `name` (a workflow's events, or a dataset; "*" for all) with the tenant whose
    slug is `grantee`. An unknown grantee and the tenant itself are refused alike."""
    authorize(actor, "grant.manage", tenant)
    errors = []
    if kind not in Grant.Kind.values:
        errors.append(("kind", f"accepted: {', '.join(Grant.Kind.values)}"))
    if not isinstance(name, str) or not name or len(name) > 300:
        errors.append(("name", 'a workflow or dataset name (at most 300 characters), or "*"'))
    other = Tenant.objects.active().filter(slug=grantee).exclude(pk=tenant.pk).first()
    if other is None:
        errors.append(("grantee", f"no other tenant {grantee!r}: give another tenant's slug"))
    if errors or other is None:
        raise Invalid(errors)
    try:
        with transaction.atomic():
            grant = Grant.objects.dangerously_unscoped().create(
                tenant=tenant, grantee=other, kind=kind, name=name, created_by_id=actor.user_id
            )
    except IntegrityError:
        raise Conflict(f"{tenant.slug!r} already shares {kind} {name!r} with {grantee!r}") from None
    audit.record(
        actor=actor,
        action="grant.create",
        tenant=tenant,
        obj=grant,
        object_repr=f"{kind} {name} to {grantee}",
        after=_snapshot(grant),
    )
    return grant


@transaction.atomic
def delete_grant(*, actor: Actor, grant: Grant) -> None:
    """Revoke: from now on the grantee sees nothing more of it (runs already started go
    on)."""
    authorize(actor, "grant.manage", grant.tenant)
    before = _snapshot(grant)
    audit.record(
        actor=actor,
        action="grant.delete",
        tenant=grant.tenant,
        obj=grant,
        object_repr=f"{grant.kind} {grant.name} to {grant.grantee.slug}",
        before=before,
    )
    grant.delete()
