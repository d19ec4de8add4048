"""Notification channels, rules, deliveries and SLA misses over GraphQL: the same selectors,
services and policy as REST. A channel's URL is no field of any type; its signing secret is
returned only by the mutations that make one (createNotificationChannel for a webhook,
rotateNotificationChannelSecret)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import strawberry
import strawberry_django
from rest_framework.serializers import Serializer
from strawberry.types import Info

from notifications import delivery, models, selectors, services
from notifications.api import serializers as s
from orchestrator.graphql.errors import validate
from orchestrator.graphql.types import (
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    actor_of,
    list_limit,
    tenant_scope_for,
)

__all__ = ["Mutation", "Query"]


@strawberry_django.type(models.Channel)
class ChannelType:
    """A channel's metadata: its URL is write-only (`urlHint` shows scheme and host)."""

    id: strawberry.auto
    name: strawberry.auto
    kind: str
    description: strawberry.auto
    enabled: strawberry.auto
    url_hint: strawberry.auto
    created_at: strawberry.auto
    updated_at: strawberry.auto

    @strawberry_django.field(only=["recipients"])  # type: ignore[untyped-decorator]
    def recipients(self, root: models.Channel) -> list[str]:
        return list(root.recipients)


@strawberry.type
class ChannelCreated:
    channel: ChannelType
    signing_secret: str | None = strawberry.field(
        description="A webhook's signing secret (whsec_...), shown this once; null for other kinds."
    )


@strawberry.type
class ChannelTest:
    ok: bool
    answer: str


@strawberry_django.type(models.Rule)
class RuleType:
    id: strawberry.auto
    name: strawberry.auto
    description: strawberry.auto
    enabled: strawberry.auto
    quiet_period: int = strawberry_django.field(description="seconds (0: every event is sent)")
    created_at: strawberry.auto
    updated_at: strawberry.auto

    @strawberry_django.field(only=["event_types"])  # type: ignore[untyped-decorator]
    def event_types(self, root: models.Rule) -> list[str]:
        return list(root.event_types)

    @strawberry_django.field(only=["workflows"])  # type: ignore[untyped-decorator]
    def workflows(self, root: models.Rule) -> list[str]:
        return list(root.workflows)

    @strawberry_django.field(only=["tags"])  # type: ignore[untyped-decorator]
    def tags(self, root: models.Rule) -> list[str]:
        return list(root.tags)

    @strawberry_django.field(prefetch_related=["channels"])  # type: ignore[untyped-decorator]
    def channels(self, root: models.Rule) -> list[str]:
        """The channels' names."""
        return sorted(channel.name for channel in root.channels.all())


@strawberry_django.type(models.Delivery)
class DeliveryType:
    id: strawberry.auto
    kind: str
    suppressed_count: strawberry.auto
    status: str
    attempts: strawberry.auto
    last_error: strawberry.auto
    response: strawberry.auto
    next_attempt_at: strawberry.auto
    created_at: strawberry.auto
    sent_at: strawberry.auto

    @strawberry_django.field(select_related=["event"], only=["event__uid"])  # type: ignore[untyped-decorator]
    def event(self, root: models.Delivery) -> str:
        """The event's id (its CloudEvent id)."""
        return str(root.event.uid)

    @strawberry_django.field(select_related=["event"], only=["event__type"])  # type: ignore[untyped-decorator]
    def event_type(self, root: models.Delivery) -> str:
        return root.event.type

    @strawberry_django.field(select_related=["event__workflow"], only=["event__workflow__name"])  # type: ignore[untyped-decorator]
    def workflow(self, root: models.Delivery) -> str | None:
        workflow = root.event.workflow
        return workflow.name if workflow is not None else None

    @strawberry_django.field(select_related=["event"], only=["event__run_id"])  # type: ignore[untyped-decorator]
    def run_id(self, root: models.Delivery) -> int | None:
        return root.event.run_id

    @strawberry_django.field(select_related=["channel"], only=["channel__name"])  # type: ignore[untyped-decorator]
    def channel(self, root: models.Delivery) -> str:
        return root.channel.name

    @strawberry_django.field(select_related=["channel"], only=["channel__kind"])  # type: ignore[untyped-decorator]
    def channel_kind(self, root: models.Delivery) -> str:
        return root.channel.kind

    @strawberry_django.field(
        select_related=["rule"],
        only=["rule__name"],
        description="The rule that chose the channel; null for the spec's notify.",
    )  # type: ignore[untyped-decorator]
    def rule(self, root: models.Delivery) -> str | None:
        return root.rule.name if root.rule is not None else None


