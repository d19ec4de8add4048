"""Git sources' REST endpoints, mounted under /api/v1/tenants/<tenant>/ by the root urls."""

from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from gitsync.api.views import GitSourceViewSet

__all__ = ["urlpatterns"]

router = SimpleRouter(trailing_slash=True)
router.register("git-sources", GitSourceViewSet, basename="git-source")

urlpatterns = [path("", include(router.urls))]
