"""What every task-type executor gets and may use: the attempt (rendered task, context,
log sink, stop flag), the tenant's connections, and the errors it may raise. Executors
live in their own modules (runs.http_task, runs.sql_task, runs.container_task) and are
registered in runs.executor; this module imports none of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runs.process import OutputSink

__all__ = ["Attempt", "ConnectionInfo", "TaskFailed"]


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


class TaskFailed(Exception):
    """An executor's expected failure: `str(exc)` becomes the attempt's error. With
    `retryable=False` the task's remaining retries are not used (a 4xx answer, a blocked
    address, a bad connection kind: trying again cannot help)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class Attempt:
    """What an executor gets: the rendered task, its context, where output goes."""

    attempt_id: int
    ti: Any  # runs.models.TaskInstance (its run, tenant_id, task_id, try_number)
    task: dict[str, Any]
    context: dict[str, Any]
    sink: OutputSink
    should_stop: Callable[[], bool]
    # The tenant's connection by name (decrypted; the use is recorded on the attempt and
    # its secret values are added to the attempt's masking). Raises TaskFailed (not
    # retryable) when the tenant has no connection of that name.
    connection: Callable[[str], ConnectionInfo] = field(default=lambda name: _no_connections(name))
    # The tenant's http_allowed_hosts policy (host names, IP addresses or networks), added to
    # the platform's HTTP_ALLOWED_HOSTS setting by the SSRF guard.
    allowed_hosts: tuple[str, ...] = ()
    # The same for sql connections: sql_allowed_hosts, added to SQL_ALLOWED_HOSTS.
    sql_allowed_hosts: tuple[str, ...] = ()

    def log(self, message: str) -> None:
        """A line of the executor's own in the attempt's log."""
        self.sink.write((message.rstrip("\n") + "\n").encode())


def _no_connections(name: str) -> ConnectionInfo:
    raise TaskFailed(f"connection {name!r} not found in this tenant", retryable=False)
