"""The events app's REST endpoints, mounted under /api/v1/tenants/<tenant>/ by the root
urls: webhooks (events/api/webhooks.py) and the lineage graph (events/api/lineage.py)."""

from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

router = SimpleRouter(trailing_slash=True)

urlpatterns = [
    path("", include(router.urls)),
]
