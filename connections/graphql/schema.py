"""Connections, variables and secrets over GraphQL: the same selectors, services and
policy as REST. Secret values are not fields of any type: they cannot be queried."""

from __future__ import annotations

from typing import Any

import strawberry
import strawberry_django
from rest_framework.serializers import Serializer
from strawberry.scalars import JSON
from strawberry.types import Info

from connections import models, selectors, services
from connections.api import serializers as s
from orchestrator.api.errors import flatten_errors
from orchestrator.graphql.errors import bad_input
from orchestrator.graphql.types import LIST_LIMIT_MAX, actor_of, list_limit, tenant_scope_for

__all__ = ["Mutation", "Query"]


@strawberry_django.type(models.Connection)
class ConnectionType:
    id: strawberry.auto
    name: strawberry.auto
    kind: str
    host: strawberry.auto
    port: int | None
    database: strawberry.auto
    login: strawberry.auto
    description: strawberry.auto
    created_at: strawberry.auto
    updated_at: strawberry.auto

    @strawberry_django.field(only=["password_encrypted"])  # type: ignore[untyped-decorator]
    def has_password(self, root: models.Connection) -> bool:
        return root.has_password

    @strawberry_django.field(only=["extra_keys"])  # type: ignore[untyped-decorator]
    def extra_keys(self, root: models.Connection) -> list[str]:
        return list(root.extra_keys)


@strawberry_django.type(models.Variable)
class VariableType:
    id: strawberry.auto
    name: strawberry.auto
    value: strawberry.auto
    description: strawberry.auto
    created_at: strawberry.auto
    updated_at: strawberry.auto


@strawberry_django.type(models.Secret)
class SecretType:
    """A secret's metadata; `updatedAt` shows when it was last set (rotated)."""

    id: strawberry.auto
    name: strawberry.auto
    description: strawberry.auto
    created_at: strawberry.auto
    updated_at: strawberry.auto


@strawberry.type
class ConnectionCheck:
    ok: bool
    message: str


def _given(**kwargs: Any) -> dict[str, Any]:
    """The arguments the caller passed (an explicit null included: it clears a port)."""
    return {k: v for k, v in kwargs.items() if v is not strawberry.UNSET}


def _valid(serializer_class: type[Serializer[Any]], data: dict[str, Any]) -> dict[str, Any]:
    """Validate with the REST serializer, so both interfaces check the same rules."""
    serializer = serializer_class(data=data, partial=True)
    if not serializer.is_valid():
        raise bad_input(list(flatten_errors(serializer.errors)))
    return dict(serializer.validated_data)


@strawberry.type
class Query:
    @strawberry.field
    def connections(
        self, info: Info, tenant: str, limit: int = LIST_LIMIT_MAX
    ) -> list[ConnectionType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "connection.view"):
            return list(selectors.all_connections()[:limit])  # type: ignore[arg-type]

    @strawberry.field
    def variables(self, info: Info, tenant: str, limit: int = LIST_LIMIT_MAX) -> list[VariableType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "variable.view"):
            return list(selectors.all_variables()[:limit])  # type: ignore[arg-type]

    @strawberry.field
    def secrets(self, info: Info, tenant: str, limit: int = LIST_LIMIT_MAX) -> list[SecretType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "secret.view"):
            return list(selectors.all_secrets()[:limit])  # type: ignore[arg-type]


