"""GraphQL types of the platform core. Nested lists check the policy for their own tenant."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import strawberry
import strawberry_django
from strawberry.scalars import JSON
from strawberry.types import Info

from orchestrator import models
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid
from orchestrator.graphql.errors import unauthenticated
from orchestrator.policy import authorize, effective_role
from orchestrator.selectors import audit_log, authorized_tenant

__all__ = [
    "LIST_LIMIT_DEFAULT",
    "LIST_LIMIT_MAX",
    "ApiTokenType",
    "AuditEventType",
    "GrantType",
    "MeType",
    "MemberType",
    "TenantType",
    "actor_of",
    "list_limit",
    "tenant_for",
    "tenant_scope_for",
]


# Every list of objects takes `limit`, as REST's `?limit=` (1 to 500; paged lists default
# to 50, lists that return a whole set to the most): the query cost (graphql/cost.py)
# multiplies them along each path.
LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 500


def list_limit(limit: int) -> int:
    """A list's `limit` argument checked as REST checks it: BAD_USER_INPUT out of range."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise Invalid([("limit", f"must be an integer from 1 to {LIST_LIMIT_MAX}; got {limit}")])
    return limit


def tenant_for(info: Info, slug: str, permission: str) -> models.Tenant:
    """The tenant by slug, once the policy allowed the permission (else NOT_FOUND/FORBIDDEN)."""
    return authorized_tenant(actor_of(info), slug, permission)[0]


@contextmanager
def tenant_scope_for(info: Info, slug: str, permission: str) -> Iterator[models.Tenant]:
    """The tenant as `tenant_for` finds it, with tenant-owned rows scoped to it in the block.
    A context manager, not a decorator: resolvers keep the signature strawberry reads, and
    what follows the block runs out of scope."""
    tenant = tenant_for(info, slug, permission)
    with tenant_scope([tenant]):
        yield tenant


def actor_of(info: Info) -> Actor:
    actor: Actor | None = info.context.actor
    if actor is None or actor.user_id is None:
        raise unauthenticated()
    return actor


@strawberry_django.type(models.Membership)
class MemberType:
    id: strawberry.auto
    role: str
    created_at: strawberry.auto
    updated_at: strawberry.auto

    @strawberry_django.field(only=["user__username"], select_related=["user"])  # type: ignore[untyped-decorator]
    def username(self, root: models.Membership) -> str:
        return str(root.user.username)

    @strawberry_django.field
    def is_service_account(self, root: models.Membership) -> bool:
        return hasattr(root.user, "service_account")


@strawberry_django.type(models.ServiceAccount)
class ServiceAccountType:
    id: strawberry.auto
    name: strawberry.auto
    description: strawberry.auto
    created_at: strawberry.auto


@strawberry.type
class GrantType:
    """A grant as one of its two tenants sees it."""

    id: int
    tenant: str = strawberry.field(description="who shares")
    grantee: str = strawberry.field(description="who may see it")
    kind: str = strawberry.field(description="events or dataset")
    name: str = strawberry.field(description='a workflow or dataset name, or "*"')
    direction: str = strawberry.field(description="given or received")
    created_at: dt.datetime

    @classmethod
    def of(cls, grant: models.Grant, viewer: models.Tenant) -> GrantType:
        return cls(
            id=grant.pk,
            tenant=grant.tenant.slug,
            grantee=grant.grantee.slug,
            kind=grant.kind,
            name=grant.name,
            direction="given" if grant.tenant_id == viewer.pk else "received",
            created_at=grant.created_at,
        )


@strawberry_django.type(models.ApiToken)
class ApiTokenType:
    """Token metadata: the token itself is returned once, by createToken."""

    id: strawberry.auto
    name: strawberry.auto
    prefix: strawberry.auto
    role: str
    created_at: strawberry.auto
    expires_at: strawberry.auto
    revoked_at: strawberry.auto
    last_used_at: strawberry.auto

    @strawberry_django.field
    def username(self, root: models.ApiToken) -> str:
        return str(root.user.username)