@strawberry_django.type(models.SlaMiss)
class SlaMissType:
    id: strawberry.auto
    kind: str
    task_id: strawberry.auto
    sla: strawberry.auto
    due_at: strawberry.auto
    detected_at: strawberry.auto

    @strawberry_django.field(select_related=["workflow"], only=["workflow__name"])  # type: ignore[untyped-decorator]
    def workflow(self, root: models.SlaMiss) -> str:
        return root.workflow.name

    @strawberry_django.field(only=["run_id"])  # type: ignore[untyped-decorator]
    def run_id(self, root: models.SlaMiss) -> int | None:
        return root.run_id

    @strawberry_django.field(
        select_related=["event"], only=["event__uid"], description="the sla.missed event's id"
    )  # type: ignore[untyped-decorator]
    def event(self, root: models.SlaMiss) -> str | None:
        return str(root.event.uid) if root.event is not None else None


def _given(**kwargs: Any) -> dict[str, Any]:
    """The arguments the caller passed."""
    return {k: v for k, v in kwargs.items() if v is not strawberry.UNSET}


def _valid(serializer_class: type[Serializer[Any]], data: dict[str, Any]) -> dict[str, Any]:
    """Checked by the REST serializer, so both interfaces check the same rules."""
    return validate(serializer_class, data, partial=True)


def _created(channel: models.Channel, secret: str | None) -> ChannelCreated:
    return ChannelCreated(channel=channel, signing_secret=secret)  # type: ignore[arg-type]


