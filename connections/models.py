"""A tenant's connections (to databases and HTTP services), variables and secrets.

Secret values (connection passwords and extras, secret values) are stored encrypted with
orchestrator.crypto and never leave the service except to the worker (connections.runtime).
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from orchestrator.models import TenantOwnedModel

__all__ = [
    "CONNECTION_NAME_PATTERN",
    "KEY_NAME_PATTERN",
    "Connection",
    "Secret",
    "Stamped",
    "Variable",
]

# Connections are named like workflows; variables and secrets like template identifiers,
# since specs read them as `{{ vars.NAME }}` and `{{ secrets.NAME }}`.
CONNECTION_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
KEY_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class Stamped(TenantOwnedModel):
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        abstract = True


class Connection(Stamped):
    """How tasks reach a database or an HTTP service, by name."""

    class Kind(models.TextChoices):
        POSTGRES = "postgres"
        MYSQL = "mysql"
        SQLITE = "sqlite"
        HTTP = "http"

    AUDIT_SECRET_FIELDS: ClassVar = {"password_encrypted", "extra_encrypted"}
    ENCRYPTED_FIELDS: ClassVar = ("password_encrypted", "extra_encrypted")  # rotate_keys

    name = models.CharField(max_length=63)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    host = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    database = models.CharField(max_length=1000, blank=True)  # sqlite: the file's path
    login = models.CharField(max_length=200, blank=True)
    password_encrypted = models.TextField(blank=True)  # a Fernet token, "" when none
    # Extra settings as encrypted JSON (users put tokens in headers); their keys in clear,
    # so listing connections needs no decryption.
    extra_encrypted = models.TextField(blank=True)
    extra_keys = models.JSONField(default=list, blank=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "name"], name="connection_unique_name"),
            models.CheckConstraint(
                condition=Q(kind__in=["postgres", "mysql", "sqlite", "http"]),
                name="connection_kind_valid",
            ),
            models.CheckConstraint(
                condition=Q(port__isnull=True) | Q(port__gte=1, port__lte=65535),
                name="connection_port_range",
            ),
        ]
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)


class Variable(Stamped):
    """A plain, readable value that specs use as `{{ vars.NAME }}`."""

    name = models.CharField(max_length=63)
    value = models.TextField(blank=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "name"], name="variable_unique_name"),
        ]
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name


class Secret(Stamped):
    """A write-only value that specs use as `{{ secrets.NAME }}`; masked wherever it shows."""

    AUDIT_SECRET_FIELDS: ClassVar = {"value_encrypted"}
    ENCRYPTED_FIELDS: ClassVar = ("value_encrypted",)

    name = models.CharField(max_length=63)
    value_encrypted = models.TextField()

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "name"], name="secret_unique_name"),
        ]
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name
