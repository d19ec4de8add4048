"""Git sources over GraphQL (docs/gitops.md): the same reads, services and policy as REST
(gitsync/api/views.py), inputs checked by the REST serializers."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from gitsync.api.serializers import (
    GitSourceSerializer,
    GitSourceUpdateSerializer,
)
from gitsync.models import GitSource
from gitsync.selectors import get_source, sources
from gitsync.services import (
    SyncResult,
    create_source,
    delete_source,
    rotate_webhook_secret,
    sync_source,
    update_source,
    webhook_url,
)
from orchestrator.graphql.errors import validate
from orchestrator.graphql.types import LIST_LIMIT_MAX, actor_of, list_limit, tenant_scope_for
from workflows.graphql.schema import PlannedChangeType

__all__ = ["Mutation", "Query"]


@strawberry.type(description="A git repository's branch whose spec files the tenant follows.")
class GitSourceType:
    id: int
    name: str
    url: str
    branch: str
    path: str = strawberry.field(description="the folder of spec files; empty: the whole tree")
    deploy_key: str = strawberry.field(description="the name of the secret with an SSH key")
    prune: bool
    interval_seconds: int = strawberry.field(description="0: no schedule")
    webhook_url: str
    webhook_secret_prefix: str
    last_commit: str
    last_synced_at: dt.datetime | None
    last_status: str = strawberry.field(description="ok, failed, or empty before a sync")
    last_error: str
    last_changes: JSON
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, source: GitSource) -> GitSourceType:
        return cls(
            id=source.pk,
            name=source.name,
            url=source.url,
            branch=source.branch,
            path=source.path,
            deploy_key=source.deploy_key,
            prune=source.prune,
            interval_seconds=source.interval_seconds,
            webhook_url=webhook_url(source),
            webhook_secret_prefix=source.webhook_secret_prefix,
            last_commit=source.last_commit,
            last_synced_at=source.last_synced_at,
            last_status=source.last_status,
            last_error=source.last_error,
            last_changes=source.last_changes,
            created_at=source.created_at,
            updated_at=source.updated_at,
        )


@strawberry.type(description="A source with its webhook secret: shown this once.")
class CreatedGitSource:
    git_source: GitSourceType
    webhook_secret: str


@strawberry.type
class FileErrorType:
    file: str
    path: str
    message: str


@strawberry.type(description="What a sync did: status ok, failed or skipped.")
class SyncResultType:
    source: str
    status: str
    commit: str | None
    changes: list[PlannedChangeType]
    error: str
    errors: list[FileErrorType]

    @classmethod
    def of(cls, result: SyncResult) -> SyncResultType:
        changes = result.plan.changes if result.plan is not None else []
        return cls(
            source=result.source.name,
            status=result.status,
            commit=result.commit,
            changes=[PlannedChangeType(**dataclasses.asdict(c)) for c in changes],
            error=result.error,
            errors=[FileErrorType(**e) for e in result.errors],
        )


@strawberry.type
class Query:
    @strawberry.field(description="The tenant's git sources by name.")  # type: ignore[untyped-decorator]
    def git_sources(
        self, info: Info, tenant: str, limit: int = LIST_LIMIT_MAX
    ) -> list[GitSourceType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "git_source.view"):
            return [GitSourceType.of(s) for s in sources()[:limit]]

    @strawberry.field(description="Null, with a NOT_FOUND error, when it does not exist.")  # type: ignore[untyped-decorator]
    def git_source(self, info: Info, tenant: str, name: str) -> GitSourceType | None:
        with tenant_scope_for(info, tenant, "git_source.view"):
            return GitSourceType.of(get_source(name))


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="A new git source (editors), with its webhook secret shown this once."
    )  # type: ignore[untyped-decorator]
    def create_git_source(
        self,
        info: Info,
        tenant: str,
        name: str,
        url: str,
        branch: str | None = None,
        path: str | None = None,
        deploy_key: str | None = None,
        prune: bool | None = None,
        interval_seconds: int | None = None,
    ) -> CreatedGitSource:
        with tenant_scope_for(info, tenant, "git_source.manage") as t:
            given = {
                "name": name,
                "url": url,
                "branch": branch,
                "path": path,
                "deploy_key": deploy_key,
                "prune": prune,
                "interval_seconds": interval_seconds,
            }
            data = validate(GitSourceSerializer, given)
            source, secret = create_source(actor=actor_of(info), tenant=t, **data)
            return CreatedGitSource(git_source=GitSourceType.of(source), webhook_secret=secret)

    @strawberry.mutation(description="Change a git source (editors); omitted: kept.")  # type: ignore[untyped-decorator]
    def update_git_source(
        self,
        info: Info,
        tenant: str,
        name: str,
        url: str | None = None,
        branch: str | None = None,
        path: str | None = None,
        deploy_key: str | None = None,
        prune: bool | None = None,
        interval_seconds: int | None = None,
    ) -> GitSourceType:
        with tenant_scope_for(info, tenant, "git_source.manage"):
            given: dict[str, Any] = {
                "url": url,
                "branch": branch,
                "path": path,
                "deploy_key": deploy_key,
                "prune": prune,
                "interval_seconds": interval_seconds,
            }
            data = validate(GitSourceUpdateSerializer, given, partial=True)
            source = update_source(actor=actor_of(info), source=get_source(name), **data)
            return GitSourceType.of(source)

    @strawberry.mutation(description="Delete a git source (editors); its workflows stay.")  # type: ignore[untyped-decorator]
    def delete_git_source(self, info: Info, tenant: str, name: str) -> bool:
        with tenant_scope_for(info, tenant, "git_source.manage"):
            delete_source(actor=actor_of(info), source=get_source(name))
        return True

    @strawberry.mutation(
        description="A new webhook secret (editors), shown this once; the old one stops."
    )  # type: ignore[untyped-decorator]
    def rotate_git_source_secret(self, info: Info, tenant: str, name: str) -> CreatedGitSource:
        with tenant_scope_for(info, tenant, "git_source.manage"):
            source, secret = rotate_webhook_secret(actor=actor_of(info), source=get_source(name))
            return CreatedGitSource(git_source=GitSourceType.of(source), webhook_secret=secret)

    @strawberry.mutation(
        description="Sync now (operators): clone the branch and apply its spec files; a "
        "commit synced already without error is skipped unless force."
    )  # type: ignore[untyped-decorator]
    def sync_git_source(
        self, info: Info, tenant: str, name: str, force: bool = False
    ) -> SyncResultType:
        with tenant_scope_for(info, tenant, "git_source.sync"):
            result = sync_source(actor=actor_of(info), source=get_source(name), force=force)
            return SyncResultType.of(result)
