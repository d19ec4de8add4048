"""REST endpoints of the platform core. Each one translates HTTP to a service call."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orchestrator import services
from orchestrator.api import serializers as s
from orchestrator.api.base import HTTP_METHOD_NAMES, TenantScopedViewSet, actor_from_request
from orchestrator.models import ApiToken, AuditEvent, Membership, ServiceAccount, Tenant
from orchestrator.policy import capped_role
from orchestrator.selectors import (
    audit_log,
    authorized_tenant,
    memberships_of,
    tenants_visible_to,
)

__all__ = [
    "AuditEventViewSet",
    "MeView",
    "MemberViewSet",
    "ServiceAccountViewSet",
    "TenantViewSet",
    "TokenViewSet",
]


class MeView(APIView):
    http_method_names = HTTP_METHOD_NAMES

    @extend_schema(operation_id="get_me", tags=["me"], responses=s.MeSerializer)
    def get(self, request: Request) -> Response:
        actor = actor_from_request(request)
        user = request.user
        data = {
            "id": user.pk,
            "username": user.get_username(),
            "email": getattr(user, "email", ""),
            "is_staff": bool(getattr(user, "is_staff", False)),
            "memberships": list(memberships_of(actor)),
            "token": actor.token,
        }
        return Response(s.MeSerializer(data).data)


class TenantViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[Tenant],
):
    """Tenants you belong to. Anyone signed in may create one and becomes its owner;
    owners rename it, set its quotas within the platform's limits, or archive it (DELETE)."""

    serializer_class = s.TenantSerializer
    http_method_names = HTTP_METHOD_NAMES
    lookup_field = "slug"
    lookup_url_kwarg = "tenant"
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Tenant]:
        return tenants_visible_to(actor_from_request(self.request))

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        if not getattr(self, "swagger_fake_view", False):
            actor = actor_from_request(self.request)
            context["roles"] = {
                m.tenant_id: capped_role(m.role, actor.token) for m in memberships_of(actor)
            }
        return context

    def _tenant(self, permission: str) -> Tenant:
        actor = actor_from_request(self.request)
        return authorized_tenant(actor, self.kwargs["tenant"], permission)[0]

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        tenant = self._tenant("tenant.view")
        return Response(self.get_serializer(tenant).data)

    def create(self, request: Request) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tenant = services.create_tenant(
            actor=actor_from_request(request), **serializer.validated_data
        )
        return Response(self.get_serializer(tenant).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.TenantUpdateSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        tenant = self._tenant("tenant.update")
        serializer = s.TenantUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        tenant = services.update_tenant(
            actor=actor_from_request(request), tenant=tenant, **serializer.validated_data
        )
        return Response(self.get_serializer(tenant).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        tenant = self._tenant("tenant.archive")
        services.archive_tenant(actor=actor_from_request(request), tenant=tenant)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Members of the tenant, by user name. Admins add, change and remove members up to
    their own role; anyone may remove themselves; the last owner stays."""

    model = Membership
    serializer_class = s.MembershipSerializer
    lookup_field = "user__username"
    lookup_url_kwarg = "username"
    permissions = {
        "list": "member.view",
        "retrieve": "member.view",
        "create": "member.view",  # the service requires member.manage
        "partial_update": "member.view",
        "destroy": "member.view",  # members may leave; removing others needs member.manage
    }

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("user", "user__service_account")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        membership = services.add_member_by_username(
            actor=self.actor,
            tenant=self.tenant,
            username=data["user"]["username"],
            role=data["role"],
        )
        return Response(self.get_serializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.MembershipUpdateSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        membership = self.get_object()
        serializer = s.MembershipUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.change_member_role(
            actor=self.actor, membership=membership, role=serializer.validated_data["role"]
        )
        return Response(self.get_serializer(membership).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.remove_member(actor=self.actor, membership=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ServiceAccountViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Users without a login for CI systems and other services; mint their tokens in tokens/."""

    model = ServiceAccount
    serializer_class = s.ServiceAccountSerializer
    lookup_field = "name"
    lookup_url_kwarg = "service_account"
    permissions = {
        "list": "service_account.view",
        "retrieve": "service_account.view",
        "create": "service_account.manage",
        "destroy": "service_account.manage",
    }

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("user", "created_by")

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        if hasattr(self, "tenant"):
            context["roles"] = dict(
                Membership.objects.filter(user__service_account__isnull=False).values_list(
                    "user_id", "role"
                )
            )
        return context

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        account = services.create_service_account(
            actor=self.actor, tenant=self.tenant, **serializer.validated_data
        )
        return Response(self.get_serializer(account).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_service_account(actor=self.actor, account=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """API tokens of the tenant (metadata only). The token itself is in the create response
    and nowhere else. DELETE revokes; the row stays for the record."""

    model = ApiToken
    serializer_class = s.TokenSerializer
    lookup_field = "prefix"
    lookup_url_kwarg = "token_prefix"
    permissions = {
        "list": "token.view",
        "retrieve": "token.view",
        "create": "token.manage",
        "destroy": "token.manage",
    }

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("user", "created_by")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        holder = None
        if account_name := data.pop("service_account", None):
            account = ServiceAccount.objects.filter(name=account_name).first()
            if account is None:
                raise exceptions.ValidationError(
                    {"service_account": [f"no service account named {account_name!r} here"]}
                )
            holder = account.user
        token, raw = services.create_token(
            actor=self.actor, tenant=self.tenant, user=holder, **data
        )
        context = {**self.get_serializer_context(), "plaintext": {token.pk: raw}}
        body = s.TokenSerializer(token, context=context).data
        return Response(body, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.revoke_token(actor=self.actor, token=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


def parse_time(raw: str, name: str) -> dt.datetime:
    value = parse_datetime(raw)
    if value is None or value.tzinfo is None:
        raise exceptions.ValidationError(
            {name: ["expected an ISO 8601 time with a timezone, e.g. 2026-01-31T08:00:00Z"]}
        )
    return value


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("actor", str, description="User name, or `system`"),
            OpenApiParameter("action", str, description="e.g. `token.create`, `token.` for all"),
            OpenApiParameter("object", str, description="`type` or `type:id`, e.g. `apitoken:12`"),
            OpenApiParameter("since", str, description="ISO 8601 time with a timezone"),
            OpenApiParameter("until", str, description="ISO 8601 time with a timezone"),
        ]
    )
)
class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """The tenant's audit log, newest first. Read-only, as the log itself."""

    model = AuditEvent
    serializer_class = s.AuditEventSerializer
    lookup_url_kwarg = "event_id"
    lookup_value_regex = "[0-9]+"
    permissions = {"list": "audit.view", "retrieve": "audit.view"}

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        params = self.request.query_params
        since, until = params.get("since"), params.get("until")
        return audit_log(
            actor=params.get("actor"),
            action=params.get("action"),
            obj=params.get("object"),
            since=parse_time(since, "since") if since else None,
            until=parse_time(until, "until") if until else None,
        )  # the same rows as `queryset` (AuditEvent.objects, the tenant's), filtered
