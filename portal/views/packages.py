"""Team code packages in the portal: the tenant's packages by name, one package's versions
(what each locked, what functions it offers, which workflows run it now), and the upload
form. The upload calls runs.packages.upload_package, the service REST, GraphQL and
manage.py call, so its checks, its lock and its audit event are theirs.

Every member sees the packages; only editors and above see (and may post) the form. The
form has its own path (`package-upload/`), so no package name can collide with it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, OuterRef, Subquery
from django.urls import path, reverse
from django.utils import timezone

from orchestrator.errors import Invalid, NotFound
from orchestrator.policy import PERMISSIONS
from portal.actions import FieldErrors, TenantForm
from portal.pages import TenantPage, keyset_page
from runs.packages import packages_of, upload_package
from workflows.models import CodePackage, Workflow

__all__ = [
    "PAGE_SIZE",
    "PackagePage",
    "PackageRow",
    "PackageUploadForm",
    "PackagesPage",
    "VersionRow",
    "WorkflowUse",
    "urlpatterns",
    "workflows_using",
]

PAGE_SIZE = 50
# What a list row and a version row need of a package: never its build log.
SHOWN_FIELDS = (
    "id",
    "name",
    "version",
    "digest",
    "filename",
    "size",
    "source_kind",
    "requires_python",
    "requirements",
    "lock",
    "index",
    "created_at",
    "uploaded_by__username",
)


@dataclass(frozen=True)
class PackageRow:
    """A package in the list: its newest version and how many versions it has."""

    newest: CodePackage
    versions: int


@dataclass(frozen=True)
class WorkflowUse:
    """A workflow whose current version runs a package version in these tasks."""

    workflow: str
    tasks: tuple[str, ...]


@dataclass(frozen=True)
class VersionRow:
    package: CodePackage
    used_by: tuple[WorkflowUse, ...]

    @property
    def functions(self) -> int:
        return sum(len(names) for names in self.package.index.values())


def workflows_using(name: str) -> dict[str, list[WorkflowUse]]:
    """Package `name`'s digests -> the live workflows whose current version pins it, read
    from each current version's `code` ({task: {"package", "version", "digest"}}) in
    Python: the task ids are keys, which JSON containment cannot match on every database
    this runs on. Only (name, code) pairs are read, never the specs."""
    rows = Workflow.objects.filter(deleted_at__isnull=True, current_version__isnull=False)
    found: dict[str, list[WorkflowUse]] = defaultdict(list)
    for workflow, code in rows.order_by("name").values_list("name", "current_version__code"):
        tasks: dict[str, list[str]] = defaultdict(list)
        for task, ref in (code or {}).items():
            if isinstance(ref, dict) and ref.get("package") == name:
                tasks[str(ref.get("digest", ""))].append(task)
        for digest, ids in tasks.items():
            found[digest].append(WorkflowUse(workflow, tuple(sorted(ids))))
    return found


def _upload_form(page: TenantPage) -> dict[str, Any]:
    """What the upload form (portal/packages_form.html) needs, for those who may post it."""
    return {
        "upload_url": reverse("portal:package-upload", args=[page.tenant.slug]),
        "max_bytes": settings.PACKAGE_MAX_BYTES,
    }


class PackagesPage(TenantPage):
    """The tenant's packages by name, 50 a page, searchable by name: each with its newest
    version, who uploaded that and when, and how many versions there are."""

    permission = "package.view"
    template_name = "portal/packages.html"
    nav = "packages"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        search = self.request.GET.get("q", "").strip()
        every = packages_of(self.tenant)
        if search:
            every = every.filter(name__icontains=search)
        newest = (
            CodePackage.objects.filter(tenant=OuterRef("tenant"), name=OuterRef("name"))
            .order_by("-created_at", "-id")
            .values("pk")[:1]
        )
        page = keyset_page(
            every.filter(pk=Subquery(newest)).select_related("uploaded_by").only(*SHOWN_FIELDS),
            key="name",
            descending=False,
            cursor=self.request.GET.get("cursor") or None,
            size=PAGE_SIZE,
        )
        names = [p.name for p in page.items]
        counts = dict(
            packages_of(self.tenant)
            .filter(name__in=names)
            .order_by()
            .values("name")
            .annotate(n=Count("id"))
            .values_list("name", "n")
        )
        return {
            "title": "Packages",
            "rows": [PackageRow(p, counts.get(p.name, 1)) for p in page.items],
            "page": page,
            "q": search,
        } | (_upload_form(self) if self.role.includes(PERMISSIONS["package.upload"]) else {})


class PackagePage(TenantPage):
    """One package's versions, newest first: each with its digest, size, where it came
    from, the dependencies locked at upload, the functions it offers and the workflows
    whose current version runs it."""

    permission = "package.view"
    template_name = "portal/packages_detail.html"
    nav = "packages"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        versions = list(
            packages_of(self.tenant, name=kwargs["name"])
            .select_related("uploaded_by")
            .only(*SHOWN_FIELDS)
            .order_by("-created_at", "-id")
        )
        if not versions:
            raise NotFound(f"no package named {kwargs['name']!r}")
        used = workflows_using(versions[0].name)
        rows = [VersionRow(p, tuple(used.get(p.digest, ()))) for p in versions]
        return {
            "title": f"Package {versions[0].name}",
            "name": versions[0].name,
            "rows": rows,
        } | (_upload_form(self) if self.role.includes(PERMISSIONS["package.upload"]) else {})


class PackageUploadForm(TenantForm):
    """Editors: upload a wheel, an sdist or a zip of a source tree; then the package's
    page. An error about the file is shown at the file field (the API's path `file`)."""

    permission = "package.upload"
    template_name = "portal/packages_upload.html"
    nav = "packages"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        general = [
            f"{where}: {message}" if where else message
            for where, found in errors.items()
            if where != "file"
            for message in found
        ]
        return {"errors": errors, "form_errors": general} | _upload_form(self)

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        upload = self.request.FILES.get("file")
        if upload is None:
            raise Invalid(
                [("file", "choose a file: a wheel (.whl), an sdist (.tar.gz) or a .zip of a tree")]
            )
        limit = settings.PACKAGE_MAX_BYTES
        if upload.size is not None and upload.size > limit:
            raise Invalid(
                [("file", f"{upload.name} is {upload.size} bytes; at most {limit} are accepted")]
            )
        started = timezone.now()
        package = upload_package(
            actor=self.actor,
            tenant=self.tenant,
            filename=upload.name or "",
            data=upload.read(),
        )
        url = reverse("portal:package", args=[self.tenant.slug, package.name])
        if package.created_at < started:  # the same file again: the package stored then
            return url, f"{package.name} {package.version} was uploaded before: nothing changed."
        return url, f"Uploaded {package.name} {package.version}."


urlpatterns = [
    path("packages/", PackagesPage.as_view(), name="packages"),
    path("packages/<str:name>/", PackagePage.as_view(), name="package"),
    path("package-upload/", PackageUploadForm.as_view(), name="package-upload"),
]
