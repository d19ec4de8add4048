"""A tenant's variables, secrets and connections as one attempt sees them: looked up on
the worker only when a template or an executor asks (never stored rendered), each use
recorded for the attempt, each secret value handed to the attempt's masker first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from connections.info import ConnectionInfo
from connections.runtime import get_connection, get_secret, get_variable
from orchestrator.crypto import DecryptionError
from orchestrator.models import Tenant
from runs.tasktypes.contract import TaskFailed
from runs.tasktypes.masking import Masker
from runs.tasktypes.sql import sqlite_refusal

__all__ = ["Credentials"]


SENSITIVE_KEYS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "private",
    "api_key",
    "apikey",
    "access_key",
)


def _sensitive(extra: Any, sensitive: bool = False) -> list[str]:
    """The string values of a connection's extra under a key that names a credential (and
    every header value): masked like the password. Plain settings (sslmode, scheme) are not,
    or "https" would vanish from every log."""
    if isinstance(extra, str):
        return [extra] if sensitive else []
    if isinstance(extra, list):
        return [v for item in extra for v in _sensitive(item, sensitive)]
    if isinstance(extra, dict):
        return [
            v
            for key, item in extra.items()
            for v in _sensitive(
                item,
                sensitive
                or str(key).lower() == "headers"
                or any(word in str(key).lower() for word in SENSITIVE_KEYS),
            )
        ]
    return []


T = TypeVar("T")


def _opened(lookup: Callable[[int, str], T], tenant_id: int, name: str) -> T:
    """A lookup whose stored value no configured key opens fails the task for good (and
    says which value), instead of an internal error retried in vain."""
    try:
        return lookup(tenant_id, name)
    except DecryptionError as exc:
        raise TaskFailed(f"{exc}: see ENCRYPTION_KEYS and rotate_keys", retryable=False) from None


class _Names:
    """`{{ secrets.NAME }}` / `{{ vars.NAME }}` / `{{ conn.NAME.host }}`: a lookup by
    item (Jinja falls back from attribute to item), with no attributes of its own that a
    name could collide with."""

    def __init__(self, kind: str, lookup: Callable[[str], Any]) -> None:
        self._kind, self._lookup = kind, lookup

    def __getitem__(self, name: str) -> Any:
        return self._lookup(name)

    def __repr__(self) -> str:
        return f"<{self._kind}>"  # never the values


class _ConnectionView:
    """A connection's fields in templates; its password and extra are masked."""

    def __init__(self, info: ConnectionInfo) -> None:
        self.name, self.kind, self.host, self.port = info.name, info.kind, info.host, info.port
        self.database, self.login, self.password = info.database, info.login, info.password
        self.extra = dict(info.extra)
        self.schema = info.database  # Airflow's name for it

    def __repr__(self) -> str:
        return f"<connection {self.name}>"


class Credentials:
    """One attempt's lookups. `uses` lists the names used, by kind, for the attempt row."""

    def __init__(self, tenant_id: int, masker: Masker) -> None:
        self.tenant_id, self.masker = tenant_id, masker
        self._used: dict[str, set[str]] = {
            "connections": set(),
            "secrets": set(),
            "variables": set(),
        }
        self._connections: dict[str, ConnectionInfo] = {}

    @property
    def uses(self) -> dict[str, list[str]]:
        return {kind: sorted(names) for kind, names in self._used.items() if names}

    def template_names(self) -> dict[str, Any]:
        return {
            "secrets": _Names("secrets", self.secret),
            "vars": _Names("vars", self.variable),
            "conn": _Names("conn", lambda name: _ConnectionView(self.connection(name))),
        }

    def secret(self, name: str) -> str:
        value = _opened(get_secret, self.tenant_id, name)
        if value is None:
            raise TaskFailed(f"secret {name!r} not found in this tenant", retryable=False)
        self.masker.add(value)
        self._used["secrets"].add(name)
        return value

    def variable(self, name: str) -> str:
        value = _opened(get_variable, self.tenant_id, name)
        if value is None:
            raise TaskFailed(f"variable {name!r} not found in this tenant", retryable=False)
        self._used["variables"].add(name)
        return value

    def connection(self, name: str) -> ConnectionInfo:
        if name not in self._connections:
            info = _opened(get_connection, self.tenant_id, name)
            if info is None:
                raise TaskFailed(f"connection {name!r} not found in this tenant", retryable=False)
            if info.kind == "sqlite":
                slug = Tenant.objects.values_list("slug", flat=True).get(pk=self.tenant_id)
                if (refusal := sqlite_refusal(info, slug)) is not None:
                    raise TaskFailed(refusal, retryable=False)
            self.masker.add(info.password)
            for value in _sensitive(info.extra):
                self.masker.add(value)
            self._connections[name] = info
            self._used["connections"].add(name)
        return self._connections[name]
