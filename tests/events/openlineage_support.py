"""Helpers of the OpenLineage tests: a receiver standing in for Marquez (the notification
tests' HTTP receiver), settings that point OpenLineage at it, the sender run here as its
Celery task would, and the vendored OpenLineage schemas (tests/events/schemas, no network)
to check every event against."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from events import openlineage
from runs.models import LineageEvent
from tests.notifications.servers import HttpReceiver, Post

__all__ = [
    "ENDPOINT",
    "by_job",
    "enable",
    "events_of",
    "receiver",
    "send_all",
    "valid",
]

ENDPOINT = "/api/v1/lineage"
SCHEMAS = Path(__file__).parent / "schemas"


def _schemas() -> dict[str, dict[str, Any]]:
    return {
        schema["$id"]: schema
        for schema in (json.loads(path.read_text()) for path in SCHEMAS.glob("*.json"))
    }


_LOADED = _schemas()
_REGISTRY: Registry[Any] = Registry().with_resources(
    (uri, Resource.from_contents(schema)) for uri, schema in _LOADED.items()
)
_CORE = next(uri for uri in _LOADED if uri.endswith("/OpenLineage.json"))


def _validator(ref: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": ref},
        registry=_REGISTRY,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def valid(event: dict[str, Any]) -> dict[str, Any]:
    """The event, checked against the core schema (a RunEvent, strictly) and each facet
    against its own vendored schema where there is one (others only as base facets)."""
    _validator(f"{_CORE}#/$defs/RunEvent").validate(event)
    assert event["schemaURL"].startswith(_CORE), event["schemaURL"]
    # The formats jsonschema checks only with optional packages: date-time and uri.
    assert dt.datetime.fromisoformat(event["eventTime"]).tzinfo is not None
    assert "T" in event["eventTime"]
    assert urlsplit(event["producer"]).scheme, event["producer"]
    for name, facet in event["run"].get("facets", {}).items():
        uri = facet["_schemaURL"]
        if uri.split("#")[0] in _LOADED:
            _validator(uri).validate(facet)
        else:  # pragma: no cover (every facet sent has its schema here)
            raise AssertionError(f"facet {name}: no vendored schema for {uri}")
    return event


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver()
    yield server
    server.close()


def enable(settings: Any, url: str, transport: str = "http") -> None:
    """OpenLineage on, as OPENLINEAGE_URL (or OPENLINEAGE_TRANSPORT) would set it."""
    settings.OPENLINEAGE_ENABLED = True
    settings.OPENLINEAGE_TRANSPORT = transport
    settings.OPENLINEAGE_URL = url
    settings.OPENLINEAGE_ENDPOINT = ENDPOINT.lstrip("/")
    settings.OPENLINEAGE_NAMESPACE = "orchestrator"
    settings.OPENLINEAGE_TIMEOUT = 2.0


def send_all() -> int:
    """What the Celery task `events.send_lineage` does, for every attempt with events."""
    attempts = LineageEvent.objects.dangerously_unscoped().values_list("attempt_id", flat=True)
    return openlineage.send(set(attempts))


def events_of(posts: list[Post]) -> list[dict[str, Any]]:
    """The events posted to the lineage endpoint, each checked against the schemas."""
    assert all(post.path == ENDPOINT for post in posts), [post.path for post in posts]
    assert all(post.headers["content-type"] == "application/json" for post in posts)
    return [valid(post.json()) for post in posts]


def by_job(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """{job name: its event types in the order they arrived}."""
    seen: dict[str, list[str]] = {}
    for event in events:
        seen.setdefault(event["job"]["name"], []).append(event["eventType"])
    return seen
