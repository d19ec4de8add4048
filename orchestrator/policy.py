"""The one permission policy. REST, GraphQL, the admin and the CLI all reach it through the
service layer; nothing else decides who may do what."""

from __future__ import annotations

from orchestrator.actors import Actor
from orchestrator.errors import Forbidden, NotFound
from orchestrator.models import ApiToken, Membership, Role, Tenant

__all__ = [
    "PERMISSIONS",
    "authorize",
    "capped_role",
    "effective_role",
    "register_permissions",
    "require_role_at_most",
]

# permission -> the lowest role that holds it. Apps add theirs with register_permissions.
PERMISSIONS: dict[str, Role] = {
    "tenant.view": Role.VIEWER,
    "tenant.update": Role.OWNER,
    "tenant.archive": Role.OWNER,
    "member.view": Role.VIEWER,
    "member.manage": Role.ADMIN,
    "service_account.view": Role.ADMIN,
    "service_account.manage": Role.ADMIN,
    "token.view": Role.ADMIN,
    "token.manage": Role.ADMIN,
    "audit.view": Role.ADMIN,
    "grant.view": Role.VIEWER,
    "grant.manage": Role.ADMIN,
}


def register_permissions(permissions: dict[str, Role]) -> None:
    """Apps add their permissions at start-up (AppConfig.ready); names must be new."""
    clash = set(permissions) & set(PERMISSIONS)
    if clash:
        raise ValueError(f"permissions already registered: {sorted(clash)}")
    PERMISSIONS.update(permissions)


def effective_role(actor: Actor, tenant: Tenant) -> Role | None:
    """The actor's role in the tenant: its membership, capped by the token it used.
    None when the tenant is invisible to the actor."""
    if actor.is_platform:
        return Role.OWNER
    if tenant.is_archived or actor.user_id is None:
        return None
    token = actor.token
    if token is not None and token.tenant_id != tenant.pk:
        return None
    if tenant.pk not in actor.memberships:
        actor.memberships[tenant.pk] = (
            Membership.objects.dangerously_unscoped()
            .filter(tenant=tenant, user_id=actor.user_id)
            .values_list("role", flat=True)
            .first()
        )
    role = actor.memberships[tenant.pk]
    return None if role is None else capped_role(role, token)


def capped_role(membership_role: str, token: ApiToken | None) -> Role:
    """A token acts with its own role, never above its holder's membership role."""
    if token is not None and Role(token.role).rank < Role(membership_role).rank:
        return Role(token.role)
    return Role(membership_role)


def authorize(actor: Actor, permission: str, tenant: Tenant) -> Role:
    """Return the actor's role, or raise NotFound (tenant invisible) / Forbidden (too low)."""
    needed = PERMISSIONS[permission]
    role = effective_role(actor, tenant)
    if role is None:
        raise NotFound(f"tenant {tenant.slug!r} not found")
    if not role.includes(needed):
        raise Forbidden(
            f"{permission} in tenant {tenant.slug!r} needs role {needed.value} or above; "
            f"you have {role.value}"
        )
    return role


def require_role_at_most(actor_role: Role, wanted: Role | str, what: str) -> None:
    """Nobody hands out more than they hold (roles granted, tokens minted)."""
    if not actor_role.includes(wanted):
        raise Forbidden(
            f"cannot {what} with role {Role(wanted).value}: above your own role {actor_role.value}"
        )
