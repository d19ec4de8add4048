"""REST endpoints of git sources (docs/gitops.md), by name: every member reads them,
editors create, change and delete them (and rotate their webhook secret), operators sync
them. Each translates HTTP to a gitsync.services call."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from gitsync.api.serializers import (
    GitSourceCreatedSerializer,
    GitSourceSerializer,
    GitSourceUpdateSerializer,
    SyncResultSerializer,
    SyncSerializer,
)
from gitsync.models import GitSource
from gitsync.selectors import get_source
from gitsync.services import (
    create_source,
    delete_source,
    rotate_webhook_secret,
    sync_source,
    update_source,
)
from orchestrator.api.base import StrictSerializer, TenantScopedViewSet

__all__ = ["GitSourceViewSet"]


class GitSourceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """The tenant's git sources. Viewers read them; editors create them (the answer holds
    the webhook secret, shown this once), change them (PATCH), delete them and rotate
    their webhook secret; operators sync one now."""

    model = GitSource
    serializer_class = GitSourceSerializer
    lookup_field = "name"
    lookup_url_kwarg = "git_source"
    permissions = {
        "list": "git_source.view",
        "retrieve": "git_source.view",
        "create": "git_source.manage",
        "partial_update": "git_source.manage",
        "destroy": "git_source.manage",
        "rotate_secret": "git_source.manage",
        "sync": "git_source.sync",
    }

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("tenant").order_by("name")

    def _valid(self, serializer_class: type[StrictSerializer], **kwargs: Any) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def _with_secret(self, source: GitSource, secret: str) -> dict[str, Any]:
        return {**GitSourceSerializer(source).data, "webhook_secret": secret}

    @extend_schema(responses={201: GitSourceCreatedSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A new source (editors): 201 with its webhook secret, shown this once."""
        data = self._valid(GitSourceSerializer)
        source, secret = create_source(actor=self.actor, tenant=self.tenant, **data)
        return Response(self._with_secret(source, secret), status=status.HTTP_201_CREATED)

    @extend_schema(request=GitSourceUpdateSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Change what is synced or how (editors); the name stays."""
        data = self._valid(GitSourceUpdateSerializer, partial=True)
        source = update_source(actor=self.actor, source=get_source(kwargs["git_source"]), **data)
        return Response(self.get_serializer(source).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Delete the source (editors); its workflows stay as they are."""
        delete_source(actor=self.actor, source=get_source(kwargs["git_source"]))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=GitSourceCreatedSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A new webhook secret (editors), shown this once; the old one stops at once."""
        source, secret = rotate_webhook_secret(
            actor=self.actor, source=get_source(kwargs["git_source"])
        )
        return Response(self._with_secret(source, secret))

    @extend_schema(request=SyncSerializer, responses=SyncResultSerializer)
    @action(detail=True, methods=["post"])
    def sync(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Sync now (operators): clone the branch and apply its spec files, and answer
        what happened; a failed sync (git's error, invalid files) is a 200 with status
        failed, as the source records it. A commit synced already is skipped unless
        `force`."""
        data = self._valid(SyncSerializer)
        result = sync_source(
            actor=self.actor, source=get_source(kwargs["git_source"]), force=data["force"]
        )
        return Response(SyncResultSerializer(result.as_dict()).data)
