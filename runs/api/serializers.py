from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from orchestrator.api.base import StrictSerializer
from runs.backfills import progress
from runs.engine.events import cloudevent
from runs.models import Backfill, Event, TaskAttempt, TaskInstance, WorkflowRun
from runs.selectors import TaskGroup, last_error

__all__ = [
    "AttemptSerializer",
    "BackfillCreateSerializer",
    "BackfillDryRunSerializer",
    "BackfillSerializer",
    "ClearSerializer",
    "ClearedSerializer",
    "EventSerializer",
    "LogSerializer",
    "MappedSerializer",
    "PlannedIntervalSerializer",
    "RunRetriedSerializer",
    "RunSerializer",
    "TaskGroupSerializer",
    "TaskInstanceSerializer",
    "TriggerSerializer",
]


class TriggerSerializer(StrictSerializer):
    params = serializers.DictField(
        required=False, default=dict, help_text="Run params; defaults fill what is left out."
    )
    force = serializers.BooleanField(
        required=False, default=False, help_text="Trigger even though the workflow is paused."
    )


class RunSerializer(serializers.ModelSerializer[WorkflowRun]):
    workflow = serializers.CharField(source="workflow.name", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    triggered_by = serializers.CharField(
        source="triggered_by.username", read_only=True, allow_null=True
    )
    tasks = serializers.SerializerMethodField(
        help_text="task instance count per state (in the detail view)"
    )
    # Any JSON, null included (not allow_null: see TaskInstanceSerializer.result).
    event = serializers.JSONField(
        read_only=True,
        help_text="the CloudEvent that started a webhook, event or dataset run (else null)",
    )

    class Meta:
        model = WorkflowRun
        fields = [
            "id",
            "workflow",
            "version",
            "state",
            "params",
            "logical_date",
            "data_interval_start",
            "data_interval_end",
            "trigger_source",
            "triggered_by",
            "created_at",
            "queued_at",
            "started_at",
            "ended_at",
            "tasks",
            "event",
        ]
        read_only_fields = fields

    def get_tasks(self, run: WorkflowRun) -> dict[str, int] | None:
        summaries: dict[int, dict[str, int]] = self.context.get("summaries", {})
        return summaries.get(run.pk)

    def to_representation(self, instance: WorkflowRun) -> dict[str, Any]:
        """What the fields above produce (tests/orchestrator/test_hot_reads.py holds the two
        equal), built directly: every trigger and run read answers with it, and DRF's
        field-by-field walk was a tenth of their CPU."""

        def when(value: dt.datetime | None) -> str | None:
            return None if value is None else _WHEN.to_representation(value)

        user = instance.triggered_by
        return {
            "id": instance.pk,
            "workflow": instance.workflow.name,
            "version": instance.version.number,
            "state": instance.state,
            "params": instance.params,
            "logical_date": when(instance.logical_date),
            "data_interval_start": when(instance.data_interval_start),
            "data_interval_end": when(instance.data_interval_end),
            "trigger_source": instance.trigger_source,
            "triggered_by": user.username if user is not None else None,
            "created_at": when(instance.created_at),
            "queued_at": when(instance.queued_at),
            "started_at": when(instance.started_at),
            "ended_at": when(instance.ended_at),
            "tasks": self.get_tasks(instance),
            "event": instance.event,
        }


class RunRetriedSerializer(RunSerializer):
    """What a retry answers: the run, and the task ids it cleared to run again."""

    cleared = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "cleared"]
        read_only_fields = fields


_WHEN = serializers.DateTimeField()  # its formatting, for representations built directly


class AttemptSerializer(serializers.ModelSerializer[TaskAttempt]):
    class Meta:
        model = TaskAttempt
        fields = [
            "id",
            "try_number",
            "state",
            "worker",
            "pid",
            "lease_expires_at",
            "started_at",
            "ended_at",
            "exit_code",
            "error",
            "rendered",
            "uses",
            "log_bytes",
        ]
        read_only_fields = fields


