"""Every change to the platform core: one keyword-only function per use case, transactional,
authorised by the policy and audited in the same transaction. REST, GraphQL, the admin
and the CLI all call these."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestrator import audit, tokens
from orchestrator.actors import Actor
from orchestrator.errors import Conflict, Forbidden, Invalid
from orchestrator.models import ApiToken, Membership, Role, ServiceAccount, Tenant
from orchestrator.policy import authorize, require_role_at_most
from orchestrator.tenancy import tenant_quota, validate_policy, validate_quotas

__all__ = [
    "add_member",
    "add_member_by_username",
    "archive_tenant",
    "change_member_role",
    "create_service_account",
    "create_tenant",
    "create_token",
    "delete_service_account",
    "remove_member",
    "resume_tenant",
    "revoke_token",
    "suspend_tenant",
    "unarchive_tenant",
    "update_tenant",
]

UNSET: Any = object()
SUSPEND_REASON_MAX_LENGTH = 500


# --- tenants --------------------------------------------------------------------------


@transaction.atomic
def create_tenant(
    *,
    actor: Actor,
    slug: str,
    name: str,
    owner: User | None = None,
    quotas: dict[str, Any] | None = None,
) -> Tenant:
    """Create a tenant; its owner is `owner`, or the acting user."""
    if settings.TENANT_CREATION_STAFF_ONLY and not (
        actor.is_platform or getattr(actor.user, "is_staff", False)
    ):
        raise Forbidden("only platform staff may create tenants on this installation")
    if actor.token is not None:
        raise Forbidden("API tokens are bound to one tenant and cannot create tenants")
    owner = owner if owner is not None else actor.user  # type: ignore[assignment]
    if owner is None or not owner.is_authenticated:
        raise Invalid([("owner", "a tenant needs an owner: a signed-in user or --owner")])
    if Tenant.objects.filter(slug=slug).exists():
        raise Conflict(f"tenant slug {slug!r} is taken; choose another")
    quotas = validate_quotas(quotas or {})
    try:
        with transaction.atomic():  # two creators racing for one slug: the loser gets a 409
            tenant = Tenant.objects.create(slug=slug, name=name, quotas=quotas, policy={})
    except IntegrityError:
        raise Conflict(f"tenant slug {slug!r} is taken; choose another") from None
    membership = Membership.objects.dangerously_unscoped().create(
        tenant=tenant, user=owner, role=Role.OWNER
    )
    audit.record(
        actor=actor, action="tenant.create", tenant=tenant, obj=tenant, after=audit.snapshot(tenant)
    )
    audit.record(
        actor=actor,
        action="membership.create",
        tenant=tenant,
        obj=membership,
        object_repr=owner.get_username(),
        after=audit.snapshot(membership),
    )
    return tenant


def _locked_tenant(tenant: Tenant) -> Tenant:
    """Lock the tenant row: member changes and quota checks on one tenant run one at a time."""
    return Tenant.objects.select_for_update(no_key=True).get(pk=tenant.pk)


@transaction.atomic
def update_tenant(
    *,
    actor: Actor,
    tenant: Tenant,
    name: str = UNSET,
    quotas: dict[str, Any] = UNSET,
    policy: dict[str, Any] = UNSET,
) -> Tenant:
    """Owners rename and set quotas (within platform limits); policy is platform staff's."""
    authorize(actor, "tenant.update", tenant)
    tenant = _locked_tenant(tenant)
    before = audit.snapshot(tenant)
    if name is not UNSET:
        tenant.name = name
    if quotas is not UNSET:
        tenant.quotas = validate_quotas(quotas)
    if policy is not UNSET:
        if not actor.is_platform:
            raise Forbidden("a tenant's policy is set by platform staff")
        tenant.policy = validate_policy(policy)
    after = audit.snapshot(tenant)
    if after == before:
        return tenant
    tenant.save()
    audit.record(
        actor=actor,
        action="tenant.update",
        tenant=tenant,
        obj=tenant,
        before=before,
        after=audit.snapshot(tenant),
    )
    return tenant


