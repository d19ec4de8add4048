"""Platform core: tenants, memberships and roles, service accounts, API tokens, audit log."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from orchestrator.context import current_tenant_ids

__all__ = [
    "ApiToken",
    "AuditChainHead",
    "AuditEvent",
    "Grant",
    "Membership",
    "Role",
    "ServiceAccount",
    "Tenant",
    "TenantOwnedModel",
    "TenantScopedManager",
]


class Role(models.TextChoices):
    """Tenant roles, each including every one before it."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    EDITOR = "editor"
    ADMIN = "admin"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return ROLE_ORDER.index(self)

    def includes(self, other: Role | str) -> bool:
        return self.rank >= Role(other).rank


ROLE_ORDER: list[Role] = [Role.VIEWER, Role.OPERATOR, Role.EDITOR, Role.ADMIN, Role.OWNER]


class TenantQuerySet(models.QuerySet["Tenant"]):
    def active(self) -> TenantQuerySet:
        return self.filter(archived_at__isnull=True)


class Tenant(models.Model):
    """A team's space. Archived, never hard-deleted: its history must stay verifiable."""

    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    quotas = models.JSONField(default=dict, blank=True)
    policy = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    # Set by platform staff (services.suspend_tenant): no new runs, no API tokens, while
    # running work goes on; the reason is what the tenant's clients are told.
    suspended_at = models.DateTimeField(null=True, blank=True)
    suspended_reason = models.TextField(blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise TypeError("tenants are archived, never deleted: use services.archive_tenant")

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None


_M = TypeVar("_M", bound=models.Model)


class TenantScopedManager(models.Manager[_M]):
    """Fails closed: rows only of the tenants in scope, an error when none is."""

    def get_queryset(self) -> models.QuerySet[_M]:
        return super().get_queryset().filter(tenant_id__in=current_tenant_ids())

    def dangerously_unscoped(self) -> models.QuerySet[_M]:
        """Every tenant's rows. Only for code that must cross tenants, on purpose."""
        return super().get_queryset()


class TenantOwnedModel(models.Model):
    """Base of every tenant-owned row. `objects` is scoped; the base manager is not, so
    the admin, the deletion collector and migrations keep working."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")

    objects = TenantScopedManager()

    class Meta:
        abstract = True


class Membership(TenantOwnedModel):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user"),
            models.CheckConstraint(
                condition=Q(role__in=[r.value for r in ROLE_ORDER]), name="membership_role_valid"
            ),
        ]
        ordering: ClassVar = ["id"]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant_id} as {self.role}"


class ServiceAccount(TenantOwnedModel):
    """A tenant-bound user without a login, for CI systems and other services."""

    name = models.SlugField(max_length=63)
    description = models.CharField(max_length=500, blank=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="service_account"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "name"], name="service_account_unique_name"),
        ]
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name


class Grant(TenantOwnedModel):
    """`tenant` shares something with `grantee`: the events of one of its workflows (or
    of all, `name` "*"), or one of its datasets (or all). Without a grant nothing of one
    tenant is visible to another; deleting the grant (audited) stops the chain at once."""

    class Kind(models.TextChoices):
        EVENTS = "events"  # a workflow's events (run.succeeded, ...): name is the workflow
        DATASET = "dataset"  # a dataset's updates: name is the dataset

    grantee = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=300)  # a workflow or dataset name, or "*"
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["tenant", "grantee", "kind", "name"], name="grant_unique"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["events", "dataset"]), name="grant_kind_valid"
            ),
            models.CheckConstraint(
                condition=~Q(tenant=models.F("grantee")), name="grant_other_tenant"
            ),
        ]
        indexes: ClassVar = [models.Index(fields=["grantee", "kind"], name="grant_grantee")]
        ordering: ClassVar = ["id"]

    def __str__(self) -> str:
        return f"{self.tenant_id} shares {self.kind} {self.name} with {self.grantee_id}"


class ApiToken(TenantOwnedModel):
    """`orc_<prefix>_<secret>`: shown once, stored as a SHA-256 hash, bound to one tenant."""

    AUDIT_SECRET_FIELDS: ClassVar = {"token_hash"}

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(role__in=[r.value for r in ROLE_ORDER]), name="api_token_role_valid"
            ),
        ]
        indexes: ClassVar = [models.Index(fields=["tenant", "user"])]
        ordering: ClassVar = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} (orc_{self.prefix}_…)"


class AuditQuerySet(models.QuerySet["AuditEvent"]):
    """Append-only: bulk updates and deletes are refused (the database refuses them too)."""

    def update(self, **kwargs: Any) -> int:
        raise TypeError("audit events are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise TypeError("audit events are append-only")


class AuditManager(TenantScopedManager["AuditEvent"]):
    def get_queryset(self) -> models.QuerySet[AuditEvent]:
        return AuditQuerySet(self.model, using=self._db).filter(tenant_id__in=current_tenant_ids())

    def dangerously_unscoped(self) -> models.QuerySet[AuditEvent]:
        return AuditQuerySet(self.model, using=self._db)


class AuditEvent(models.Model):
    """One change or system action, chained per tenant by an HMAC (see orchestrator.audit)."""

    class Source(models.TextChoices):
        API = "api"
        GRAPHQL = "graphql"
        ADMIN = "admin"
        PORTAL = "portal"
        CLI = "cli"
        SYSTEM = "system"

    tenant = models.ForeignKey(
        Tenant, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    chain = models.CharField(max_length=32)
    seq = models.PositiveBigIntegerField()
    created_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_label = models.CharField(max_length=200)
    token_prefix = models.CharField(max_length=16, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    request_id = models.CharField(max_length=128, blank=True)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditManager()

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["chain", "seq"], name="audit_event_chain_seq"),
        ]
        indexes: ClassVar = [
            models.Index(fields=["tenant", "-id"]),
            models.Index(fields=["tenant", "action", "-id"]),
            models.Index(fields=["tenant", "object_type", "object_id"]),
        ]
        ordering: ClassVar = ["-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id} by {self.actor_label}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise TypeError("audit events are append-only")


class AuditChainHead(models.Model):
    """The newest link of one audit chain, locked while an event is appended."""

    chain = models.CharField(max_length=32, primary_key=True)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"{self.chain}#{self.seq}"
