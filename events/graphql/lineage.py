"""GraphQL of lineage (filled in by its issue's work)."""

from __future__ import annotations

import strawberry

__all__ = ["LineageMutation", "LineageQuery"]


@strawberry.type
class LineageQuery:
    pass


@strawberry.type
class LineageMutation:
    pass