@strawberry_django.type(models.AuditEvent)
class AuditEventType:
    id: strawberry.auto
    seq: strawberry.auto
    created_at: strawberry.auto
    source: str
    request_id: strawberry.auto
    action: strawberry.auto
    object_type: strawberry.auto
    object_id: strawberry.auto
    object_repr: strawberry.auto
    token_prefix: strawberry.auto
    hash: strawberry.auto
    prev_hash: strawberry.auto

    @strawberry_django.field
    def actor(self, root: models.AuditEvent) -> str:
        return root.actor_label

    @strawberry_django.field
    def changes(self, root: models.AuditEvent) -> JSON:
        return root.changes  # type: ignore[no-any-return]


def _listed(
    info: Info, tenant: models.Tenant, permission: str, model: Any, limit: int
) -> list[Any]:
    """The tenant's rows of `model` (at most `limit`), after the policy allowed `permission`."""
    limit = list_limit(limit)
    authorize(actor_of(info), permission, tenant)
    with tenant_scope([tenant]):
        return list(model.objects.all().select_related(*_RELATED.get(model, ()))[:limit])


_RELATED: dict[Any, tuple[str, ...]] = {
    models.Membership: ("user", "user__service_account"),
    models.ApiToken: ("user",),
    models.ServiceAccount: ("user",),
}


@strawberry_django.type(models.Tenant)
class TenantType:
    id: strawberry.auto
    slug: strawberry.auto
    name: strawberry.auto
    created_at: strawberry.auto
    updated_at: strawberry.auto

    @strawberry_django.field
    def quotas(self, root: models.Tenant) -> JSON:
        return root.quotas  # type: ignore[no-any-return]

    @strawberry_django.field
    def policy(self, root: models.Tenant) -> JSON:
        return root.policy  # type: ignore[no-any-return]

    @strawberry_django.field
    def role(self, root: models.Tenant, info: Info) -> str | None:
        role = effective_role(actor_of(info), root)
        return role.value if role is not None else None

    @strawberry_django.field
    def members(
        self, root: models.Tenant, info: Info, limit: int = LIST_LIMIT_MAX
    ) -> list[MemberType]:
        return _listed(info, root, "member.view", models.Membership, limit)

    @strawberry_django.field
    def service_accounts(
        self, root: models.Tenant, info: Info, limit: int = LIST_LIMIT_MAX
    ) -> list[ServiceAccountType]:
        return _listed(info, root, "service_account.view", models.ServiceAccount, limit)

    @strawberry_django.field
    def tokens(
        self, root: models.Tenant, info: Info, limit: int = LIST_LIMIT_MAX
    ) -> list[ApiTokenType]:
        return _listed(info, root, "token.view", models.ApiToken, limit)

    @strawberry_django.field
    def audit_events(
        self,
        root: models.Tenant,
        info: Info,
        action: str | None = None,
        actor: str | None = None,
        since: dt.datetime | None = None,
        before_id: int | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
    ) -> list[AuditEventType]:
        """Newest first; page with `beforeId` = the last id you received."""
        limit = list_limit(limit)
        authorize(actor_of(info), "audit.view", root)
        with tenant_scope([root]):
            qs = audit_log(actor=actor, action=action, since=since)
            if before_id:
                qs = qs.filter(id__lt=before_id)
            return list(qs[:limit])  # type: ignore[arg-type]


@strawberry.type
class MembershipRef:
    tenant: str
    role: str


@strawberry.type
class MeType:
    id: int
    username: str
    email: str
    is_staff: bool
    memberships: list[MembershipRef]
    token_prefix: str | None


@strawberry.type
class CreatedToken:
    token: str = strawberry.field(description="Shown only here, once. Store it now.")
    api_token: ApiTokenType
