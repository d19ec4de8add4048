"""Read queries of git sources. Callers are inside the tenant's scope."""

from __future__ import annotations

from django.db.models import QuerySet

from gitsync.models import GitSource
from orchestrator.errors import NotFound

__all__ = ["get_source", "sources"]


def sources() -> QuerySet[GitSource]:
    return GitSource.objects.select_related("tenant").order_by("name")


def get_source(name: str) -> GitSource:
    source = sources().filter(name=name).first()
    if source is None:
        raise NotFound(f"git source {name!r} not found")
    return source
