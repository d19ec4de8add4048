"""The portal's pages: sign-in and account pages at the root, a tenant's pages under
/t/<tenant>/ (mounted last by orchestrator.urls, after the API, GraphQL and the admin)."""

from __future__ import annotations

from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from portal.views import (
    accounts,
    alerts,
    backfill_pages,
    connections,
    datasets,
    editing,
    events,
    git_sources,
    history,
    operate,
    packages,
    pools,
    runs,
    sharing,
    team,
    webhooks,
    workflows,
)

__all__ = ["app_name", "urlpatterns"]

app_name = "portal"

urlpatterns = [
    *accounts.urlpatterns,
    # Browsers ask for /favicon.ico whatever the page says.
    path("favicon.ico", RedirectView.as_view(url=static("portal/favicon.svg"))),
    path("t/<str:tenant>/", RedirectView.as_view(pattern_name="portal:workflows"), name="tenant"),
    path("t/<str:tenant>/", include(workflows.urlpatterns)),
    path("t/<str:tenant>/", include(runs.urlpatterns)),
    path("t/<str:tenant>/", include(history.urlpatterns)),
    path("t/<str:tenant>/", include(operate.urlpatterns)),
    path("t/<str:tenant>/", include(backfill_pages.urlpatterns)),
    path("t/<str:tenant>/", include(editing.urlpatterns)),
    path("t/<str:tenant>/", include(connections.urlpatterns)),
    path("t/<str:tenant>/", include(packages.urlpatterns)),
    path("t/<str:tenant>/", include(pools.urlpatterns)),
    path("t/<str:tenant>/", include(team.urlpatterns)),
    path("t/<str:tenant>/", include(alerts.urlpatterns)),
    path("t/<str:tenant>/", include(datasets.urlpatterns)),
    path("t/<str:tenant>/", include(webhooks.urlpatterns)),
    path("t/<str:tenant>/", include(events.urlpatterns)),
    path("t/<str:tenant>/", include(sharing.urlpatterns)),
    path("t/<str:tenant>/", include(git_sources.urlpatterns)),
]
