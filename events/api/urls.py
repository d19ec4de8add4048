"""The events app's REST endpoints, mounted under /api/v1/tenants/<tenant>/ by the root
urls: webhooks (events/api/webhooks.py) and the lineage graph (events/api/lineage.py)."""

from __future__ import annotations

from django.urls import path

from events.api import lineage, webhooks

urlpatterns = [
    path(
        "workflows/<str:workflow>/webhooks/",
        webhooks.WebhookViewSet.as_view({"get": "list"}, basename="webhook"),
        name="workflow-webhook-list",
    ),
    path(
        "workflows/<str:workflow>/webhooks/<str:webhook>/secrets/",
        webhooks.WebhookSecretViewSet.as_view({"post": "create"}, basename="webhook-secret"),
        name="webhook-secret-list",
    ),
    path(
        "workflows/<str:workflow>/webhooks/<str:webhook>/secrets/<str:secret_id>/",
        webhooks.WebhookSecretViewSet.as_view({"delete": "destroy"}, basename="webhook-secret"),
        name="webhook-secret-detail",
    ),
    *lineage.urlpatterns,
]
