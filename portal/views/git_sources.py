"""Git sources in the portal (docs/gitops.md, "Pull mode"): the tenant's sources with how
their newest sync went, which every member may open, a source's page with its last
commit, error and changes, and "Sync now" for operators and above. Syncing calls the
gitsync service REST and GraphQL call, so its rules, its record and its audit are theirs.

The sync has its own path (`git-sources/<name>/sync/`): its POST needs git_source.sync,
while the page itself needs only git_source.view."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.http import HttpResponse
from django.urls import path, reverse

from gitsync.models import GitSource
from gitsync.selectors import get_source, sources
from gitsync.services import SyncResult, sync_source, webhook_url
from portal.actions import FieldErrors, TenantForm
from portal.pages import TenantPage

__all__ = ["GitSourcePage", "GitSourceSync", "GitSourcesPage", "sync_message", "urlpatterns"]


class GitSourcesPage(TenantPage):
    """The tenant's git sources by name, each with its branch and newest sync."""

    permission = "git_source.view"
    template_name = "portal/git_sources/list.html"
    nav = "git-sources"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        return {"sources": list(sources())}


def _detail(source: GitSource) -> dict[str, Any]:
    return {"source": source, "webhook_url": webhook_url(source)}


class GitSourcePage(TenantPage):
    """One source: where it syncs from, its webhook URL, and its newest sync."""

    permission = "git_source.view"
    template_name = "portal/git_sources/detail.html"
    nav = "git-sources"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        return _detail(get_source(kwargs["name"]))


def sync_message(result: SyncResult) -> str:
    """What the page says after a sync: the commit and what changed, or why it failed."""
    commit = (result.commit or "")[:12]
    if result.status == "skipped":
        return f"Already at {commit}, synced without error: nothing to do."
    if result.status == "failed":
        return f"Sync of {result.source.name!r} failed: {result.error.splitlines()[0]}"
    counts = Counter(c.action for c in (result.plan.changes if result.plan else []))
    said = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "no workflows"
    return f"Synced {commit}: {said}."


class GitSourceSync(TenantForm):
    """Operators: sync the source now (GET shows its page with the button)."""

    permission = "git_source.sync"
    template_name = "portal/git_sources/detail.html"
    nav = "git-sources"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any] | HttpResponse:
        shown = [m for said in errors.values() for m in said]
        return _detail(get_source(kwargs["name"])) | {"form_errors": shown}

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        result = sync_source(actor=self.actor, source=get_source(kwargs["name"]))
        url = reverse("portal:git-source", args=[self.tenant.slug, result.source.name])
        return url, sync_message(result)


urlpatterns = [
    path("git-sources/", GitSourcesPage.as_view(), name="git-sources"),
    path("git-sources/<str:name>/", GitSourcePage.as_view(), name="git-source"),
    path("git-sources/<str:name>/sync/", GitSourceSync.as_view(), name="git-source-sync"),
]
