"""Team code packages over GraphQL: the same reads, upload service and policy as REST
(runs/api/packages.py). runs.graphql.schema's Query and Mutation include these fields."""

from __future__ import annotations

import base64
import binascii

import strawberry
import strawberry_django
from strawberry.scalars import JSON
from strawberry.types import Info

from orchestrator.errors import Invalid, NotFound
from orchestrator.graphql.types import LIST_LIMIT_DEFAULT, actor_of, list_limit, tenant_scope_for
from runs.packages import packages_of, upload_package
from workflows.models import CodePackage

__all__ = ["PackageMutation", "PackageQuery", "PackageType", "decode_content"]

# The REST upload's field is `file`; here the file is the argument `contentBase64`.
CONTENT_ARGUMENT = "contentBase64"


@strawberry_django.type(CodePackage)
class PackageType:
    """A package version as uploaded: immutable; workflows pin it by `digest`."""

    id: strawberry.auto
    name: strawberry.auto
    version: strawberry.auto
    digest: strawberry.auto
    filename: strawberry.auto
    size: int
    source_kind: str
    source_digest: strawberry.auto
    requires_python: strawberry.auto
    build_log: strawberry.auto
    created_at: strawberry.auto

    @strawberry_django.field(only=["requirements"], description="Requires-Dist, as declared")  # type: ignore[untyped-decorator]
    def requirements(self, root: CodePackage) -> list[str]:
        return list(root.requirements)

    @strawberry_django.field(
        only=["lock"],
        description="The dependencies locked at upload: `name==version --hash=sha256:...`.",
    )  # type: ignore[untyped-decorator]
    def lock(self, root: CodePackage) -> list[str]:
        return list(root.lock)

    @strawberry_django.field(
        only=["index"], description="The functions a python task can call: {module: [names]}."
    )  # type: ignore[untyped-decorator]
    def index(self, root: CodePackage) -> JSON:
        return root.index  # type: ignore[no-any-return]

    @strawberry_django.field(select_related=["uploaded_by"], only=["uploaded_by__username"])  # type: ignore[untyped-decorator]
    def uploaded_by(self, root: CodePackage) -> str | None:
        return root.uploaded_by.username if root.uploaded_by is not None else None


def decode_content(content_base64: str) -> bytes:
    """The uploaded file's bytes; Invalid at `contentBase64` when it is not base64."""
    try:
        return base64.b64decode(content_base64, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(
            [(CONTENT_ARGUMENT, "not base64: expected the file's bytes in standard base64")]
        ) from None


@strawberry.type
class PackageQuery:
    @strawberry.field(
        description="The tenant's package versions, newest first (name: only that package's)."
    )  # type: ignore[untyped-decorator]
    def packages(
        self,
        info: Info,
        tenant: str,
        name: str | None = None,
        before_id: int | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
    ) -> list[PackageType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "package.view") as scoped:
            qs = packages_of(scoped, name=name).select_related("uploaded_by").order_by("-id")
            if before_id:
                qs = qs.filter(pk__lt=before_id)
            return list(qs[:limit])  # type: ignore[arg-type]

    @strawberry.field(description="Null, with a NOT_FOUND error, when it does not exist.")  # type: ignore[untyped-decorator]
    def package(self, info: Info, tenant: str, id: int) -> PackageType | None:
        with tenant_scope_for(info, tenant, "package.view") as scoped:
            package = packages_of(scoped).select_related("uploaded_by").filter(pk=id).first()
        if package is None:
            raise NotFound(f"no package with id {id}")
        return package  # type: ignore[return-value]


@strawberry.type
class PackageMutation:
    @strawberry.mutation(
        description="Upload a wheel (.whl), an sdist (.tar.gz) or a zip of a source tree: "
        "its dependencies are locked and its functions indexed before it is stored. "
        "The request body is limited as every GraphQL request is (API_MAX_BODY_BYTES); "
        "larger packages go through REST (POST .../packages/, multipart). Errors about "
        "the file are at the path contentBase64."
    )  # type: ignore[untyped-decorator]
    def upload_package(
        self, info: Info, tenant: str, filename: str, content_base64: str
    ) -> PackageType:
        with tenant_scope_for(info, tenant, "package.upload") as scoped:
            data = decode_content(content_base64)
            try:
                package = upload_package(
                    actor=actor_of(info), tenant=scoped, filename=filename, data=data
                )
            except Invalid as exc:
                raise Invalid(
                    [(_argument_path(path), message) for path, message in exc.errors]
                ) from exc
        return package  # type: ignore[return-value]


def _argument_path(path: str) -> str:
    """The service's path of the file (`file`, `file.x`) as this mutation's argument."""
    if path == "file" or path.startswith(("file.", "file[")):
        return CONTENT_ARGUMENT + path[len("file") :]
    return path
