"""REST endpoints of pools (docs/pools.md), by name: every member reads them with their
usage, editors create, change and delete them. Each translates HTTP to a runs.pools call."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrator.api.base import StrictSerializer, TenantScopedViewSet
from runs.models import Pool
from runs.pools import (
    DESCRIPTION_MAX,
    POOL_NAMES,
    SLOTS_ACCEPTED,
    SLOTS_MAX,
    create_pool,
    delete_pool,
    field_errors,
    get_pool,
    update_pool,
    with_usage,
)

__all__ = ["PoolSerializer", "PoolUpdateSerializer", "PoolViewSet"]


def _check(**field: Any) -> None:
    """The service's error for the one field given, if it refuses its value."""
    errors = field_errors(**field)
    if errors:
        raise serializers.ValidationError(errors[0][1])


def _accepting(accepted: str) -> dict[str, Any]:
    """DRF's messages for a field ("A valid integer is required.") saying what it takes."""
    return {
        key: f"{text}; accepted: {accepted}"
        for key, text in {
            "required": "required",
            "null": "may not be null",
            "blank": "may not be blank",
            "invalid": "not valid",
            "min_value": "too small",
            "max_value": "too large",
            "max_length": "too long",
            "max_string_length": "too large",
        }.items()
    }


class PoolSerializer(StrictSerializer):
    """A pool and what its tasks take of it now."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(
        max_length=100,
        help_text="lowercase letters, digits, - and _, at most 63 characters; fixed once "
        "created (tasks name it as `pool`)",
        error_messages=_accepting(POOL_NAMES),
    )
    slots = serializers.IntegerField(
        min_value=0,
        max_value=SLOTS_MAX,
        help_text="slots its tasks share while queued or running; 0 holds them all (a pause)",
        error_messages=_accepting(SLOTS_ACCEPTED),
    )
    description = serializers.CharField(
        max_length=DESCRIPTION_MAX, required=False, allow_blank=True
    )
    used_slots = serializers.IntegerField(
        read_only=True, help_text="the pool_slots of its queued and running task instances"
    )
    running = serializers.IntegerField(read_only=True, help_text="its running task instances")
    queued = serializers.IntegerField(read_only=True, help_text="its queued task instances")
    waiting = serializers.IntegerField(
        read_only=True,
        help_text="its scheduled task instances, waiting for a slot (their wait_reason says why)",
    )
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    # The service's own checks, field by field, so that every invalid field is reported
    # at once (DRF runs these beside the type checks; `validate` would wait for them).
    def validate_name(self, value: str) -> str:
        _check(name=value)
        return value

    def validate_slots(self, value: int) -> int:
        _check(slots=value)
        return value

    def validate_description(self, value: str) -> str:
        _check(description=value)
        return value


class PoolUpdateSerializer(PoolSerializer):
    """A pool keeps its name: tasks refer to it by name."""

    def get_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = super().get_fields()
        fields.pop("name")
        return fields


class PoolViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """The tenant's pools, each with its usage. Viewers read them; editors create them,
    change their slots or description (PATCH) and delete them. Deleting a pool that an
    unfinished (scheduled, queued or running) task instance names is 409, naming them."""

    model = Pool
    serializer_class = PoolSerializer
    lookup_field = "name"
    lookup_url_kwarg = "pool"
    permissions = {
        "list": "pool.view",
        "retrieve": "pool.view",
        "create": "pool.manage",
        "partial_update": "pool.manage",
        "destroy": "pool.manage",
    }

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return with_usage(queryset)

    def _valid(self, serializer_class: type[PoolSerializer], **kwargs: Any) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A new pool (editors): 201; a name the tenant has already is 409."""
        data = self._valid(PoolSerializer)
        pool = create_pool(actor=self.actor, tenant=self.tenant, **data)
        return Response(self.get_serializer(pool).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PoolUpdateSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """New slots or description (editors). More slots start waiting tasks at once;
        fewer stop nothing that runs, and nothing more starts until enough are free."""
        data = self._valid(PoolUpdateSerializer, partial=True)
        pool = update_pool(actor=self.actor, pool=get_pool(self.tenant, kwargs["pool"]), **data)
        return Response(self.get_serializer(pool).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Delete the pool (editors): 204; 409 while unfinished task instances name it."""
        delete_pool(actor=self.actor, pool=get_pool(self.tenant, kwargs["pool"]))
        return Response(status=status.HTTP_204_NO_CONTENT)