def archive_tenant(*, actor: Actor, tenant: Tenant) -> Tenant:
    """Hide the tenant from every interface; its rows and history are kept."""
    authorize(actor, "tenant.archive", tenant)
    return _set_archived(actor=actor, tenant=tenant, archived=True)


def unarchive_tenant(*, actor: Actor, tenant: Tenant) -> Tenant:
    if not actor.is_platform:
        raise Forbidden("only platform staff can restore an archived tenant")
    return _set_archived(actor=actor, tenant=tenant, archived=False)


@transaction.atomic
def _set_archived(*, actor: Actor, tenant: Tenant, archived: bool) -> Tenant:
    tenant = _locked_tenant(tenant)
    before = audit.snapshot(tenant)
    tenant.archived_at = timezone.now() if archived else None
    tenant.save(update_fields=["archived_at", "updated_at"])
    audit.record(
        actor=actor,
        action="tenant.archive" if archived else "tenant.unarchive",
        tenant=tenant,
        obj=tenant,
        before=before,
        after=audit.snapshot(tenant),
    )
    return tenant


@transaction.atomic
def suspend_tenant(*, actor: Actor, tenant: Tenant, reason: str) -> Tenant:
    """Platform staff stop a tenant: no new runs (triggers, schedules, events) and none of
    its API tokens work until it is resumed. Running work goes on: cancel it separately.
    The reason is what the tenant's clients are told."""
    if not actor.is_platform:
        raise Forbidden("only platform staff can suspend a tenant")
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason:
        raise Invalid([("reason", "required: why the tenant is suspended (its clients see it)")])
    if len(reason) > SUSPEND_REASON_MAX_LENGTH:
        raise Invalid(
            [("reason", f"at most {SUSPEND_REASON_MAX_LENGTH} characters; got {len(reason)}")]
        )
    tenant = _locked_tenant(tenant)
    if tenant.is_archived:
        raise Conflict(f"tenant {tenant.slug!r} is archived; an archived tenant is not suspended")
    if tenant.is_suspended:
        raise Conflict(
            f"tenant {tenant.slug!r} is already suspended: {tenant.suspended_reason}; "
            "resume it first to suspend it with another reason"
        )
    return _set_suspended(actor=actor, tenant=tenant, reason=reason)


@transaction.atomic
def resume_tenant(*, actor: Actor, tenant: Tenant) -> Tenant:
    """Lift a suspension: triggers, schedules, events and API tokens work again."""
    if not actor.is_platform:
        raise Forbidden("only platform staff can resume a suspended tenant")
    tenant = _locked_tenant(tenant)
    if not tenant.is_suspended:
        raise Conflict(f"tenant {tenant.slug!r} is not suspended")
    return _set_suspended(actor=actor, tenant=tenant, reason=None)


def _set_suspended(*, actor: Actor, tenant: Tenant, reason: str | None) -> Tenant:
    """Suspend with `reason`, or resume (None); the tenant row is locked by the caller."""
    before = audit.snapshot(tenant)
    tenant.suspended_at = timezone.now() if reason is not None else None
    tenant.suspended_reason = reason or ""
    tenant.save(update_fields=["suspended_at", "suspended_reason", "updated_at"])
    audit.record(
        actor=actor,
        action="tenant.suspend" if reason is not None else "tenant.resume",
        tenant=tenant,
        obj=tenant,
        before=before,
        after=audit.snapshot(tenant),
    )
    return tenant


# --- members --------------------------------------------------------------------------


def _owner_count(tenant: Tenant) -> int:
    return Membership.objects.dangerously_unscoped().filter(tenant=tenant, role=Role.OWNER).count()


def _revoke_tokens_above(*, actor: Actor, tenant: Tenant, user_id: int, role: Role | None) -> None:
    """Revoke the user's live tokens in the tenant whose role is above `role` (all if None)."""
    live = ApiToken.objects.dangerously_unscoped().filter(
        tenant=tenant, user_id=user_id, revoked_at__isnull=True
    )
    for token in live:
        if role is None or not role.includes(token.role):
            _revoke(actor=actor, token=token, reason="member demoted or removed")