class TaskInstanceSerializer(serializers.ModelSerializer[TaskInstance]):
    # Any JSON, null included: a nullable JSONField would be documented as oneOf [any, null],
    # which null matches twice (so no response with a null result validated).
    result = serializers.JSONField(read_only=True, help_text="what the task returned")
    map_index = serializers.IntegerField(
        read_only=True,
        help_text="the instance's index in its mapped task (-1: unmapped, or not expanded yet)",
    )
    map_value = serializers.JSONField(
        read_only=True, help_text="a mapped instance's element of `map.over` (else null)"
    )
    error = serializers.SerializerMethodField(
        help_text="its last try's error ('' when it has none: not tried, running, succeeded)"
    )
    attempts = serializers.SerializerMethodField()

    class Meta:
        model = TaskInstance
        fields = [
            "id",
            "task_id",
            "map_index",
            "map_value",
            "task_type",
            "state",
            "try_number",
            "max_tries",
            "lost_tries",
            "priority",
            "pool",
            "pool_slots",
            "concurrency_key",
            "wait_reason",
            "next_attempt_at",
            "queued_at",
            "started_at",
            "ended_at",
            "result",
            "error",
            "attempts",
        ]
        read_only_fields = fields
        extra_kwargs: ClassVar = {
            "pool": {"help_text": "the tenant's pool whose slots it takes ('' for none)"},
            "concurrency_key": {"help_text": "its rendered concurrency key ('' for none)"},
            "wait_reason": {
                "help_text": "why a scheduled instance still waits: a pool, a concurrency "
                "key, fair share, max_active_tasks ('' when it does not wait)"
            },
        }

    def get_error(self, ti: TaskInstance) -> str:
        return last_error(ti)

    @extend_schema_field(AttemptSerializer(many=True, allow_null=True))
    def get_attempts(self, ti: TaskInstance) -> list[dict[str, Any]] | None:
        if not self.context.get("with_attempts"):
            return None
        return AttemptSerializer(ti.attempts.order_by("try_number"), many=True).data  # type: ignore[return-value]


class MappedSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField(help_text="instances (0 before the task is expanded)")
    states = serializers.DictField(
        child=serializers.IntegerField(), help_text="instances per state, e.g. {success: 298}"
    )


class TaskGroupSerializer(serializers.Serializer[Any]):
    """A task of a run seen whole: a mapped task once, however many instances it has."""

    task_id = serializers.CharField()
    task_type = serializers.CharField()
    state = serializers.CharField(
        help_text="its instance's state; a mapped task's as its downstream sees it (unfinished "
        "while any instance is: the most advanced unfinished state shown; then failed, "
        "upstream_failed, cancelled if any, skipped if all were, else success)"
    )
    instance_id = serializers.IntegerField(
        allow_null=True, help_text="its single instance's id (null once mapped into several)"
    )
    mapped = MappedSerializer(allow_null=True, help_text="null for an unmapped task")
    started_at = serializers.DateTimeField(allow_null=True, help_text="its first start")
    ended_at = serializers.DateTimeField(
        allow_null=True, help_text="its last end, once every instance has finished"
    )

    def to_representation(self, instance: TaskGroup) -> dict[str, Any]:
        def when(value: dt.datetime | None) -> str | None:
            return None if value is None else _WHEN.to_representation(value)

        return {
            "task_id": instance.task_id,
            "task_type": instance.task_type,
            "state": instance.state,
            "instance_id": instance.instance_id,
            "mapped": {"count": instance.count, "states": instance.states}
            if instance.mapped
            else None,
            "started_at": when(instance.started_at),
            "ended_at": when(instance.ended_at),
        }


class ClearSerializer(StrictSerializer):
    downstream = serializers.BooleanField(default=False)


class ClearedSerializer(serializers.Serializer[Any]):
    cleared = serializers.ListField(child=serializers.CharField())


class LogSerializer(serializers.Serializer[Any]):
    try_number = serializers.IntegerField(allow_null=True)
    offset = serializers.IntegerField()
    next_offset = serializers.IntegerField()
    text = serializers.CharField(help_text="UTF-8 text; never ends inside a character")
    running = serializers.BooleanField(help_text="more may come: ask again from next_offset")
    total_bytes = serializers.IntegerField()
    cap_bytes = serializers.IntegerField(help_text="the log stops at this size")


class BackfillCreateSerializer(StrictSerializer):
    start = serializers.JSONField(
        help_text="first logical date: a date (its whole day) or an ISO 8601 time; "
        "without an offset, in the workflow's timezone"
    )
    end = serializers.JSONField(help_text="last logical date (inclusive), as `start`")
    reprocess = serializers.CharField(
        default="none",
        help_text="an interval that already has a run: none = skip it, failed = rerun it "
        "if it failed or was cancelled, all = rerun it whatever it ended as",
    )
    max_active_runs = serializers.JSONField(
        required=False, help_text="runs of the backfill at once (default: the workflow's)"
    )
    reverse = serializers.BooleanField(default=False, help_text="newest interval first")
    params = serializers.JSONField(
        required=False,
        help_text="params of every run of the backfill, checked against the workflow's "
        "params (their defaults fill the rest)",
    )
    dry_run = serializers.BooleanField(
        default=False, help_text="list the intervals and what would happen; create nothing"
    )