@strawberry.type
class Query:
    @strawberry.field(description="The tenant's notification channels, by name.")  # type: ignore[untyped-decorator]
    def notification_channels(
        self, info: Info, tenant: str, limit: int = LIST_LIMIT_MAX
    ) -> list[ChannelType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "notification.view"):
            return list(selectors.all_channels()[:limit])  # type: ignore[arg-type]

    @strawberry.field(description="The tenant's notification rules, by name.")  # type: ignore[untyped-decorator]
    def notification_rules(
        self, info: Info, tenant: str, limit: int = LIST_LIMIT_MAX
    ) -> list[RuleType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "notification.view"):
            return list(selectors.all_rules()[:limit])  # type: ignore[arg-type]

    @strawberry.field(description="Newest first; page with `beforeId` = the last id you received.")  # type: ignore[untyped-decorator]
    def deliveries(
        self,
        info: Info,
        tenant: str,
        status: str | None = None,
        channel: str | None = None,
        event_type: Annotated[str | None, strawberry.argument(name="type")] = None,
        workflow: str | None = None,
        run: int | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        before_id: int | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
    ) -> list[DeliveryType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "notification.view"):
            qs = selectors.delivery_list(
                status=status,
                channel=channel,
                event_type=event_type,
                workflow=workflow,
                run_id=run,
                created_after=created_after,
                created_before=created_before,
            )
            if before_id:
                qs = qs.filter(pk__lt=before_id)
            return list(qs[:limit])  # type: ignore[arg-type]

    @strawberry.field(description="Null, with a NOT_FOUND error, when it does not exist.")  # type: ignore[untyped-decorator]
    def delivery(self, info: Info, tenant: str, id: int) -> DeliveryType | None:
        with tenant_scope_for(info, tenant, "notification.view"):
            return selectors.get_delivery(id)  # type: ignore[return-value]

    @strawberry.field(description="Newest first; page with `beforeId` = the last id you received.")  # type: ignore[untyped-decorator]
    def sla_misses(
        self,
        info: Info,
        tenant: str,
        workflow: str | None = None,
        kind: str | None = None,
        run: int | None = None,
        before_id: int | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
    ) -> list[SlaMissType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "notification.view"):
            qs = selectors.sla_miss_list(workflow=workflow, kind=kind, run_id=run)
            if before_id:
                qs = qs.filter(pk__lt=before_id)
            return list(qs[:limit])  # type: ignore[arg-type]


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="A webhook channel's signing secret is in the answer, this once."
    )  # type: ignore[untyped-decorator]
    def create_notification_channel(
        self,
        info: Info,
        tenant: str,
        name: str,
        kind: str,
        url: str | None = strawberry.UNSET,
        recipients: list[str] | None = strawberry.UNSET,
        description: str | None = strawberry.UNSET,
        enabled: bool | None = strawberry.UNSET,
    ) -> ChannelCreated:
        with tenant_scope_for(info, tenant, "notification_channel.manage") as t:
            given = _given(
                name=name,
                kind=kind,
                url=url,
                recipients=recipients,
                description=description,
                enabled=enabled,
            )
            data = _valid(s.ChannelSerializer, given)
            channel, secret = services.create_channel(actor=actor_of(info), tenant=t, **data)
        return _created(channel, secret)

    @strawberry.mutation(
        description="Change what is given (newName renames it; its kind cannot change)."
    )  # type: ignore[untyped-decorator]
    def update_notification_channel(
        self,
        info: Info,
        tenant: str,
        name: str,
        new_name: str | None = strawberry.UNSET,
        url: str | None = strawberry.UNSET,
        recipients: list[str] | None = strawberry.UNSET,
        description: str | None = strawberry.UNSET,
        enabled: bool | None = strawberry.UNSET,
    ) -> ChannelType:
        with tenant_scope_for(info, tenant, "notification_channel.manage"):
            given = _given(
                name=new_name,
                url=url,
                recipients=recipients,
                description=description,
                enabled=enabled,
            )
            data = _valid(s.ChannelUpdateSerializer, given)
            channel = selectors.get_channel(name)
            return services.update_channel(actor=actor_of(info), channel=channel, **data)  # type: ignore[return-value]

    @strawberry.mutation(description="Refused while a workflow's notify names the channel.")  # type: ignore[untyped-decorator]
    def delete_notification_channel(self, info: Info, tenant: str, name: str) -> bool:
        with tenant_scope_for(info, tenant, "notification_channel.manage"):
            channel = selectors.get_channel(name)
            services.delete_channel(actor=actor_of(info), channel=channel)
        return True

    @strawberry.mutation(
        description="Send a test message now; what the receiver answered. Changes nothing."
    )  # type: ignore[untyped-decorator]
    def test_notification_channel(self, info: Info, tenant: str, name: str) -> ChannelTest:
        with tenant_scope_for(info, tenant, "notification_channel.manage"):
            channel = selectors.get_channel(name)
            ok, answer = services.test_channel(actor=actor_of(info), channel=channel)
        return ChannelTest(ok=ok, answer=answer)

    @strawberry.mutation(
        description="A new signing secret for a webhook channel, shown this once; the old "
        "one stops working at once."
    )  # type: ignore[untyped-decorator]
    def rotate_notification_channel_secret(
        self, info: Info, tenant: str, name: str
    ) -> ChannelCreated:
        with tenant_scope_for(info, tenant, "notification_channel.manage"):
            secret = services.rotate_secret(
                actor=actor_of(info), channel=selectors.get_channel(name)
            )
            return _created(selectors.get_channel(name), secret)

    @strawberry.mutation(
        description='quietPeriod: seconds, or a duration such as "15m" (at most 1 day).'
    )  # type: ignore[untyped-decorator]
    def create_notification_rule(
        self,
        info: Info,
        tenant: str,
        name: str,
        channels: list[str],
        event_types: list[str] | None = strawberry.UNSET,
        workflows: list[str] | None = strawberry.UNSET,
        tags: list[str] | None = strawberry.UNSET,
        quiet_period: str | None = strawberry.UNSET,
        description: str | None = strawberry.UNSET,
        enabled: bool | None = strawberry.UNSET,
    ) -> RuleType:
        with tenant_scope_for(info, tenant, "notification_rule.manage") as t:
            given = _given(
                name=name,
                channels=channels,
                event_types=event_types,
                workflows=workflows,
                tags=tags,
                quiet_period=quiet_period,
                description=description,
                enabled=enabled,
            )
            data = _valid(s.RuleSerializer, given)
            rule = services.create_rule(actor=actor_of(info), tenant=t, **data)
            return selectors.get_rule(rule.name)  # type: ignore[return-value]

    @strawberry.mutation(description="Change what is given (newName renames it).")  # type: ignore[untyped-decorator]
    def update_notification_rule(
        self,
        info: Info,
        tenant: str,
        name: str,
        new_name: str | None = strawberry.UNSET,
        channels: list[str] | None = strawberry.UNSET,
        event_types: list[str] | None = strawberry.UNSET,
        workflows: list[str] | None = strawberry.UNSET,
        tags: list[str] | None = strawberry.UNSET,
        quiet_period: str | None = strawberry.UNSET,
        description: str | None = strawberry.UNSET,
        enabled: bool | None = strawberry.UNSET,
    ) -> RuleType:
        with tenant_scope_for(info, tenant, "notification_rule.manage"):
            given = _given(
                name=new_name,
                channels=channels,
                event_types=event_types,
                workflows=workflows,
                tags=tags,
                quiet_period=quiet_period,
                description=description,
                enabled=enabled,
            )
            data = _valid(s.RuleSerializer, given)
            rule = services.update_rule(actor=actor_of(info), rule=selectors.get_rule(name), **data)
            return selectors.get_rule(rule.name)  # type: ignore[return-value]

    @strawberry.mutation
    def delete_notification_rule(self, info: Info, tenant: str, name: str) -> bool:
        with tenant_scope_for(info, tenant, "notification_rule.manage"):
            services.delete_rule(actor=actor_of(info), rule=selectors.get_rule(name))
        return True

    @strawberry.mutation(description="Send a failed delivery again, now.")  # type: ignore[untyped-decorator]
    def retry_delivery(self, info: Info, tenant: str, id: int) -> DeliveryType:
        with tenant_scope_for(info, tenant, "notification_delivery.retry"):
            target = selectors.get_delivery(id)
            delivery.retry_delivery(actor=actor_of(info), delivery=target)
            return selectors.get_delivery(id)  # type: ignore[return-value]