def _shares_a_tenant(user_id: int | None, other_id: int) -> bool:
    """Whether two users are members of one live tenant."""
    if user_id is None:
        return False
    members = Membership.objects.dangerously_unscoped().filter(tenant__archived_at__isnull=True)
    their_tenants = members.filter(user_id=other_id).values("tenant_id")
    return members.filter(user_id=user_id, tenant_id__in=their_tenants).exists()


def _may_add(actor: Actor, user: User) -> bool:
    """Whom the actor may add to a tenant: a person who already shares a live tenant with
    them (a teammate), or anyone for platform staff (not through a token). Never a service
    account, nor an inactive user."""
    if not user.is_active or hasattr(user, "service_account"):
        return False
    if actor.is_platform or (actor.token is None and getattr(actor.user, "is_staff", False)):
        return True
    return _shares_a_tenant(actor.user_id, user.pk)


def _not_addable() -> Invalid:
    """One answer, word for word, for an unknown name, another tenant's service account and
    a user the actor may not add, so that it tells none of them apart."""
    return Invalid(
        [
            (
                "username",
                "no user by this name that you can add: a person must already share a tenant "
                "with you (platform staff can add anyone); service accounts are created in "
                "service-accounts/",
            )
        ]
    )


@transaction.atomic
def add_member(*, actor: Actor, tenant: Tenant, user: User, role: Role | str) -> Membership:
    """Add a person to the tenant with a role up to the actor's own. Only a person who
    already shares a tenant with the actor can be added (platform staff add anyone)."""
    actor_role = authorize(actor, "member.manage", tenant)
    require_role_at_most(actor_role, role, "grant a role")
    tenant = _locked_tenant(tenant)
    members = Membership.objects.dangerously_unscoped()
    if members.filter(tenant=tenant, user=user).exists():
        # Already a member: visible to every member, so naming it tells nothing new.
        raise Conflict(f"{user.get_username()!r} is already a member of {tenant.slug!r}")
    if not _may_add(actor, user):
        raise _not_addable()
    membership = members.create(tenant=tenant, user=user, role=Role(role))  # tenant row locked
    audit.record(
        actor=actor,
        action="membership.create",
        tenant=tenant,
        obj=membership,
        object_repr=user.get_username(),
        after=audit.snapshot(membership),
    )
    return membership


def add_member_by_username(
    *, actor: Actor, tenant: Tenant, username: str, role: Role | str
) -> Membership:
    """add_member for a user named by the caller (REST, GraphQL). The actor's permission is
    checked before the name is looked up, and an unknown name gets the same answer as a
    user who may not be added."""
    actor_role = authorize(actor, "member.manage", tenant)
    require_role_at_most(actor_role, role, "grant a role")
    user = User.objects.filter(username=username).select_related("service_account").first()
    if user is None:
        raise _not_addable()
    return add_member(actor=actor, tenant=tenant, user=user, role=role)


@transaction.atomic
def change_member_role(*, actor: Actor, membership: Membership, role: Role | str) -> Membership:
    tenant = membership.tenant
    actor_role = authorize(actor, "member.manage", tenant)
    new_role = Role(role)
    require_role_at_most(actor_role, new_role, "grant a role")
    require_role_at_most(actor_role, membership.role, "change a member")
    tenant = _locked_tenant(tenant)
    membership = Membership.objects.dangerously_unscoped().get(pk=membership.pk)
    if membership.role == new_role:
        return membership
    if membership.role == Role.OWNER and _owner_count(tenant) == 1:
        raise Conflict(
            f"{membership.user.get_username()!r} is the last owner of "
            f"{tenant.slug!r}; make someone else owner first"
        )
    before = audit.snapshot(membership)
    membership.role = new_role
    membership.save(update_fields=["role", "updated_at"])
    audit.record(
        actor=actor,
        action="membership.update",
        tenant=tenant,
        obj=membership,
        object_repr=membership.user.get_username(),
        before=before,
        after=audit.snapshot(membership),
    )
    _revoke_tokens_above(actor=actor, tenant=tenant, user_id=membership.user_id, role=new_role)
    return membership


