"""REST of cross-tenant grants: what this tenant shares with others (admins create and
revoke them) and what others share with it (members see them; only the granting tenant
may revoke)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrator.api.base import StrictSerializer, TenantScopedViewSet
from orchestrator.errors import NotFound
from orchestrator.grants import create_grant, delete_grant, grants_of
from orchestrator.models import Grant

__all__ = ["GrantViewSet"]


class GrantSerializer(StrictSerializer, serializers.ModelSerializer[Grant]):
    """A grant as one of its two tenants sees it; a POST with a key it does not know is
    refused, naming the accepted ones."""

    tenant = serializers.CharField(source="tenant.slug", read_only=True, help_text="who shares")
    grantee = serializers.CharField(
        source="grantee.slug", help_text="the other tenant's slug: who may see it"
    )
    kind = serializers.ChoiceField(
        choices=Grant.Kind.choices,
        help_text="events: a workflow's events (name: the workflow); dataset: a dataset's updates",
    )
    name = serializers.CharField(
        max_length=300, help_text='the workflow or dataset name, or "*" for all of them'
    )
    direction = serializers.SerializerMethodField(help_text="given or received")

    class Meta:
        model = Grant
        fields = ["id", "tenant", "grantee", "kind", "name", "direction", "created_at"]
        read_only_fields = ["id", "tenant", "direction", "created_at"]

    def get_direction(self, grant: Grant) -> str:
        return "given" if grant.tenant_id == self.context["tenant_id"] else "received"


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "direction",
                str,
                enum=["given", "received"],
                description="only these (default: both)",
            )
        ]
    )
)
class GrantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """What this tenant shares with other tenants, and what they share with it."""

    model = Grant
    serializer_class = GrantSerializer
    lookup_url_kwarg = "grant_id"
    permissions = {
        "list": "grant.view",
        "retrieve": "grant.view",
        "create": "grant.manage",
        "destroy": "grant.manage",
    }

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return grants_of(self.tenant, self.request.query_params.get("direction"))

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        if hasattr(self, "tenant"):
            context["tenant_id"] = self.tenant.pk
        return context

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        grant = create_grant(
            actor=self.actor,
            tenant=self.tenant,
            grantee=data["grantee"]["slug"],
            kind=data["kind"],
            name=data["name"],
        )
        return Response(self.get_serializer(grant).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Revoke (the granting tenant's admins; a received grant is not yours to revoke)."""
        grant = self.get_object()
        if grant.tenant_id != self.tenant.pk:
            raise NotFound(f"no grant {kwargs['grant_id']} given by {self.tenant.slug!r}")
        delete_grant(actor=self.actor, grant=grant)
        return Response(status=status.HTTP_204_NO_CONTENT)
