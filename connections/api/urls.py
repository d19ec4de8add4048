from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from connections.api import views

router = SimpleRouter(trailing_slash=True)
router.register("connections", views.ConnectionViewSet, basename="connection")
router.register("variables", views.VariableViewSet, basename="variable")
router.register("secrets", views.SecretViewSet, basename="secret")

# Mounted under /api/v1/tenants/<tenant>/ by orchestrator.urls.
urlpatterns = [path("", include(router.urls))]
