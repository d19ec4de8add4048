"""Riding out database trouble on a worker: a dropped connection, a restart, a failover, a
deadlock victim. The engine's steps are compare-and-set transitions, so calling one again
after a failure is safe: if the first call did commit (and only the answer was lost), the
second finds nothing left to do."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import InterfaceError, OperationalError, connection

__all__ = ["DB_ERRORS", "with_db_retry"]

logger = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

# Connection lost or refused, server restarting, deadlock or serialization failure.
DB_ERRORS = (OperationalError, InterfaceError)


def with_db_retry(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call `fn`; on a database error, reconnect and call it again, backing off from 50 ms
    to 2 s, for up to DB_RETRY_SECONDS. `fn` must run its own transaction and be safe to
    repeat. Inside a caller's transaction nothing can be retried, so the error propagates."""
    from django.conf import settings

    delay = 0.05
    deadline = time.monotonic() + settings.DB_RETRY_SECONDS
    while True:
        try:
            return fn(*args, **kwargs)
        except DB_ERRORS as exc:
            if connection.in_atomic_block or time.monotonic() + delay > deadline:
                raise
            logger.warning(
                "%s: database error, retrying in %.2fs: %s",
                getattr(fn, "__qualname__", fn),
                delay,
                str(exc).strip(),
            )
            connection.close()
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