@transaction.atomic
def remove_member(*, actor: Actor, membership: Membership) -> None:
    """Admins remove members up to their own role; anyone may leave."""
    tenant = membership.tenant
    if membership.user_id == actor.user_id and not actor.is_platform:
        authorize(actor, "member.view", tenant)
    else:
        actor_role = authorize(actor, "member.manage", tenant)
        require_role_at_most(actor_role, membership.role, "remove a member")
    tenant = _locked_tenant(tenant)
    membership = Membership.objects.dangerously_unscoped().get(pk=membership.pk)
    if membership.role == Role.OWNER and _owner_count(tenant) == 1:
        raise Conflict(
            f"{membership.user.get_username()!r} is the last owner of "
            f"{tenant.slug!r}; make someone else owner first"
        )
    before = audit.snapshot(membership)
    _revoke_tokens_above(actor=actor, tenant=tenant, user_id=membership.user_id, role=None)
    membership.delete()
    audit.record(
        actor=actor,
        action="membership.delete",
        tenant=tenant,
        object_type="membership",
        object_id=str(before["id"]),
        object_repr=membership.user.get_username(),
        before=before,
    )


# --- service accounts -----------------------------------------------------------------


@transaction.atomic
def create_service_account(
    *, actor: Actor, tenant: Tenant, name: str, role: Role | str, description: str = ""
) -> ServiceAccount:
    actor_role = authorize(actor, "service_account.manage", tenant)
    require_role_at_most(actor_role, role, "create a service account")
    tenant = _locked_tenant(tenant)
    if ServiceAccount.objects.dangerously_unscoped().filter(tenant=tenant, name=name).exists():
        raise Conflict(f"service account {name!r} already exists in {tenant.slug!r}")
    username = f"sa.{tenant.slug}.{name}"
    if User.objects.filter(username=username).exists():
        raise Conflict(f"user name {username!r} is taken")
    user = User(username=username, is_active=True)
    user.set_unusable_password()
    user.save()
    account = ServiceAccount.objects.dangerously_unscoped().create(
        tenant=tenant,
        name=name,
        description=description,
        user=user,
        created_by_id=actor.user_id,
    )
    membership = Membership.objects.dangerously_unscoped().create(
        tenant=tenant, user=user, role=Role(role)
    )
    audit.record(
        actor=actor,
        action="service_account.create",
        tenant=tenant,
        obj=account,
        after={**audit.snapshot(account), "role": membership.role},
    )
    return account


@transaction.atomic
def delete_service_account(*, actor: Actor, account: ServiceAccount) -> None:
    """Revoke its tokens, remove its membership and the account; its user is deactivated
    and kept, so the audit log and the runs it triggered still name it."""
    tenant = account.tenant
    membership = (
        Membership.objects.dangerously_unscoped()
        .filter(tenant=tenant, user_id=account.user_id)
        .first()
    )
    actor_role = authorize(actor, "service_account.manage", tenant)
    if membership is not None:
        require_role_at_most(actor_role, membership.role, "delete a service account")
    before = {**audit.snapshot(account), "role": membership.role if membership else None}
    _revoke_tokens_above(actor=actor, tenant=tenant, user_id=account.user_id, role=None)
    if membership is not None:
        membership.delete()
    User.objects.filter(pk=account.user_id).update(is_active=False)
    account.delete()
    audit.record(
        actor=actor,
        action="service_account.delete",
        tenant=tenant,
        object_type="serviceaccount",
        object_id=str(before["id"]),
        object_repr=account.name,
        before=before,
    )


# --- API tokens -----------------------------------------------------------------------


