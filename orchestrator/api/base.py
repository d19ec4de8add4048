"""The bases every REST endpoint builds on: tenant resolution and authorisation once, in
`initial`; querysets that subclasses can only narrow; serializers that refuse unknown
fields."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrator.actors import Actor
from orchestrator.api.throttling import throttle_tenant_request
from orchestrator.context import tenant_scope
from orchestrator.errors import NotFound
from orchestrator.models import ApiToken, Role, Tenant
from orchestrator.selectors import authorized_tenant

__all__ = ["HTTP_METHOD_NAMES", "StrictSerializer", "TenantScopedViewSet", "actor_from_request"]

# The methods an API view may answer; any other (OPTIONS, TRACE, ...) is a 405 whose Allow
# header lists the ones the path maps. OPTIONS is left out on purpose: DRF's metadata
# answer describes serializers by action and needs a permission per action.
HTTP_METHOD_NAMES = ["get", "post", "put", "patch", "delete", "head"]


def actor_from_request(request: Request, source: str = "api") -> Actor:
    token = request.auth if isinstance(request.auth, ApiToken) else None
    return Actor(
        user=request.user,
        source=source,
        token=token,
        request_id=getattr(request, "request_id", None),
    )


class StrictSerializer(serializers.Serializer[Any]):
    """Rejects fields it does not know, naming the ones it accepts."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                accepted = ", ".join(n for n, f in self.fields.items() if not f.read_only)
                raise serializers.ValidationError(
                    {name: [f"unknown field; accepted: {accepted}"] for name in unknown}
                )
            # What is not a string where a text field expects one (DRF would store 5 as "5").
            not_text: dict[Any, Any] = {
                name: [f"expected a string, not {_json_type(data[name])}"]
                for name, field in self.fields.items()
                if isinstance(field, serializers.CharField)
                and not field.read_only
                and name in data
                and data[name] is not None
                and not isinstance(data[name], str)
            }
            if not_text:  # with the other fields' errors: every bad field at once
                try:
                    super().to_internal_value(data)
                except serializers.ValidationError as others:
                    if isinstance(others.detail, Mapping):
                        not_text = {**others.detail, **not_text}
                raise serializers.ValidationError(not_text)
        return super().to_internal_value(data)


def _json_type(value: Any) -> str:
    """What a JSON value is called: "a number", "a boolean", "an object", "a list"."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


TENANT_PARAMETER = OpenApiParameter(
    "tenant", OpenApiTypes.STR, OpenApiParameter.PATH, description="Tenant slug"
)


@extend_schema(parameters=[TENANT_PARAMETER])
class TenantScopedViewSet(viewsets.GenericViewSet[Any]):
    """Resolves `{tenant}` from the URL, authorises the action with the policy, and scopes
    every tenant-owned queryset to that tenant for the rest of the request.

    Subclasses set `permissions` (view action -> policy permission) and `model`, and narrow
    the queryset in `safely_get_queryset`; overriding `get_queryset` is refused."""

    permissions: ClassVar[dict[str, str]] = {}
    model: ClassVar[type[models.Model]]
    lookup_value_regex = "[^/]+"
    http_method_names = HTTP_METHOD_NAMES

    actor: Actor
    tenant: Tenant
    role: Role
    _scope: AbstractContextManager[Any] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise ImproperlyConfigured(f"{cls.__name__}: override safely_get_queryset instead")

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.method is None or request.method.lower() not in self.action_map:
            # HEAD is mapped wherever GET is; OPTIONS, TRACE and the like never are.
            raise exceptions.MethodNotAllowed(request.method or "")
        permission = self.permissions.get(self.action or "")
        if permission is None:
            raise ImproperlyConfigured(f"{type(self).__name__}: no permission for {self.action}")
        self.actor = actor_from_request(request)
        self.tenant, self.role = authorized_tenant(self.actor, kwargs["tenant"], permission)
        throttle_tenant_request(self, request, self.tenant)  # only once authorised
        self._scope = tenant_scope([self.tenant])
        self._scope.__enter__()

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        self._leave_scope()
        return super().finalize_response(request, response, *args, **kwargs)

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # An unhandled error skips finalize_response: leave the scope anyway, or the
        # thread's next request would start inside this tenant instead of failing closed.
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            self._leave_scope()

    def _leave_scope(self) -> None:
        if self._scope is not None:
            self._scope.__exit__(None, None, None)
            self._scope = None

    def get_queryset(self) -> models.QuerySet[Any]:
        return self.safely_get_queryset(self.model.objects.all())  # type: ignore[attr-defined]

    def get_object(self) -> Any:
        """The object the URL names; a 404 names it as the services' errors do ("pool
        'x' not found"), not as DRF's lookup does ("No Pool matches the given query.")."""
        try:
            return super().get_object()
        except Http404:
            named = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field, "")
            kind = self.model._meta.verbose_name
            raise NotFound(f"{kind} {named!r} not found") from None

    def safely_get_queryset(self, queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
        return queryset
