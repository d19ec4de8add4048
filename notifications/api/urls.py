from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from notifications.api import views

router = SimpleRouter(trailing_slash=True)
router.register("notification-channels", views.ChannelViewSet, basename="notification-channel")
router.register("notification-rules", views.RuleViewSet, basename="notification-rule")
router.register("deliveries", views.DeliveryViewSet, basename="delivery")
router.register("sla-misses", views.SlaMissViewSet, basename="sla-miss")

# Mounted under /api/v1/tenants/<tenant>/ by orchestrator.urls.
urlpatterns = [path("", include(router.urls))]
