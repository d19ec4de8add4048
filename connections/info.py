"""A connection's values as tasks see them: what `connections` provides to the executors
of `runs` (which resolve a task's connection by name through `connections.runtime`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConnectionInfo"]


@dataclass(frozen=True)
class ConnectionInfo:
    """A tenant's named connection, decrypted, as the worker sees it at execution time.
    Never stored or logged: its password is masked in whatever the attempt records."""

    name: str
    kind: str  # postgres | mysql | sqlite | http
    host: str = ""
    port: int | None = None
    database: str = ""  # sqlite: the file's path
    login: str = ""
    password: str = field(default="", repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)
