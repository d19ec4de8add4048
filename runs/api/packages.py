"""REST endpoints of team code packages (docs/team-code.md): upload a wheel, an sdist or a
source tree (multipart/form-data, field `file`), list and read what was uploaded, and
download a stored wheel to reproduce a task's environment elsewhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrator.api.base import StrictSerializer, TenantScopedViewSet
from orchestrator.errors import NotFound
from orchestrator.integers import ascii_int
from runs.packages import packages_of, upload_package
from runs.tasktypes.package_store import StoredWheelError, package_wheel
from workflows.models import CodePackage

__all__ = [
    "PackageSerializer",
    "PackageUploadSerializer",
    "PackageViewSet",
    "WheelRenderer",
    "get_package",
]

# What a multipart body may carry beyond the file itself (its part headers, the boundary).
MULTIPART_SLACK = 65_536


def get_package(package_id: int | str) -> CodePackage:
    """The package by id in the current tenant scope; NotFound when missing or another
    tenant's (the scoped manager cannot see those)."""
    number = ascii_int(str(package_id))
    package = (
        CodePackage.objects.select_related("uploaded_by").filter(pk=number).first()
        if number is not None
        else None
    )
    if package is None:
        raise NotFound(f"no package with id {package_id}")
    return package


class PackageSerializer(serializers.Serializer[CodePackage]):
    """A package as uploaded: what it is, what it needs and what it offers. `build_log`
    only in a single package's answer: it can be long, and lists do not need it."""

    optional_output_fields = ("build_log",)

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True, help_text="normalised (PEP 503)")
    version = serializers.CharField(read_only=True, help_text="normalised (PEP 440)")
    digest = serializers.CharField(
        read_only=True, help_text="sha256 of the stored wheel (hex): what workflows pin"
    )
    filename = serializers.CharField(read_only=True, help_text="the stored wheel's file name")
    size = serializers.IntegerField(read_only=True, help_text="the stored wheel's bytes")
    source_kind = serializers.CharField(
        read_only=True, help_text='what was uploaded: "wheel", "sdist" or "tree"'
    )
    source_digest = serializers.CharField(
        read_only=True, help_text="sha256 of the uploaded file (hex)"
    )
    requires_python = serializers.CharField(read_only=True)
    requirements = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Requires-Dist, as declared"
    )
    lock = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="the dependencies locked at upload: `name==version --hash=sha256:...`",
    )
    index = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        read_only=True,
        help_text="the functions a python task can call: {module: [function names]}",
    )
    uploaded_by = serializers.CharField(
        source="uploaded_by.username", read_only=True, allow_null=True
    )
    created_at = serializers.DateTimeField(read_only=True)
    build_log = serializers.CharField(
        read_only=True, help_text="the locking and indexing output (one package's answer only)"
    )

    def to_representation(self, instance: CodePackage) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        if not self.context.get("with_build_log"):
            data.pop("build_log", None)
        return data


class PackageUploadSerializer(StrictSerializer):
    """The upload's form: one file, its kind told by its name."""

    file = serializers.FileField(
        allow_empty_file=False,
        help_text="a wheel (.whl), an sdist (.tar.gz) or a zip of a source tree with a "
        "pyproject.toml; its file name says which",
    )


class WheelRenderer(BaseRenderer):
    """Lets a download be asked for with `Accept: application/octet-stream`; the view
    answers the file itself, so only errors come here, and they stay problem+json."""

    media_type = "application/octet-stream"
    format = "whl"
    charset = None

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if isinstance(data, bytes):
            return data
        return JSONRenderer().render(data, accepted_media_type, renderer_context)


class PackageTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"


class StoredWheelUnreadable(exceptions.APIException):
    """The package's row is there but its wheel is not (or no longer matches its digest):
    the storage lost it, which no request of the caller's can mend."""

    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    default_code = "stored_wheel_unreadable"


def _refuse_oversized(request: Request) -> None:
    """413 before Django spools a body far past PACKAGE_MAX_BYTES to disk."""
    declared = ascii_int(request.META.get("CONTENT_LENGTH") or "")
    limit = settings.PACKAGE_MAX_BYTES
    if declared is not None and declared > limit + MULTIPART_SLACK:
        raise PackageTooLarge(
            f"the request body ({declared} bytes) is larger than a package may be "
            f"({limit} bytes, PACKAGE_MAX_BYTES)"
        )


@extend_schema_view(
    list=extend_schema(
        description="The tenant's package versions, newest first: `?name=` for one "
        "package's (in any spelling PEP 503 folds together).",
        parameters=[OpenApiParameter("name", str, description="only this package's versions")],
    )
)
class PackageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """The tenant's code packages, newest first. POST uploads one (editors and above) as
    multipart/form-data with the field `file`: its dependencies are locked and its
    functions indexed before it is stored (201); the same file again answers the package
    stored then (200), another file for a version already uploaded is 409. Packages are
    immutable: there is no update and no delete (405); a new release is a new version, and
    workflows pin versions by digest, so a version that runs somewhere never changes under
    it."""

    model = CodePackage
    serializer_class = PackageSerializer
    lookup_url_kwarg = "package_id"
    lookup_value_regex = "[0-9]+"
    parser_classes = [MultiPartParser, FormParser]
    permissions = {
        "list": "package.view",
        "retrieve": "package.view",
        "create": "package.upload",
        "download": "package.view",
    }

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        name = self.request.query_params.get("name") or None
        chosen = packages_of(self.tenant, name=name).filter(pk__in=queryset.values("pk"))
        return chosen.select_related("uploaded_by")

    @extend_schema(responses=PackageSerializer)
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """One package version, with its `build_log` (how it was locked and indexed)."""
        context = {**self.get_serializer_context(), "with_build_log": True}
        return Response(PackageSerializer(get_package(kwargs["package_id"]), context=context).data)

    @extend_schema(
        request={"multipart/form-data": PackageUploadSerializer},
        responses={201: PackageSerializer, 200: PackageSerializer},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Upload a wheel, an sdist or a .zip of a source tree (editors and above) as
        multipart/form-data, field `file`. Its dependencies are locked and its functions
        indexed before it is stored: 201 with the package. The same file again answers the
        package stored then (200, nothing changes); another file for a name and version
        already uploaded is 409 (packages are immutable); a file that is not an installable,
        importable package is 400 at `file`, with the reason."""
        _refuse_oversized(request)
        body = PackageUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        upload = body.validated_data["file"]
        started = timezone.now()
        package = upload_package(
            actor=self.actor, tenant=self.tenant, filename=upload.name or "", data=upload.read()
        )
        # The same file again answers the package stored then: nothing was created.
        created = package.created_at >= started
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(self.get_serializer(package).data, status=code)

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="the stored wheel, as workers install it"
            )
        },
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, WheelRenderer])
    def download(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        """The stored wheel (its sha256 is the package's `digest`): install it with its
        `lock` to rebuild the environment a task of it runs in."""
        package = get_package(kwargs["package_id"])
        try:
            wheel = package_wheel(package)
        except StoredWheelError as exc:
            raise StoredWheelUnreadable(str(exc)) from exc
        response = HttpResponse(wheel, content_type="application/octet-stream")
        response["Content-Disposition"] = f'attachment; filename="{package.filename}"'
        return response
