"""Read queries of connections, variables and secrets. Callers are inside the tenant's scope."""

from __future__ import annotations

from django.db.models import QuerySet

from connections.models import Connection, Secret, Variable
from orchestrator.errors import NotFound

__all__ = [
    "all_connections",
    "all_secrets",
    "all_variables",
    "get_connection",
    "get_secret",
    "get_variable",
]


def all_connections() -> QuerySet[Connection]:
    return Connection.objects.select_related("tenant", "created_by", "updated_by")


def all_variables() -> QuerySet[Variable]:
    return Variable.objects.select_related("tenant", "created_by", "updated_by")


def all_secrets() -> QuerySet[Secret]:
    return Secret.objects.select_related("tenant", "created_by", "updated_by")


def get_connection(name: str) -> Connection:
    connection = all_connections().filter(name=name).first()
    if connection is None:
        raise NotFound(f"connection {name!r} not found")
    return connection


def get_variable(name: str) -> Variable:
    variable = all_variables().filter(name=name).first()
    if variable is None:
        raise NotFound(f"variable {name!r} not found")
    return variable


def get_secret(name: str) -> Secret:
    secret = all_secrets().filter(name=name).first()
    if secret is None:
        raise NotFound(f"secret {name!r} not found")
    return secret
