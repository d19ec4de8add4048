from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from events.views import webhook
from gitsync.views import push_webhook
from orchestrator import health
from orchestrator.graphql.view import graphql_view
from workflows.api.views import SpecSchemaView

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics_view, name="metrics"),
    path("api/v1/", include("orchestrator.api.urls")),
    path("api/v1/tenants/<str:tenant>/", include("workflows.api.urls")),
    path("api/v1/tenants/<str:tenant>/", include("runs.api.urls")),
    path("api/v1/tenants/<str:tenant>/", include("connections.api.urls")),
    path("api/v1/tenants/<str:tenant>/", include("notifications.api.urls")),
    path("api/v1/tenants/<str:tenant>/", include("events.api.urls")),
    path("api/v1/tenants/<str:tenant>/", include("gitsync.api.urls")),
    path("api/v1/workflow-spec.schema.json", SpecSchemaView.as_view(), name="workflow-spec-schema"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file (?script): no inline script for the CSP.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="schema", template_name="orchestrator/swagger_ui.html"
        ),
        name="api-docs",
    ),
    path("graphql", graphql_view, name="graphql"),
    path("hooks/<str:uid>", webhook, name="webhook"),
    path("hooks/git/<str:uid>", push_webhook, name="git-webhook"),
    path("admin/", admin.site.urls),
    path("", include("portal.urls")),
]


def _not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Unknown paths under /api/ answer in problem+json like every API error."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {
                "type": "urn:orchestrator:problem:not-found",
                "title": "Not Found",
                "status": 404,
                "detail": f"no API endpoint at {request.path}",
            },
            status=404,
            content_type="application/problem+json",
        )
    return page_not_found(request, exception)


handler404 = _not_found
