from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from runs.api import packages, pools, views

router = SimpleRouter(trailing_slash=True)
router.register("runs", views.RunViewSet, basename="run")
router.register("backfills", views.BackfillViewSet, basename="backfill")
router.register("events", views.EventViewSet, basename="event")
router.register("packages", packages.PackageViewSet, basename="package")
router.register("pools", pools.PoolViewSet, basename="pool")

workflow_router = SimpleRouter(trailing_slash=True)
workflow_router.register("runs", views.WorkflowRunViewSet, basename="workflow-run")
workflow_router.register("backfills", views.WorkflowBackfillViewSet, basename="workflow-backfill")

task_router = SimpleRouter(trailing_slash=True)
task_router.register("tasks", views.TaskInstanceViewSet, basename="task-instance")

# Mounted under /api/v1/tenants/<tenant>/ by the root urls.
urlpatterns = [
    path("", include(router.urls)),
    path("workflows/<str:workflow>/", include(workflow_router.urls)),
    path("runs/<int:run_id>/", include(task_router.urls)),
]
