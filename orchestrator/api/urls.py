from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from orchestrator.api import grants, views

router = SimpleRouter(trailing_slash=True)
router.register("tenants", views.TenantViewSet, basename="tenant")

tenant_router = SimpleRouter(trailing_slash=True)
tenant_router.register("members", views.MemberViewSet, basename="member")
tenant_router.register("service-accounts", views.ServiceAccountViewSet, basename="service-account")
tenant_router.register("tokens", views.TokenViewSet, basename="token")
tenant_router.register("audit-events", views.AuditEventViewSet, basename="audit-event")
tenant_router.register("grants", grants.GrantViewSet, basename="grant")

urlpatterns = [
    path("me", views.MeView.as_view(), name="me"),
    path("", include(router.urls)),
    path("tenants/<str:tenant>/", include(tenant_router.urls)),
]