@strawberry.type
class Mutation:
    @strawberry.mutation
    def create_connection(
        self,
        info: Info,
        tenant: str,
        name: str,
        kind: str,
        host: str | None = strawberry.UNSET,
        port: int | None = strawberry.UNSET,
        database: str | None = strawberry.UNSET,
        login: str | None = strawberry.UNSET,
        password: str | None = strawberry.UNSET,
        extra: JSON | None = strawberry.UNSET,
        description: str | None = strawberry.UNSET,
    ) -> ConnectionType:
        with tenant_scope_for(info, tenant, "connection.manage") as t:
            data = _valid(
                s.ConnectionSerializer,
                _given(
                    name=name,
                    kind=kind,
                    host=host,
                    port=port,
                    database=database,
                    login=login,
                    password=password,
                    extra=extra,
                    description=description,
                ),
            )
            return services.create_connection(actor=actor_of(info), tenant=t, **data)  # type: ignore[return-value]

    @strawberry.mutation(
        description='Change what is given: a password not given is kept, "" clears it; '
        "extra, when given, replaces the stored object."
    )  # type: ignore[untyped-decorator]
    def update_connection(
        self,
        info: Info,
        tenant: str,
        name: str,
        kind: str | None = strawberry.UNSET,
        host: str | None = strawberry.UNSET,
        port: int | None = strawberry.UNSET,
        database: str | None = strawberry.UNSET,
        login: str | None = strawberry.UNSET,
        password: str | None = strawberry.UNSET,
        extra: JSON | None = strawberry.UNSET,
        description: str | None = strawberry.UNSET,
    ) -> ConnectionType:
        with tenant_scope_for(info, tenant, "connection.manage"):
            data = _valid(
                s.ConnectionUpdateSerializer,
                _given(
                    kind=kind,
                    host=host,
                    port=port,
                    database=database,
                    login=login,
                    password=password,
                    extra=extra,
                    description=description,
                ),
            )
            connection = selectors.get_connection(name)
            return services.update_connection(  # type: ignore[return-value]
                actor=actor_of(info), connection=connection, **data
            )

    @strawberry.mutation
    def delete_connection(self, info: Info, tenant: str, name: str) -> bool:
        with tenant_scope_for(info, tenant, "connection.manage"):
            connection = selectors.get_connection(name)
            services.delete_connection(actor=actor_of(info), connection=connection)
        return True

    @strawberry.mutation(description="Can this installation reach it? Changes nothing.")  # type: ignore[untyped-decorator]
    def test_connection(self, info: Info, tenant: str, name: str) -> ConnectionCheck:
        with tenant_scope_for(info, tenant, "connection.manage"):
            connection = selectors.get_connection(name)
        ok, message = services.check_connection(actor=actor_of(info), connection=connection)
        return ConnectionCheck(ok=ok, message=message)

    @strawberry.mutation
    def create_variable(
        self,
        info: Info,
        tenant: str,
        name: str,
        value: str,
        description: str | None = strawberry.UNSET,
    ) -> VariableType:
        with tenant_scope_for(info, tenant, "variable.manage") as t:
            data = _valid(
                s.VariableSerializer, _given(name=name, value=value, description=description)
            )
            return services.create_variable(actor=actor_of(info), tenant=t, **data)  # type: ignore[return-value]

    @strawberry.mutation
    def update_variable(
        self,
        info: Info,
        tenant: str,
        name: str,
        value: str | None = strawberry.UNSET,
        description: str | None = strawberry.UNSET,
    ) -> VariableType:
        with tenant_scope_for(info, tenant, "variable.manage"):
            data = _valid(s.VariableUpdateSerializer, _given(value=value, description=description))
            variable = selectors.get_variable(name)
            return services.update_variable(actor=actor_of(info), variable=variable, **data)  # type: ignore[return-value]

    @strawberry.mutation
    def delete_variable(self, info: Info, tenant: str, name: str) -> bool:
        with tenant_scope_for(info, tenant, "variable.manage"):
            variable = selectors.get_variable(name)
            services.delete_variable(actor=actor_of(info), variable=variable)
        return True

    @strawberry.mutation
    def create_secret(
        self,
        info: Info,
        tenant: str,
        name: str,
        value: str,
        description: str | None = strawberry.UNSET,
    ) -> SecretType:
        with tenant_scope_for(info, tenant, "secret.manage") as t:
            data = _valid(
                s.SecretSerializer, _given(name=name, value=value, description=description)
            )
            return services.create_secret(actor=actor_of(info), tenant=t, **data)  # type: ignore[return-value]

    @strawberry.mutation(description="A new value (rotation) or description; omitted: kept.")  # type: ignore[untyped-decorator]
    def update_secret(
        self,
        info: Info,
        tenant: str,
        name: str,
        value: str | None = strawberry.UNSET,
        description: str | None = strawberry.UNSET,
    ) -> SecretType:
        with tenant_scope_for(info, tenant, "secret.manage"):
            data = _valid(s.SecretUpdateSerializer, _given(value=value, description=description))
            secret = selectors.get_secret(name)
            return services.update_secret(actor=actor_of(info), secret=secret, **data)  # type: ignore[return-value]

    @strawberry.mutation
    def delete_secret(self, info: Info, tenant: str, name: str) -> bool:
        with tenant_scope_for(info, tenant, "secret.manage"):
            secret = selectors.get_secret(name)
            services.delete_secret(actor=actor_of(info), secret=secret)
        return True
