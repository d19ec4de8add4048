"""Serializers translate; they decide nothing (notifications.services does, and names each
field path it refuses). A channel's URL is a write-only field and its signing secret is
only ever in the answer that made it: no other serializer here can output either."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from notifications.models import Channel, Rule
from orchestrator.api.base import StrictSerializer

__all__ = [
    "ChannelCreatedSerializer",
    "ChannelSerializer",
    "ChannelTestSerializer",
    "ChannelUpdateSerializer",
    "DeliverySerializer",
    "RuleSerializer",
    "RuleUpdateSerializer",
    "SlaMissSerializer",
]


class _Stamps(StrictSerializer):
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class ChannelSerializer(_Stamps):
    name = serializers.CharField(max_length=63)
    kind = serializers.CharField(max_length=16, help_text="slack, email or webhook")
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)
    url = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=2000,
        trim_whitespace=False,
        help_text="Write-only: a Slack incoming-webhook URL or the webhook's URL; stored "
        "encrypted, never returned (url_hint shows its scheme and host).",
    )
    recipients = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="email: 1 to 50 addresses",
    )
    url_hint = serializers.CharField(read_only=True)
    has_signing_secret = serializers.SerializerMethodField()

    def get_has_signing_secret(self, channel: Channel) -> bool:
        return bool(channel.signing_secret_encrypted)


class ChannelUpdateSerializer(ChannelSerializer):
    """A channel keeps its kind: make another channel for another kind."""

    def get_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = super().get_fields()
        fields.pop("kind")
        return fields


class ChannelCreatedSerializer(ChannelSerializer):
    """What creating a channel or rotating its secret answers: the channel, and a webhook's
    signing secret, shown this once."""

    signing_secret = serializers.SerializerMethodField(
        help_text="whsec_...: shown only here, once (null for slack and email channels)"
    )

    def get_signing_secret(self, channel: Channel) -> str | None:
        secret: str | None = self.context.get("signing_secret")
        return secret


class ChannelTestSerializer(serializers.Serializer[Any]):
    ok = serializers.BooleanField(help_text="the receiver accepted the test message")
    answer = serializers.CharField(help_text="what the transport or receiver answered")


@extend_schema_field(
    {
        "oneOf": [{"type": "integer", "minimum": 0}, {"type": "string"}],
        "description": 'seconds, or a duration such as "15m" (0: every event is sent)',
    }
)
class QuietPeriodField(serializers.Field):  # type: ignore[type-arg]
    """Seconds out, seconds or a duration string in (the service parses and checks it)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, int | str):
            raise serializers.ValidationError('seconds, or a duration such as "15m"')
        return data

    def to_representation(self, value: Any) -> int:
        return int(value)


class RuleSerializer(_Stamps):
    name = serializers.CharField(max_length=63)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)
    event_types = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="all when empty"
    )
    workflows = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="names; all when empty"
    )
    tags = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="all when empty"
    )
    channels = serializers.ListField(
        child=serializers.CharField(), help_text="names of the tenant's channels"
    )
    quiet_period = QuietPeriodField(required=False)

    def to_representation(self, instance: Rule) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(
            {
                **{f: getattr(instance, f) for f in self._plain},
                "channels": sorted(c.name for c in instance.channels.all()),
            }
        )
        return data

    _plain = (
        "name",
        "description",
        "enabled",
        "event_types",
        "workflows",
        "tags",
        "quiet_period",
        "created_at",
        "updated_at",
    )


class RuleUpdateSerializer(RuleSerializer):
    def get_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = super().get_fields()
        fields["channels"].required = False
        return fields


class DeliverySerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(read_only=True)
    channel = serializers.CharField(source="channel.name", read_only=True)
    channel_kind = serializers.CharField(source="channel.kind", read_only=True)
    rule = serializers.CharField(
        source="rule.name",
        read_only=True,
        allow_null=True,
        help_text="the rule that chose the channel; null for the spec's notify",
    )
    kind = serializers.ChoiceField(
        choices=["event", "summary"],
        read_only=True,
        help_text="event, or summary: the count of a quiet period's suppressed events",
    )
    status = serializers.ChoiceField(
        choices=["pending", "sent", "failed", "suppressed"], read_only=True
    )
    attempts = serializers.IntegerField(read_only=True)
    last_error = serializers.CharField(read_only=True)
    response = serializers.CharField(read_only=True, help_text="the receiver's last answer")
    event = serializers.UUIDField(source="event.uid", read_only=True, help_text="its id")
    event_type = serializers.CharField(source="event.type", read_only=True)
    workflow = serializers.CharField(source="event.workflow.name", read_only=True, allow_null=True)
    run_id = serializers.IntegerField(source="event.run_id", read_only=True, allow_null=True)
    suppressed_count = serializers.IntegerField(read_only=True)
    next_attempt_at = serializers.DateTimeField(read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    sent_at = serializers.DateTimeField(read_only=True, allow_null=True)


class SlaMissSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(
        choices=["run_duration", "deadline", "task_duration"], read_only=True
    )
    workflow = serializers.CharField(source="workflow.name", read_only=True)
    run_id = serializers.IntegerField(read_only=True, allow_null=True)
    task_id = serializers.CharField(read_only=True, help_text='"" unless a task\'s SLA')
    sla = serializers.CharField(read_only=True, help_text='what was asked, e.g. "run_duration: 1h"')
    due_at = serializers.DateTimeField(read_only=True, help_text="when it had to be done")
    detected_at = serializers.DateTimeField(read_only=True)
    event = serializers.UUIDField(
        source="event.uid", read_only=True, allow_null=True, help_text="its sla.missed event"
    )
