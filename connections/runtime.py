"""Lookups for the worker: a task's own tenant's connections, secrets and variables, by
name, decrypted. No policy check (the tenant is the task's, not a caller's choice); a name
of another tenant never resolves."""

from __future__ import annotations

from connections import services
from connections.info import ConnectionInfo
from connections.models import Connection, Secret, Variable
from orchestrator import crypto
from orchestrator.context import tenant_scope

__all__ = ["get_connection", "get_secret", "get_variable"]


def get_connection(tenant_id: int, name: str) -> ConnectionInfo | None:
    """The connection decrypted, None when the tenant has none of that name. Raises
    crypto.DecryptionError, naming it, when no configured key opens its values."""
    with tenant_scope([tenant_id]):
        connection = Connection.objects.filter(name=name).first()
    if connection is None:
        return None
    try:
        return services.connection_info(connection)
    except crypto.DecryptionError:
        raise crypto.DecryptionError(_unreadable("connection", name)) from None


def get_secret(tenant_id: int, name: str) -> str | None:
    with tenant_scope([tenant_id]):
        ciphertext = Secret.objects.filter(name=name).values_list("value_encrypted", flat=True)
        value = ciphertext.first()
    if value is None:
        return None
    try:
        return crypto.decrypt(value)
    except crypto.DecryptionError:
        raise crypto.DecryptionError(_unreadable("secret", name)) from None


def get_variable(tenant_id: int, name: str) -> str | None:
    with tenant_scope([tenant_id]):
        return Variable.objects.filter(name=name).values_list("value", flat=True).first()


def _unreadable(what: str, name: str) -> str:
    return (
        f"{what} {name!r}: no key of ENCRYPTION_KEYS opens its stored value (was the key "
        f"it was encrypted with removed?); set the value again or restore the key"
    )
