"""The Django admin, for platform staff (superusers) only.

Every change goes through orchestrator.services as `Actor(source="admin")`, so the policy
and the audit log see admin changes like any other. A form runs its service once it is
otherwise valid, which turns a refusal (last owner, bad quotas) into a form error; the
admin's own save then has nothing left to do. No tenant is in scope here: querysets of
tenant-owned models are deliberately unscoped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import DomainError, Invalid
from orchestrator.models import ApiToken, AuditEvent, Grant, Membership, ServiceAccount, Tenant
from orchestrator.tenancy import tenant_quota, validate_policy, validate_quotas

__all__ = [
    "ApiTokenAdmin",
    "AuditEventAdmin",
    "GrantAdmin",
    "MembershipAdmin",
    "ServiceAccountAdmin",
    "TenantAdmin",
    "TenantRowsAdmin",
    "admin_actor",
    "register_quota_usage",
]

_M = TypeVar("_M", bound=models.Model)

# The index says when tasks run unsandboxed (TASK_SANDBOX=off: single-tenant only).
admin.site.index_template = "orchestrator/admin/index.html"

if TYPE_CHECKING:
    ModelAdmin = admin.ModelAdmin
    ModelForm = forms.ModelForm
else:
    # The stubs make these generic; Django does not, so subscripting returns the class.
    class ModelAdmin(admin.ModelAdmin):
        def __class_getitem__(cls, item):
            return cls

    class ModelForm(forms.ModelForm):
        def __class_getitem__(cls, item):
            return cls


def admin_actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user, source="admin", request_id=getattr(request, "request_id", None))


def _is_platform(request: HttpRequest) -> bool:
    return bool(request.user.is_active) and admin_actor(request).is_platform


class PlatformAdmin(ModelAdmin[_M]):
    """Superusers only: other staff could not act through the services anyway."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _is_platform(request)

    def has_view_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return _is_platform(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _is_platform(request)

    def has_change_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return _is_platform(request)

    def has_delete_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return _is_platform(request)

    def get_actions(
        self, request: HttpRequest
    ) -> dict[str, tuple[Callable[..., str], str, str] | None]:
        """No bulk delete: deletions go one at a time through a service."""
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """A service's refusal (raised in delete_model, and rolled back) as a message."""
        try:
            return super().delete_view(request, object_id, extra_context)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            opts = self.model._meta
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[object_id])
            return HttpResponseRedirect(url)


class ReadOnlyAdmin(PlatformAdmin[_M]):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return False


