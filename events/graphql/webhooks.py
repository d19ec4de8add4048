"""GraphQL of webhooks (filled in by its issue's work)."""

from __future__ import annotations

import strawberry

__all__ = ["WebhookMutation", "WebhookQuery"]


@strawberry.type
class WebhookQuery:
    pass


@strawberry.type
class WebhookMutation:
    pass
