"""The executor contract: what every task type's executor gets (the attempt: rendered
task, context, log sink, stop flag, the tenant's connections), what it may raise
(`TaskFailed`) and what it returns (`Outcome`, which the engine records). Each task type
lives in its own module of this package and is registered in `runs.tasktypes.registry`;
this module imports none of them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connections.info import ConnectionInfo
from runs.tasktypes.process import OutputSink

__all__ = ["Attempt", "Outcome", "TaskFailed"]


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as the executor saw it."""

    state: str  # success | failed | skipped
    error: str = ""
    exit_code: int | None = None
    result: Any = None
    rendered: dict[str, Any] = field(default_factory=dict)
    lost: bool = False  # the worker died (lease expired): not the task's own failure
    retryable: bool = True  # False: fail now, whatever retries are left
    # A sensor not satisfied yet (state `rescheduled`): check again at this time.
    reschedule_at: dt.datetime | None = None
    uses: dict[str, list[str]] = field(default_factory=dict)  # connections, secrets, variables


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
