from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from workflows.api import views

router = SimpleRouter(trailing_slash=True)
router.register("workflows", views.WorkflowViewSet, basename="workflow")

version_router = SimpleRouter(trailing_slash=True)
version_router.register("versions", views.VersionViewSet, basename="workflow-version")

# Mounted under /api/v1/tenants/<tenant>/ by orchestrator.api.urls.
urlpatterns = [
    path("", include(router.urls)),
    path("workflows/<str:workflow>/", include(version_router.urls)),
]