class TenantRowsAdmin(ReadOnlyAdmin[Any]):
    """Every tenant's rows of a tenant-owned model, read-only and never deleted here:
    changes go through the API, audited there. `related`: what each row shows."""

    related: tuple[str, ...] = ("tenant",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        manager: Any = self.model.objects
        return manager.dangerously_unscoped().select_related(*self.related)  # type: ignore[no-any-return]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ServiceForm(ModelForm[_M]):
    """A model form whose change is made by a service, once the form is otherwise valid."""

    actor: Actor  # set per request by ServiceFormAdmin.get_form

    def apply(self) -> _M:
        raise NotImplementedError

    def full_clean(self) -> None:
        super().full_clean()
        if not self.is_bound or self.errors:
            return
        try:
            self.instance = self.apply()
        except Invalid as exc:
            for path, message in exc.errors:
                field = path.split(".")[0].split("[")[0]
                if field in self.fields:
                    self.add_error(field, f"{path}: {message}")
                else:
                    self.add_error(None, f"{path}: {message}" if path else message)
        except DomainError as exc:
            self.add_error(None, exc.message)


class ServiceFormAdmin(PlatformAdmin[_M]):
    """Admin of a model changed through a ServiceForm: saving is the form's job."""

    def get_form(
        self, request: HttpRequest, obj: _M | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[_M]]:
        form = super().get_form(request, obj, change=change, **kwargs)
        assert issubclass(form, ServiceForm)
        form.actor = admin_actor(request)  # a fresh class per call: modelform_factory
        return form

    def save_model(self, request: HttpRequest, obj: _M, form: Any, change: Any) -> None:
        """Already saved, audited, by the form's service."""


# --- tenants --------------------------------------------------------------------------


class TenantForm(ServiceForm[Tenant]):
    class Meta:
        model = Tenant
        fields = ("name", "quotas", "policy")

    def clean_quotas(self) -> dict[str, int]:
        try:
            return validate_quotas(self.cleaned_data["quotas"])
        except Invalid as exc:
            raise forms.ValidationError([f"{p}: {m}" for p, m in exc.errors]) from None

    def clean_policy(self) -> dict[str, Any]:
        try:
            return validate_policy(self.cleaned_data["policy"])
        except Invalid as exc:
            raise forms.ValidationError([f"{p}: {m}" for p, m in exc.errors]) from None

    def apply(self) -> Tenant:
        data = self.cleaned_data
        return services.update_tenant(
            actor=self.actor,
            tenant=self.instance,
            name=data["name"],
            quotas=data["quotas"],
            policy=data["policy"],
        )


# A quota key -> how much of it a tenant uses (a count, and words on what is counted), as
# the service that enforces the quota counts it. The apps that own the counted rows add
# theirs (runs.admin: workflows and runs), since this module may not import them.
QuotaUsage = Callable[[Tenant], tuple[int, str]]
_QUOTA_USAGE: dict[str, QuotaUsage] = {}


def register_quota_usage(key: str, usage: QuotaUsage) -> None:
    """Show `usage` beside the quota `key` on each tenant's admin page."""
    _QUOTA_USAGE[key] = usage


def _live_tokens(tenant: Tenant) -> tuple[int, str]:
    live = ApiToken.objects.dangerously_unscoped().filter(tenant=tenant, revoked_at__isnull=True)
    return live.count(), "tokens not revoked (expired ones count until revoked)"


register_quota_usage("max_tokens", _live_tokens)


class SuspendForm(forms.Form):
    reason = forms.CharField(
        max_length=services.SUSPEND_REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Shown to the tenant's API clients as the reason their tokens are refused, "
        "and to anyone triggering one of its workflows.",
    )


@admin.register(Tenant)
class TenantAdmin(ServiceFormAdmin[Tenant]):
    form = TenantForm
    list_display = (
        "slug",
        "name",
        "archived",
        "suspended",
        "suspended_at",
        "suspended_reason",
        "created_at",
    )
    list_filter = (
        ("archived_at", admin.EmptyFieldListFilter),
        ("suspended_at", admin.EmptyFieldListFilter),
    )
    search_fields = ("slug", "name")
    fields = (
        "slug",
        "name",
        "quotas",
        "quota_usage",
        "policy",
        "created_at",
        "updated_at",
        "archived_at",
        "suspended_at",
        "suspended_reason",
    )
    readonly_fields = (
        "slug",
        "quota_usage",
        "created_at",
        "updated_at",
        "archived_at",
        "suspended_at",
        "suspended_reason",
    )
    actions = ("archive", "unarchive", "suspend", "resume")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tenants are created over the API or with `manage.py createtenant`

    def has_delete_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return False  # archived, never deleted

    @admin.display(boolean=True, ordering="archived_at")
    def archived(self, obj: Tenant) -> bool:
        return obj.is_archived

    @admin.display(boolean=True, ordering="suspended_at")
    def suspended(self, obj: Tenant) -> bool:
        return obj.is_suspended

    @admin.display(description="quota usage")
    def quota_usage(self, obj: Tenant) -> SafeString:
        rows = [
            (key, *usage(obj), tenant_quota(obj.quotas, key))
            for key, usage in sorted(_QUOTA_USAGE.items())
        ]
        return format_html(
            "<table><tr><th>quota</th><th>used</th><th>limit</th><th>counted</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                ((key, used, limit, what) for key, used, what, limit in rows),
            ),
        )

    @admin.action(description="Suspend selected tenants")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> HttpResponse | None:
        """First a page asking why (the reason their clients see), then the suspension."""
        form = SuspendForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            self._each(request, queryset, services.suspend_tenant, **form.cleaned_data)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Suspend tenants",
            "opts": self.model._meta,
            "tenants": queryset,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/orchestrator/tenant/suspend.html", context)

    @admin.action(description="Resume selected tenants")
    def resume(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._each(request, queryset, services.resume_tenant)

    @admin.action(description="Archive selected tenants")
    def archive(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._each(request, queryset.filter(archived_at__isnull=True), services.archive_tenant)

    @admin.action(description="Restore selected archived tenants")
    def unarchive(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._each(request, queryset.filter(archived_at__isnull=False), services.unarchive_tenant)

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[Tenant],
        service: Callable[..., Tenant],
        **arguments: Any,
    ) -> None:
        done = []
        for tenant in queryset:
            try:
                service(actor=admin_actor(request), tenant=tenant, **arguments)
            except DomainError as exc:
                self.message_user(request, f"{tenant.slug}: {exc.message}", messages.ERROR)
            else:
                done.append(tenant.slug)
        self.message_user(request, f"{len(done)} changed: {', '.join(done) or 'none'}")


# --- members --------------------------------------------------------------------------


class MembershipForm(ServiceForm[Membership]):
    class Meta:
        model = Membership
        fields = ("tenant", "user", "role")

    def _post_clean(self) -> None:
        # Model validation checks unique (tenant, user) through the scoped manager.
        tenant = self.cleaned_data.get("tenant") or self.instance.tenant_id
        with tenant_scope([tenant] if tenant else []):
            super()._post_clean()  # type: ignore[misc]  # Django has it; the stubs omit it

    def apply(self) -> Membership:
        data = self.cleaned_data
        if self.instance.pk is None:
            return services.add_member(
                actor=self.actor, tenant=data["tenant"], user=data["user"], role=data["role"]
            )
        current = Membership.objects.dangerously_unscoped().get(pk=self.instance.pk)
        return services.change_member_role(actor=self.actor, membership=current, role=data["role"])


@admin.register(Membership)
class MembershipAdmin(ServiceFormAdmin[Membership]):
    form = MembershipForm
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("tenant", "role")
    list_select_related = ("user", "tenant")
    search_fields = ("user__username", "tenant__slug")
    raw_id_fields = ("user",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        return Membership.objects.dangerously_unscoped()

    def get_readonly_fields(
        self, request: HttpRequest, obj: Membership | None = None
    ) -> tuple[str, ...]:
        return ("tenant", "user", "created_at", "updated_at") if obj is not None else ()

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        services.remove_member(actor=admin_actor(request), membership=obj)


# --- service accounts and tokens ------------------------------------------------------


@admin.register(ServiceAccount)
class ServiceAccountAdmin(ReadOnlyAdmin[ServiceAccount]):
    list_display = ("name", "tenant", "user", "created_by", "created_at")
    list_filter = ("tenant",)
    list_select_related = ("tenant", "user", "created_by")
    search_fields = ("name", "tenant__slug")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ServiceAccount]:
        return ServiceAccount.objects.dangerously_unscoped()

    def delete_model(self, request: HttpRequest, obj: ServiceAccount) -> None:
        services.delete_service_account(actor=admin_actor(request), account=obj)


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin[ApiToken]):
    list_display = ("name", "prefix", "tenant", "user", "role", "state", "expires_at")
    list_filter = ("tenant", "role", ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("tenant", "user")
    search_fields = ("name", "prefix", "user__username", "tenant__slug")
    # Never token_hash: it helps no one, and a hash of a credential invites guessing.
    fields = (
        "name",
        "prefix",
        "tenant",
        "user",
        "role",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    actions = ("revoke",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        return ApiToken.objects.dangerously_unscoped()

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False  # revoked, never deleted: the audit log refers to them

    @admin.display(description="state")
    def state(self, obj: ApiToken) -> str:
        if obj.revoked_at is not None:
            return "revoked"
        if obj.expires_at is not None and obj.expires_at <= timezone.now():
            return "expired"
        return "live"

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = []
        for token in queryset.filter(revoked_at__isnull=True).select_related("tenant"):
            try:
                services.revoke_token(actor=admin_actor(request), token=token)
            except DomainError as exc:
                self.message_user(request, f"{token.prefix}: {exc.message}", messages.ERROR)
            else:
                revoked.append(token.prefix)
        self.message_user(request, f"{len(revoked)} revoked: {', '.join(revoked) or 'none'}")


# --- audit log ------------------------------------------------------------------------


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin[AuditEvent]):
    list_display = (
        "created_at",
        "tenant",
        "source",
        "action",
        "object_type",
        "object_repr",
        "actor_label",
    )
    list_filter = ("tenant", "source", "action")
    list_select_related = ("tenant",)
    search_fields = ("object_repr", "object_id", "actor_label", "request_id")
    show_full_result_count = False  # no COUNT(*) over the whole log on every page
    fields = (
        "created_at",
        "tenant",
        "chain",
        "seq",
        "source",
        "actor_label",
        "token_prefix",
        "request_id",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "changes_json",
        "prev_hash",
        "hash",
    )
    readonly_fields = ("changes_json",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        return AuditEvent.objects.dangerously_unscoped()

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    @admin.display(description="changes")
    def changes_json(self, obj: AuditEvent) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(obj.changes, indent=2, sort_keys=True))


@admin.register(Grant)
class GrantAdmin(TenantRowsAdmin):
    """What each tenant shares with which other: revoked by the granting tenant's admins
    through the API or the portal (audited)."""

    related = ("tenant", "grantee", "created_by")
    list_display = ("id", "tenant", "grantee", "kind", "name", "created_by", "created_at")
    list_filter = ("kind", "tenant", "grantee")
    search_fields = ("name", "tenant__slug", "grantee__slug")
    fields = readonly_fields = ("tenant", "grantee", "kind", "name", "created_by", "created_at")
