"""The events app's GraphQL: webhooks (events/graphql/webhooks.py) and the lineage graph
(events/graphql/lineage.py). The event log and its publishing are in runs' schema, the
grants in the platform's."""

from __future__ import annotations

import strawberry

from events.graphql.lineage import LineageMutation, LineageQuery
from events.graphql.webhooks import WebhookMutation, WebhookQuery

__all__ = ["Mutation", "Query"]


@strawberry.type
class Query(WebhookQuery, LineageQuery):
    pass


@strawberry.type
class Mutation(WebhookMutation, LineageMutation):
    pass
