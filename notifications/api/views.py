"""REST endpoints of notifications: channels and rules by name, deliveries and SLA misses by
id. Each one translates HTTP to a selector or a service call; no answer carries a channel's
URL, and only creating a webhook channel and rotating its secret carry the signing secret."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from notifications import delivery, selectors, services
from notifications.api import serializers as s
from notifications.models import Channel, Delivery, Rule, SlaMiss
from orchestrator.api.base import TenantScopedViewSet
from orchestrator.api.views import parse_time
from orchestrator.integers import ascii_int

__all__ = ["ChannelViewSet", "DeliveryViewSet", "RuleViewSet", "SlaMissViewSet"]


def _run_param(request: Request) -> int | None:
    raw = request.query_params.get("run")
    if raw is None or raw == "":
        return None
    run_id = ascii_int(raw)
    if run_id is None:
        raise exceptions.ValidationError({"run": ["expected a run id (a whole number)"]})
    return run_id


def _time_param(request: Request, name: str) -> dt.datetime | None:
    raw = request.query_params.get(name)
    return parse_time(raw, name) if raw else None


class _ViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    def _valid(self, serializer_class: type[Serializer[Any]], **kwargs: Any) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class ChannelViewSet(_ViewSet):
    """Where messages go: Slack, email or a signed webhook. Admins create, change, test and
    delete them; every member sees their metadata. The URL is write-only."""

    model = Channel
    lookup_field = "name"
    lookup_url_kwarg = "channel"
    serializer_class = s.ChannelSerializer
    permissions = {
        "list": "notification.view",
        "retrieve": "notification.view",
        "create": "notification_channel.manage",
        "partial_update": "notification_channel.manage",
        "destroy": "notification_channel.manage",
        "test": "notification_channel.manage",
        "rotate_secret": "notification_channel.manage",
    }

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("created_by", "updated_by")

    def _with_secret(self, channel: Channel, secret: str | None, code: int) -> Response:
        context = {**self.get_serializer_context(), "signing_secret": secret}
        return Response(s.ChannelCreatedSerializer(channel, context=context).data, status=code)

    @extend_schema(request=s.ChannelSerializer, responses={201: s.ChannelCreatedSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A webhook channel's answer carries its signing secret, this once."""
        data = self._valid(s.ChannelSerializer)
        channel, secret = services.create_channel(actor=self.actor, tenant=self.tenant, **data)
        return self._with_secret(channel, secret, status.HTTP_201_CREATED)

    @extend_schema(request=s.ChannelUpdateSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self._valid(s.ChannelUpdateSerializer, partial=True)
        channel = services.update_channel(
            actor=self.actor, channel=selectors.get_channel(kwargs["channel"]), **data
        )
        return Response(self.get_serializer(channel).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Refused (409) while a workflow's notify names the channel; its deliveries go."""
        services.delete_channel(actor=self.actor, channel=selectors.get_channel(kwargs["channel"]))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=s.ChannelTestSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Send a test message now; answers with what the receiver said. Changes nothing
        (no audit event, no delivery)."""
        ok, answer = services.test_channel(
            actor=self.actor, channel=selectors.get_channel(kwargs["channel"])
        )
        return Response(s.ChannelTestSerializer({"ok": ok, "answer": answer}).data)

    @extend_schema(request=None, responses=s.ChannelCreatedSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A new signing secret for a webhook channel, shown this once; the old one stops
        working at once. 409 for other kinds."""
        channel = selectors.get_channel(kwargs["channel"])
        secret = services.rotate_secret(actor=self.actor, channel=channel)
        return self._with_secret(
            selectors.get_channel(kwargs["channel"]), secret, status.HTTP_200_OK
        )


class RuleViewSet(_ViewSet):
    """Which events go to which channels. Editors manage them; every member reads them."""

    model = Rule
    lookup_field = "name"
    lookup_url_kwarg = "rule"
    serializer_class = s.RuleSerializer
    permissions = {
        "list": "notification.view",
        "retrieve": "notification.view",
        "create": "notification_rule.manage",
        "partial_update": "notification_rule.manage",
        "destroy": "notification_rule.manage",
    }

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("created_by", "updated_by").prefetch_related("channels")

    def _answer(self, name: str, code: int = status.HTTP_200_OK) -> Response:
        return Response(self.get_serializer(selectors.get_rule(name)).data, status=code)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self._valid(s.RuleSerializer)
        rule = services.create_rule(actor=self.actor, tenant=self.tenant, **data)
        return self._answer(rule.name, status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self._valid(s.RuleSerializer, partial=True)
        rule = services.update_rule(
            actor=self.actor, rule=selectors.get_rule(kwargs["rule"]), **data
        )
        return self._answer(rule.name)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_rule(actor=self.actor, rule=selectors.get_rule(kwargs["rule"]))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=Delivery.Status.values),
            OpenApiParameter("channel", str, description="the channel's name"),
            OpenApiParameter("type", str, description="the event's type, e.g. run.failed"),
            OpenApiParameter("workflow", str, description="the workflow's name"),
            OpenApiParameter("run", int, description="the run's id"),
            OpenApiParameter("created_after", str, description="ISO 8601 with a timezone"),
            OpenApiParameter("created_before", str, description="ISO 8601 with a timezone"),
        ]
    )
)
class DeliveryViewSet(_ViewSet):
    """Each event sent (or to send) to each channel, newest first, and how it went.
    Operators send a failed one again."""

    model = Delivery
    serializer_class = s.DeliverySerializer
    lookup_url_kwarg = "delivery_id"
    lookup_value_regex = "[0-9]+"
    permissions = {
        "list": "notification.view",
        "retrieve": "notification.view",
        "retry": "notification_delivery.retry",
    }

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        params = self.request.query_params
        return selectors.delivery_list(
            base=queryset,
            status=params.get("status"),
            channel=params.get("channel"),
            event_type=params.get("type"),
            workflow=params.get("workflow"),
            run_id=_run_param(self.request),
            created_after=_time_param(self.request, "created_after"),
            created_before=_time_param(self.request, "created_before"),
        )

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(self.get_serializer(selectors.get_delivery(kwargs["delivery_id"])).data)

    @extend_schema(request=None, responses=s.DeliverySerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Send a failed delivery again, now. 409 unless it failed."""
        target = selectors.get_delivery(kwargs["delivery_id"])
        delivery.retry_delivery(actor=self.actor, delivery=target)
        return Response(self.get_serializer(selectors.get_delivery(target.pk)).data)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("workflow", str, description="the workflow's name"),
            OpenApiParameter("kind", str, enum=SlaMiss.Kind.values),
            OpenApiParameter("run", int, description="the run's id"),
        ]
    )
)
class SlaMissViewSet(_ViewSet):
    """Runs, tasks and days' scheduled runs that were late, each recorded once, newest
    first."""

    model = SlaMiss
    serializer_class = s.SlaMissSerializer
    lookup_url_kwarg = "sla_miss_id"
    lookup_value_regex = "[0-9]+"
    permissions = {"list": "notification.view", "retrieve": "notification.view"}

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        params = self.request.query_params
        return selectors.sla_miss_list(
            base=queryset,
            workflow=params.get("workflow"),
            kind=params.get("kind"),
            run_id=_run_param(self.request),
        )

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(self.get_serializer(selectors.get_sla_miss(kwargs["sla_miss_id"])).data)