@transaction.atomic
def create_token(
    *,
    actor: Actor,
    tenant: Tenant,
    name: str,
    role: Role | str,
    user: User | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiToken, str]:
    """Mint a token for the acting user or one of the tenant's service accounts.

    Returns the row and the plaintext token, which is never stored and shown only once."""
    actor_role = authorize(actor, "token.manage", tenant)
    role = Role(role)
    require_role_at_most(actor_role, role, "create a token")
    holder = user if user is not None else actor.user
    assert holder is None or isinstance(holder, User | AnonymousUser)
    if holder is None or not holder.is_authenticated:
        raise Invalid([("service_account", "name the service account the token is for")])
    holder_role = (
        Membership.objects.dangerously_unscoped()
        .filter(tenant=tenant, user_id=holder.pk)
        .values_list("role", flat=True)
        .first()
    )
    if holder_role is None:
        raise Invalid(
            [("service_account", f"{holder.get_username()!r} is not a member of {tenant.slug!r}")]
        )
    if not Role(holder_role).includes(role):
        raise Invalid(
            [
                (
                    "role",
                    f"{holder.get_username()!r} holds {holder_role}; a token "
                    f"can have that role or a lower one",
                )
            ]
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise Invalid([("expires_at", "must be in the future")])
    _require_within_parent_expiry(actor, expires_at)
    tenant = _locked_tenant(tenant)
    live = ApiToken.objects.dangerously_unscoped().filter(tenant=tenant, revoked_at__isnull=True)
    limit = tenant_quota(tenant.quotas, "max_tokens")
    if live.count() >= limit:
        raise Conflict(
            f"tenant {tenant.slug!r} has {limit} live tokens, its quota; revoke one first"
        )
    for _ in range(5):
        prefix, raw = tokens.generate()
        try:
            with transaction.atomic():
                token = ApiToken.objects.dangerously_unscoped().create(
                    tenant=tenant,
                    name=name,
                    prefix=prefix,
                    token_hash=tokens.hash_token(raw),
                    user=holder,
                    role=role,
                    created_by_id=actor.user_id,
                    expires_at=expires_at,
                )
            break
        except IntegrityError:  # prefix collision: astronomically rare, try another
            continue
    else:
        raise RuntimeError("could not allocate a unique token prefix")
    audit.record(
        actor=actor, action="token.create", tenant=tenant, obj=token, after=audit.snapshot(token)
    )
    return token, raw


def _require_within_parent_expiry(actor: Actor, expires_at: dt.datetime | None) -> None:
    """A token minted with an expiring token expires too, no later than it: a child never
    outlives its parent. Refused rather than capped, so the caller sees the real expiry."""
    parent = actor.token
    if parent is None or parent.expires_at is None:
        return
    limit = parent.expires_at.isoformat()
    if expires_at is None:
        raise Invalid(
            [
                (
                    "expires_at",
                    f"required: the token you are using ({parent.prefix!r}) expires at {limit}; "
                    f"give a time at or before it",
                )
            ]
        )
    if expires_at > parent.expires_at:
        raise Invalid(
            [
                (
                    "expires_at",
                    f"must be at or before {limit}, when the token you are using "
                    f"({parent.prefix!r}) expires",
                )
            ]
        )


def _revoke(*, actor: Actor, token: ApiToken, reason: str) -> None:
    before = audit.snapshot(token)
    updated = (
        ApiToken.objects.dangerously_unscoped()
        .filter(pk=token.pk, revoked_at__isnull=True)
        .update(revoked_at=timezone.now())
    )
    if updated != 1:
        return  # already revoked by someone else
    token.refresh_from_db()
    audit.record(
        actor=actor,
        action="token.revoke",
        tenant=token.tenant,
        obj=token,
        before=before,
        after=audit.snapshot(token),
        extra={"reason": reason},
    )


@transaction.atomic
def revoke_token(*, actor: Actor, token: ApiToken) -> ApiToken:
    authorize(actor, "token.manage", token.tenant)
    if token.revoked_at is not None:
        raise Conflict(f"token {token.prefix!r} is already revoked")
    _revoke(actor=actor, token=token, reason="revoked")
    return token
