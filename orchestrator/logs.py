"""Logs (docs/deployment.md, "Logs"): every record carries what it is about (the request id,
the tenant, workflow, run, task and try where they apply), read from context variables
that the web's middleware and the worker set; LOG_FORMAT=json writes one JSON object a
line (python-json-logger), `plain` (the default, `make demo`) a line of text."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from orchestrator.context import current_request_id

__all__ = ["FIELDS", "ContextFilter", "add_log_fields", "current_fields", "log_context"]

# What a record may be about, in the order a JSON line shows them.
FIELDS = ("request_id", "tenant", "workflow", "run", "task", "try")

_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "log_fields", default=None
)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add these fields (tenant=..., run=..., `try_` for `try`) to every record logged
    inside, on top of the outer ones; None values are left out."""
    given = {name.rstrip("_"): value for name, value in fields.items() if value is not None}
    token = _fields.set({**(_fields.get() or {}), **given})
    try:
        yield
    finally:
        _fields.reset(token)


def add_log_fields(**fields: Any) -> None:
    """Add fields for the rest of the current `log_context` (the web's middleware, once the
    URL named the tenant, workflow or run)."""
    given = {name.rstrip("_"): value for name, value in fields.items() if value is not None}
    if given:
        _fields.set({**(_fields.get() or {}), **given})


def current_fields() -> dict[str, Any]:
    found = dict(_fields.get() or {})
    request_id = current_request_id()
    if request_id:
        found["request_id"] = request_id
    return found


class ContextFilter(logging.Filter):
    """Puts the context's fields on each record (as attributes the JSON formatter writes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = current_fields()
        request = getattr(record, "request", None)
        if request is not None:  # Django's own record of a request, logged after its context
            fields = {**_of_request(request), **fields}
        for name, value in fields.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _of_request(request: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if request_id := getattr(request, "request_id", None):
        found["request_id"] = request_id
    match = getattr(request, "resolver_match", None)
    kwargs = getattr(match, "kwargs", None) or {}
    for field, name in (("tenant", "tenant"), ("workflow", "workflow"), ("run", "run_id")):
        if kwargs.get(name) is not None:
            found[field] = kwargs[name]
    return found
