"""REST endpoints of connections, variables and secrets, by name. Each one translates
HTTP to a service call; responses carry metadata only, never a secret value."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from connections import selectors, services
from connections.api import serializers as s
from connections.models import Connection, Secret, Variable
from orchestrator.api.base import TenantScopedViewSet

__all__ = ["ConnectionViewSet", "SecretViewSet", "VariableViewSet"]


class _NamedViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    lookup_field = "name"
    update_serializer_class: type[Serializer[Any]]

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("created_by", "updated_by")

    def _valid(self, serializer_class: type[Serializer[Any]], **kwargs: Any) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def _created(self, obj: Any) -> Response:
        return Response(self.get_serializer(obj).data, status=status.HTTP_201_CREATED)


class ConnectionViewSet(_NamedViewSet):
    """Connections tasks use by name. Admins create, change, test and delete them; editors
    see their metadata. The password and extra's values are write-only."""

    model = Connection
    lookup_url_kwarg = "connection"
    serializer_class = s.ConnectionSerializer
    permissions = {
        "list": "connection.view",
        "retrieve": "connection.view",
        "create": "connection.manage",
        "partial_update": "connection.manage",
        "destroy": "connection.manage",
        "test": "connection.manage",
    }

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self._valid(s.ConnectionSerializer)
        return self._created(
            services.create_connection(actor=self.actor, tenant=self.tenant, **data)
        )

    @extend_schema(request=s.ConnectionUpdateSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self._valid(s.ConnectionUpdateSerializer, partial=True)
        connection = services.update_connection(
            actor=self.actor, connection=selectors.get_connection(kwargs["connection"]), **data
        )
        return Response(self.get_serializer(connection).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_connection(
            actor=self.actor, connection=selectors.get_connection(kwargs["connection"])
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=s.CheckResultSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Can this installation reach the connection? Changes nothing (no audit event)."""
        ok, message = services.check_connection(
            actor=self.actor, connection=selectors.get_connection(kwargs["connection"])
        )
        return Response(s.CheckResultSerializer({"ok": ok, "message": message}).data)


class VariableViewSet(_NamedViewSet):
    """Plain values specs read as `{{ vars.NAME }}`. Editors manage them; viewers read them."""

    model = Variable
    lookup_url_kwarg = "variable"
    serializer_class = s.VariableSerializer
    permissions = {
        "list": "variable.view",
        "retrieve": "variable.view",
        "create": "variable.manage",
        "partial_update": "variable.manage",
        "destroy": "variable.manage",
    }

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self._valid(s.VariableSerializer)
        return self._created(services.create_variable(actor=self.actor, tenant=self.tenant, **data))

    @extend_schema(request=s.VariableUpdateSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self._valid(s.VariableUpdateSerializer, partial=True)
        variable = services.update_variable(
            actor=self.actor, variable=selectors.get_variable(kwargs["variable"]), **data
        )
        return Response(self.get_serializer(variable).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        variable = selectors.get_variable(kwargs["variable"])
        services.delete_variable(actor=self.actor, variable=variable)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SecretViewSet(_NamedViewSet):
    """Write-only values specs use as `{{ secrets.NAME }}`. Admins set, rotate (PATCH a new
    value) and delete them; editors see their names and when each last changed."""

    model = Secret
    lookup_url_kwarg = "secret"
    serializer_class = s.SecretSerializer
    permissions = {
        "list": "secret.view",
        "retrieve": "secret.view",
        "create": "secret.manage",
        "partial_update": "secret.manage",
        "destroy": "secret.manage",
    }

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self._valid(s.SecretSerializer)
        return self._created(services.create_secret(actor=self.actor, tenant=self.tenant, **data))

    @extend_schema(request=s.SecretUpdateSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self._valid(s.SecretUpdateSerializer, partial=True)
        secret = services.update_secret(
            actor=self.actor, secret=selectors.get_secret(kwargs["secret"]), **data
        )
        return Response(self.get_serializer(secret).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_secret(actor=self.actor, secret=selectors.get_secret(kwargs["secret"]))
        return Response(status=status.HTTP_204_NO_CONTENT)
