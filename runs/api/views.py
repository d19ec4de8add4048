"""REST endpoints of runs: trigger and list a workflow's runs, read runs and their tasks."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import (
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrator.api.base import TenantScopedViewSet
from orchestrator.api.views import parse_time
from orchestrator.integers import ascii_int
from runs import backfills, services
from runs.api.serializers import (
    BackfillCreateSerializer,
    BackfillDryRunSerializer,
    BackfillSerializer,
    ClearedSerializer,
    ClearSerializer,
    EventSerializer,
    LogSerializer,
    PlannedIntervalSerializer,
    PublishEventSerializer,
    RunRetriedSerializer,
    RunSerializer,
    TaskGroupSerializer,
    TaskInstanceSerializer,
    TriggerSerializer,
)
from runs.eventlog import publish_event
from runs.models import Backfill, Event, TaskInstance, WorkflowRun
from runs.selectors import (
    LOG_PAGE_MAX,
    event_list,
    get_event,
    get_run,
    get_task_instance,
    parse_map_index,
    read_log,
    run_detail,
    run_list,
    task_groups,
    task_instance_list,
    task_summary,
)
from workflows.selectors import get_workflow

__all__ = [
    "BackfillViewSet",
    "EventViewSet",
    "RunViewSet",
    "TaskInstanceViewSet",
    "WorkflowBackfillViewSet",
    "WorkflowRunViewSet",
]


class WorkflowRunViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """A workflow's runs, newest first; POST triggers one (operators and above)."""

    model = WorkflowRun
    serializer_class = RunSerializer
    permissions = {"list": "run.view", "create": "run.operate"}

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        workflow = get_workflow(self.kwargs["workflow"])
        return run_list().filter(workflow=workflow, pk__in=queryset.values("pk"))

    @extend_schema(
        request=TriggerSerializer,
        responses={201: RunSerializer, 200: RunSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Repeat a trigger safely for 24 hours: the same key and body return "
                "the first run (200); the same key with another body is 409.",
            )
        ],
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = TriggerSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 255 and key.isprintable()):
            raise exceptions.ValidationError({"Idempotency-Key": ["1 to 255 printable characters"]})
        triggered = services.trigger_run(
            actor=self.actor,
            workflow=get_workflow(kwargs["workflow"]),
            params=body.validated_data["params"],
            idempotency_key=key,
            force=body.validated_data["force"],
        )
        run = triggered.run  # with its version and user, as it started
        tasks = triggered.tasks if triggered.tasks is not None else task_summary(run)
        context = {**self.get_serializer_context(), "summaries": {run.pk: tasks}}
        code = status.HTTP_200_OK if triggered.replayed else status.HTTP_201_CREATED
        return Response(RunSerializer(run, context=context).data, status=code)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("workflow", str, description="name of the workflow"),
            OpenApiParameter("state", str, enum=[s.value for s in WorkflowRun.State]),
            OpenApiParameter("created_after", str, description="ISO 8601 with a timezone"),
            OpenApiParameter("created_before", str, description="ISO 8601 with a timezone"),
            OpenApiParameter("trigger_source", str, enum=[s.value for s in WorkflowRun.Source]),
            OpenApiParameter("triggered_by", str, description="user name of who triggered"),
        ]
    )
)
class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Runs of every workflow of the tenant, newest first."""

    model = WorkflowRun
    serializer_class = RunSerializer
    lookup_url_kwarg = "run_id"
    lookup_value_regex = "[0-9]+"
    permissions = {
        "list": "run.view",
        "retrieve": "run.view",
        "cancel": "run.operate",
        "retry": "run.operate",
        "list_task_groups": "run.view",
    }

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        params = self.request.query_params
        after, before = params.get("created_after"), params.get("created_before")
        state = params.get("state")
        if state and state not in WorkflowRun.State.values:
            raise exceptions.ValidationError(
                {"state": [f"unknown state; accepted: {', '.join(WorkflowRun.State.values)}"]}
            )
        return run_list(
            workflow=params.get("workflow"),
            state=params.get("state"),
            created_after=parse_time(after, "created_after") if after else None,
            created_before=parse_time(before, "created_before") if before else None,
            trigger_source=params.get("trigger_source"),
            triggered_by=params.get("triggered_by"),
        ).filter(pk__in=queryset.values("pk"))

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._detail(kwargs["run_id"])

    def _detail(self, run_id: int | str, **extra: Any) -> Response:
        """The run as it is now, with its task counts (read again after an operation)."""
        run, tasks = run_detail(run_id)
        context = {**self.get_serializer_context(), "summaries": {run.pk: tasks}}
        return Response({**RunSerializer(run, context=context).data, **extra})

    @extend_schema(request=None, responses=RunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Stop the run: running tasks are killed, nothing more starts. 409 once ended."""
        run = get_run(kwargs["run_id"])
        services.cancel_run(actor=self.actor, run=run)
        return self._detail(run.pk)

    @extend_schema(request=None, responses=RunRetriedSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Re-run the failed, upstream_failed and cancelled tasks and all downstream of them."""
        run = get_run(kwargs["run_id"])
        cleared = services.retry_run(actor=self.actor, run=run)
        return self._detail(run.pk, cleared=cleared)

    @extend_schema(responses=TaskGroupSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="task-groups", pagination_class=None)
    def list_task_groups(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Each task of the run once: a mapped task as one entry with its instance count
        per state (`mapped`), in the order the tasks were created."""
        groups = task_groups(get_run(kwargs["run_id"]))
        return Response(TaskGroupSerializer(groups, many=True).data)


MAP_INDEX = OpenApiParameter(
    "map_index",
    int,
    description="one instance of a mapped task (0 and up); leave it out for an unmapped task",
)
WHOLE_OR_ONE = OpenApiParameter(
    "map_index",
    int,
    description="one instance of a mapped task (0 and up); leave it out for the whole task "
    "(all of a mapped task's instances)",
)


# A mark answers with the instance, or with the group of a mapped task named whole.
_MARKED = PolymorphicProxySerializer(
    component_name="MarkedTask",
    serializers=[TaskInstanceSerializer, TaskGroupSerializer],
    resource_type_field_name=None,
)


def _map_index(request: Request) -> int | None:
    return parse_map_index(request.query_params.get("map_index"))


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("task_id", str, description="one task's instances"),
            OpenApiParameter(
                "map_index", int, description="instances of this index (-1: unmapped ones)"
            ),
            OpenApiParameter("state", str, enum=[s.value for s in TaskInstance.State]),
        ]
    )
)
class TaskInstanceViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """A run's task instances; one by task id (and `map_index` for a mapped task's
    instance) comes with its attempts."""

    model = TaskInstance
    serializer_class = TaskInstanceSerializer
    lookup_field = "task_id"
    permissions = {
        "list": "run.view",
        "retrieve": "run.view",
        "logs": "run.view",
        "clear": "run.operate",
        "mark_success": "run.operate",
        "mark_failed": "run.operate",
    }

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        params = self.request.query_params
        state = params.get("state")
        if state and state not in TaskInstance.State.values:
            raise exceptions.ValidationError(
                {"state": [f"unknown state; accepted: {', '.join(TaskInstance.State.values)}"]}
            )
        return task_instance_list(
            get_run(self.kwargs["run_id"]),
            task_id=params.get("task_id"),
            map_index=_map_index(self.request),
            state=state,
        ).filter(pk__in=queryset.values("pk"))

    def _instance(self, map_index: int | None, **kwargs: Any) -> Response:
        ti = get_task_instance(get_run(kwargs["run_id"]), kwargs["task_id"], map_index)
        context = {**self.get_serializer_context(), "with_attempts": True}
        return Response(TaskInstanceSerializer(ti, context=context).data)

    def _marked(self, state: str, **kwargs: Any) -> Response:
        """Mark the instance (or a mapped task's every instance) and answer with it (or
        with the task's group)."""
        run, task_id = get_run(kwargs["run_id"]), kwargs["task_id"]
        map_index = _map_index(self.request)
        if map_index is None:
            # A mapped task named whole answers with its group (all its instances marked).
            group = next(iter(task_groups(run, task_id=task_id)), None)
            if group is not None and group.mapped and group.count:
                services.mark_task(actor=self.actor, run=run, task_id=task_id, state=state)
                return Response(TaskGroupSerializer(task_groups(run, task_id=task_id)[0]).data)
        else:
            get_task_instance(run, task_id, map_index)  # 404 naming the indexes there are
        services.mark_task(
            actor=self.actor, run=run, task_id=task_id, state=state, map_index=map_index
        )
        return self._instance(map_index, **kwargs)

    @extend_schema(request=ClearSerializer, responses=ClearedSerializer, parameters=[WHOLE_OR_ONE])
    @action(detail=True, methods=["post"])
    def clear(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Run a finished task again; `downstream: true` clears everything after it too.
        With `map_index`, only that instance of a mapped task (and its downstream)."""
        body = ClearSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run, map_index = get_run(kwargs["run_id"]), _map_index(request)
        if map_index is not None:
            get_task_instance(run, kwargs["task_id"], map_index)  # 404 naming the indexes
        cleared = services.clear_task(
            actor=self.actor,
            run=run,
            task_id=kwargs["task_id"],
            downstream=body.validated_data["downstream"],
            map_index=map_index,
        )
        return Response({"cleared": cleared})

    @extend_schema(request=None, responses=_MARKED, parameters=[WHOLE_OR_ONE])
    @action(detail=True, methods=["post"], url_path="mark-success")
    def mark_success(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._marked("success", **kwargs)

    @extend_schema(request=None, responses=_MARKED, parameters=[WHOLE_OR_ONE])
    @action(detail=True, methods=["post"], url_path="mark-failed")
    def mark_failed(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._marked("failed", **kwargs)

    @extend_schema(
        parameters=[
            OpenApiParameter("try", int, description="try number (default: the latest)"),
            OpenApiParameter("offset", int, description="first byte to return (default 0)"),
            OpenApiParameter(
                "limit", int, description="bytes to return at most (default and maximum 1 MiB)"
            ),
            MAP_INDEX,
        ],
        responses=LogSerializer,
    )
    @action(detail=True, methods=["get"])
    def logs(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Follow a task's log: ask again from `next_offset` while `running` is true."""
        run = get_run(kwargs["run_id"])
        ti = get_task_instance(run, kwargs["task_id"], _map_index(request))
        params = request.query_params
        numbers = {}
        for name, default in (("try", None), ("offset", 0), ("limit", LOG_PAGE_MAX)):
            raw = params.get(name)
            if raw is None or raw == "":
                numbers[name] = default
            elif (number := ascii_int(raw)) is None:
                raise exceptions.ValidationError({name: ["expected a non-negative integer"]})
            else:
                numbers[name] = number
        page = read_log(
            ti,
            try_number=numbers["try"],
            offset=numbers["offset"] or 0,
            limit=min(max(1, numbers["limit"] or LOG_PAGE_MAX), LOG_PAGE_MAX),
        )
        return Response(page)

    @extend_schema(parameters=[MAP_INDEX])
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._instance(_map_index(request), **kwargs)


class WorkflowBackfillViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """A workflow's backfills, newest first; POST starts one over a range of logical dates
    (operators and above), or with `dry_run` lists its intervals and creates nothing."""

    model = Backfill
    serializer_class = BackfillSerializer
    permissions = {"list": "backfill.view", "create": "backfill.operate"}

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        workflow = get_workflow(self.kwargs["workflow"])
        return backfills.backfill_list(workflow=workflow).filter(pk__in=queryset.values("pk"))

    @extend_schema(
        request=BackfillCreateSerializer,
        responses={201: BackfillSerializer, 200: BackfillDryRunSerializer},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = BackfillCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        dry_run = data.pop("dry_run")
        workflow = get_workflow(kwargs["workflow"])
        if dry_run:
            planned = backfills.plan_backfill(actor=self.actor, workflow=workflow, **data)
            intervals = PlannedIntervalSerializer(planned, many=True).data
            return Response({"dry_run": True, "total": len(planned), "intervals": intervals})
        backfill = backfills.create_backfill(actor=self.actor, workflow=workflow, **data)
        return Response(
            BackfillSerializer(backfills.get_backfill(backfill.pk)).data,
            status=status.HTTP_201_CREATED,
        )


class BackfillViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Backfills of every workflow of the tenant, newest first, with their progress."""

    model = Backfill
    serializer_class = BackfillSerializer
    lookup_url_kwarg = "backfill_id"
    lookup_value_regex = "[0-9]+"
    permissions = {
        "list": "backfill.view",
        "retrieve": "backfill.view",
        "pause": "backfill.operate",
        "resume": "backfill.operate",
        "cancel": "backfill.operate",
    }

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return backfills.backfill_list().filter(pk__in=queryset.values("pk"))

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(BackfillSerializer(backfills.get_backfill(kwargs["backfill_id"])).data)

    def _operate(self, operation: Any, backfill_id: str) -> Response:
        operation(actor=self.actor, backfill=backfills.get_backfill(backfill_id))
        return Response(BackfillSerializer(backfills.get_backfill(backfill_id)).data)

    @extend_schema(request=None, responses=BackfillSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create no more runs; those queued or running go on. 409 unless running."""
        return self._operate(backfills.pause_backfill, kwargs["backfill_id"])

    @extend_schema(request=None, responses=BackfillSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Go on with a paused backfill. 409 unless paused."""
        return self._operate(backfills.resume_backfill, kwargs["backfill_id"])

    @extend_schema(request=None, responses=BackfillSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create no more runs and cancel the queued and running ones. 409 once ended."""
        return self._operate(backfills.cancel_backfill, kwargs["backfill_id"])


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "type",
                str,
                many=True,
                explode=True,
                description="event types (repeat it, or a comma-separated list), e.g. run.failed",
            ),
            OpenApiParameter("workflow", str, description="name of the workflow"),
            OpenApiParameter("run", int, description="the run's id"),
            OpenApiParameter("since", str, description="ISO 8601 time with a timezone"),
            OpenApiParameter("until", str, description="ISO 8601 time with a timezone"),
        ]
    )
)
class EventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """The tenant's event log: what happened to runs, tasks, SLAs and datasets, and the
    events its services published, as CloudEvents, newest first. Operators publish."""

    model = Event
    serializer_class = EventSerializer
    lookup_url_kwarg = "event"
    permissions = {"list": "run.view", "retrieve": "run.view", "create": "event.publish"}

    @extend_schema(
        request=PublishEventSerializer,
        responses={201: EventSerializer, 200: EventSerializer},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Publish an event (CloudEvent-shaped); 201, or 200 with the event published
        before under the same `source` and `id` (nothing is triggered again)."""
        given = PublishEventSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = dict(given.validated_data)
        data.pop("specversion", None)
        data.pop("datacontenttype", None)
        event, created = publish_event(actor=self.actor, tenant=self.tenant, **data)
        return Response(
            self.get_serializer(event).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        params = self.request.query_params
        types = [t.strip() for raw in params.getlist("type") for t in raw.split(",") if t.strip()]
        run, since, until = params.get("run"), params.get("since"), params.get("until")
        run_id = ascii_int(run) if run else None
        if run and run_id is None:
            raise exceptions.ValidationError({"run": ["expected a run id (a whole number)"]})
        return event_list(
            base=queryset,
            types=types,
            workflow=params.get("workflow"),
            run_id=run_id,
            since=parse_time(since, "since") if since else None,
            until=parse_time(until, "until") if until else None,
        )

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        if hasattr(self, "tenant"):  # not when the OpenAPI document is generated
            context["tenant"] = self.tenant.slug
        return context

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(self.get_serializer(get_event(kwargs["event"])).data)