class PlannedIntervalSerializer(serializers.Serializer[Any]):
    logical_date = serializers.DateTimeField()
    data_interval_start = serializers.DateTimeField()
    data_interval_end = serializers.DateTimeField()
    action = serializers.ChoiceField(choices=["create", "rerun", "skip"])
    run = serializers.IntegerField(source="run_id", allow_null=True)


class BackfillDryRunSerializer(serializers.Serializer[Any]):
    dry_run = serializers.BooleanField()
    total = serializers.IntegerField()
    intervals = PlannedIntervalSerializer(many=True, help_text="in the order they would run")


class BackfillSerializer(serializers.ModelSerializer[Backfill]):
    workflow = serializers.CharField(source="workflow.name", read_only=True)
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True
    )
    progress = serializers.SerializerMethodField(
        help_text="intervals: total, pending, created, rerun, skipped; the backfill's runs: "
        "queued, running, succeeded, failed, cancelled"
    )

    class Meta:
        model = Backfill
        fields = [
            "id",
            "workflow",
            "state",
            "start",
            "end",
            "reprocess",
            "max_active_runs",
            "reverse",
            "params",
            "created_by",
            "created_at",
            "updated_at",
            "ended_at",
            "progress",
        ]
        read_only_fields = fields

    def get_progress(self, backfill: Backfill) -> dict[str, int]:
        return progress(backfill)


class PublishEventSerializer(serializers.Serializer[Any]):
    """A CloudEvent to publish (structured JSON form); unknown keys are refused."""

    specversion = serializers.ChoiceField(choices=["1.0"], required=False)
    type = serializers.JSONField(help_text="your own type, e.g. com.acme.file.landed")
    source = serializers.JSONField(  # type: ignore[assignment]  # a field, as DRF collects it
        help_text="a URI-reference naming the producer, e.g. /acme/uploader"
    )
    subject = serializers.JSONField(
        required=False, help_text="what it is about, e.g. s3://bucket/in/a.csv"
    )
    id = serializers.JSONField(
        required=False, help_text="unique per source: publishing it again returns the first event"
    )
    time = serializers.JSONField(required=False, help_text="ISO 8601 (default: now)")
    datacontenttype = serializers.ChoiceField(choices=["application/json"], required=False)
    data = serializers.JSONField(  # type: ignore[assignment]  # a field, as DRF collects it
        required=False,
        allow_null=True,
        help_text="any JSON (null or none: {}): the triggers read it as event.data",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {name: [f"unknown field; accepted: {', '.join(self.fields)}"] for name in unknown}
            )
        return attrs


class EventSerializer(serializers.Serializer[Event]):
    """An event as the CloudEvent 1.0 that webhooks receive (docs/notifications.md), with
    the workflow, the run and when notifications routed it. Needs `tenant` (its slug) in
    the context."""

    optional_output_fields = ("subject",)

    specversion = serializers.CharField(help_text="1.0")
    id = serializers.CharField(help_text="the event's stable id (a UUID)")
    source = serializers.CharField(  # type: ignore[assignment]  # a field, as DRF collects it
        help_text="/tenants/<tenant>/workflows/<workflow>"
    )
    type = serializers.CharField(help_text="run.failed, task.retrying, sla.missed, ...")
    subject = serializers.CharField(help_text="runs/<id>, or runs/<id>/tasks/<task id>")
    time = serializers.DateTimeField()
    datacontenttype = serializers.CharField(help_text="application/json")
    tenant = serializers.CharField(help_text="the tenant's slug (an extension attribute)")
    data = serializers.JSONField(  # type: ignore[assignment]  # a field, as DRF collects it
        help_text="the payload of the event's type"
    )
    workflow = serializers.CharField(allow_null=True, help_text="the workflow's name")
    run_id = serializers.IntegerField(allow_null=True)
    routed_at = serializers.DateTimeField(
        allow_null=True, help_text="when notifications chose its channels (null: not yet)"
    )

    def to_representation(self, instance: Event) -> dict[str, Any]:
        workflow = instance.workflow
        return {
            **cloudevent(instance, self.context["tenant"]),
            "workflow": workflow.name if workflow is not None else None,
            "run_id": instance.run_id,
            "routed_at": _WHEN.to_representation(instance.routed_at)
            if instance.routed_at is not None
            else None,
        }
