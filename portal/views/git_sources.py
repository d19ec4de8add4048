"""Git sources in the portal (docs/gitops.md, "Pull mode"): the tenant's sources with how
their newest sync went, which every member may open, a source's page with its last
commit, error and changes, "Sync now" for operators and above, and for editors and above
the forms that create a source, change it, delete it and rotate its webhook secret. Each
calls the gitsync service REST and GraphQL call, so its rules, its refusals and its audit
are theirs.

The forms of one source live under its path (`git-sources/<name>/sync/`, `edit/`,
`delete/`, `rotate-secret/`); a new source has a path of its own (`git-source-editor/`),
so no source's name collides with it. The webhook secret is shown once, on the page that
answers the POST that made it (creation or rotation): never stored, never redirected to,
never cached."""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from connections.selectors import all_secrets
from gitsync.models import GitSource
from gitsync.selectors import get_source, sources
from gitsync.services import (
    INTERVAL_MAX,
    UNSET,
    SyncResult,
    create_source,
    delete_source,
    rotate_webhook_secret,
    sync_source,
    update_source,
    webhook_url,
)
from orchestrator.integers import ascii_int
from portal.actions import FieldErrors, TenantForm, by_field
from portal.pages import TenantPage

__all__ = [
    "GitSourceCreate",
    "GitSourceDelete",
    "GitSourceEdit",
    "GitSourcePage",
    "GitSourceRotateSecret",
    "GitSourceSync",
    "GitSourcesPage",
    "sync_message",
    "typed_values",
    "urlpatterns",
]

# The fields a form shows, by the names the service reports its errors at.
FIELDS = ("name", "url", "branch", "path", "deploy_key", "prune", "interval_seconds")
TEXT_FIELDS = ("url", "branch", "path", "deploy_key")


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


# --- changing sources ------------------------------------------------------------------------


def typed_values(post: Any) -> dict[str, Any]:
    """What the form posted, as the service takes it: text stripped, the checkbox as a
    bool, the interval as a number (empty: 0, no schedule). An interval that is no number
    goes as typed, so the service refuses it with its own words at `interval_seconds`."""
    every = str(post.get("interval_seconds", "")).strip()
    number = ascii_int(every) if every else 0
    values: dict[str, Any] = {k: str(post[k]).strip() for k in TEXT_FIELDS if k in post}
    return values | {
        "prune": "prune" in post,
        "interval_seconds": number if number is not None else every,
    }


class GitSourceForm(TenantForm):
    """A form about git sources (editors and above): errors shown at the form's fields by
    the path the service reports, the rest above the form."""

    permission = "git_source.manage"
    nav = "git-sources"

    def again(self, errors: FieldErrors, status: int, **kwargs: Any) -> HttpResponse:
        return super().again(by_field(errors, FIELDS), status, **kwargs)

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        source = get_source(kwargs["name"]) if "name" in kwargs else None
        return {
            "source": source,
            "values": values or {},
            "errors": errors,
            "form_errors": errors.get("", []),
        }

    def source_url(self, name: str) -> str:
        return reverse("portal:git-source", args=[self.tenant.slug, name])


class SecretShown(GitSourceForm):
    """A form whose success makes a webhook secret: the answer is the page that shows it
    with the webhook URL and how to set the webhook up, this once, instead of a redirect."""

    single_use = True
    made: tuple[GitSource, str] | None = None
    rotated: ClassVar[bool] = False

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        done = super().post(request, *args, **kwargs)
        if self.made is None or not isinstance(done, HttpResponseRedirect):
            return done
        source, secret = self.made
        shown_once = {"secret": secret, "rotated": self.rotated}
        context = self.page_context() | _detail(source) | shown_once
        shown = TemplateResponse(request, "portal/git_sources/secret.html", context)
        shown["Cache-Control"] = "no-store"
        return shown


class SourceFields(GitSourceForm):
    """The fields' form, with the tenant's secrets to choose a deploy key from."""

    template_name = "portal/git_sources/form.html"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        context = super().form_context(values=values, errors=errors, **kwargs)
        source: GitSource | None = context["source"]
        if values is None:
            context["values"] = self.initial(source)
        chosen = str(context["values"].get("deploy_key", ""))
        names = list(all_secrets().order_by("name").values_list("name", flat=True))
        if chosen and chosen not in names:  # kept as stored or typed: the service says why
            names.append(chosen)
        return context | {"secret_names": names, "interval_max": INTERVAL_MAX}

    def initial(self, source: GitSource | None) -> dict[str, Any]:
        if source is None:
            return {"branch": "main", "interval_seconds": 0}
        return {
            "url": source.url,
            "branch": source.branch,
            "path": source.path,
            "deploy_key": source.deploy_key,
            "prune": "on" if source.prune else "",
            "interval_seconds": source.interval_seconds,
        }


class GitSourceCreate(SourceFields, SecretShown):
    """`git-source-editor/`: a new source; the answer shows its webhook secret once."""

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        name = str(self.request.POST.get("name", "")).strip()
        values = typed_values(self.request.POST)
        self.made = create_source(actor=self.actor, tenant=self.tenant, name=name, **values)
        return self.source_url(name), f"Git source {name!r} created: nothing is synced yet."


class GitSourceEdit(SourceFields):
    """`git-sources/<name>/edit/`: what is synced and how (the name stays: versions and
    the audit log name it). A text field or the interval the POST leaves out is kept, as
    the API's PATCH keeps it; prune is a checkbox, so its absence means no."""

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        source = get_source(kwargs["name"])
        values = typed_values(self.request.POST)
        if "interval_seconds" not in self.request.POST:
            values["interval_seconds"] = UNSET
        update_source(actor=self.actor, source=source, **values)
        return self.source_url(source.name), f"Git source {source.name!r} saved."


class GitSourceRotateSecret(SecretShown):
    """GET: what a new secret does to the current one (it stops at once). POST: the page
    that shows the new one, this once."""

    template_name = "portal/git_sources/rotate.html"
    rotated = True

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        self.made = rotate_webhook_secret(actor=self.actor, source=get_source(kwargs["name"]))
        name = self.made[0].name
        return self.source_url(name), f"Git source {name!r} has a new webhook secret."


class GitSourceDelete(GitSourceForm):
    """GET: what deleting the source does (its workflows stay). POST: delete it."""

    template_name = "portal/git_sources/delete.html"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        context = super().form_context(values=values, errors=errors, **kwargs)
        source: GitSource = context["source"]
        kept = [c["workflow"] for c in source.last_changes if c.get("action") != "pruned"]
        return context | {"workflows": kept, "webhook_url": webhook_url(source)}

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        delete_source(actor=self.actor, source=get_source(kwargs["name"]))
        said = f"Git source {kwargs['name']!r} deleted; its workflows stay as they are."
        return reverse("portal:git-sources", args=[self.tenant.slug]), said


urlpatterns = [
    path("git-sources/", GitSourcesPage.as_view(), name="git-sources"),
    path("git-source-editor/", GitSourceCreate.as_view(), name="git-source-new"),
    path("git-sources/<str:name>/", GitSourcePage.as_view(), name="git-source"),
    path("git-sources/<str:name>/sync/", GitSourceSync.as_view(), name="git-source-sync"),
    path("git-sources/<str:name>/edit/", GitSourceEdit.as_view(), name="git-source-edit"),
    path("git-sources/<str:name>/delete/", GitSourceDelete.as_view(), name="git-source-delete"),
    path(
        "git-sources/<str:name>/rotate-secret/",
        GitSourceRotateSecret.as_view(),
        name="git-source-rotate-secret",
    ),
]
