"""The workflow spec (DESIGN.md section 5) as pydantic models: one source for validation,
the canonical form and the published JSON Schema. Pure: no Django."""

from __future__ import annotations

import re
import zoneinfo
from datetime import date, datetime
from typing import Annotated, Any, Literal, get_args

from croniter import CroniterBadDateError, croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic import Tag as Choice

from workflows.durations import ACCEPTED as DURATION_ACCEPTED
from workflows.durations import format_duration, parse_duration
from workflows.params import param_errors

__all__ = [
    "CATCHUP_POLICIES",
    "DATASET_NAME_PATTERN",
    "EVENT_TYPES",
    "EVENT_TYPE_PATTERN",
    "TASK_MODELS",
    "TRIGGER_RULES",
    "UNION_TAGS",
    "Code",
    "Concurrency",
    "DatasetRef",
    "EventTrigger",
    "MapSpec",
    "SharedDataset",
    "Task",
    "Trigger",
    "WebhookTrigger",
    "WorkflowSpec",
    "dataset_key",
]

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
TASK_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$"
PACKAGE_NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$"
CALLABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"
IMAGE_PATTERN = r"^[^\s]{1,500}$"
TriggerRule = Literal[
    "all_success",
    "all_failed",
    "all_done",
    "all_done_min_one_success",
    "all_skipped",
    "one_success",
    "one_failed",
    "one_done",
    "none_failed",
    "none_failed_min_one_success",
    "none_skipped",
    "always",
]
TRIGGER_RULES: tuple[str, ...] = get_args(TriggerRule)
CATCHUP_POLICIES = ("none", "latest", "all")
EventType = Literal[
    "run.succeeded",
    "run.failed",
    "run.recovered",
    "run.cancelled",
    "task.failed",
    "task.retrying",
    "sla.missed",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")

Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "description": f"Duration: {DURATION_ACCEPTED}",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {
                    "type": "string",
                    "pattern": r"^\s*(\d+|(\d+[dD])?(\d+[hH])?(\d+[mM])?(\d+[sS])?)\s*$",
                },
            ],
        }
    ),
]
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
TaskId = Annotated[str, StringConstraints(pattern=TASK_ID_PATTERN)]
Text = Annotated[str, StringConstraints(max_length=10_000)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=500)]
TAG_PATTERN = r"^[A-Za-z0-9_.:-]{1,50}$"
Tag = Annotated[str, StringConstraints(pattern=TAG_PATTERN)]
# A dataset: a name or URI of the tenant's own (warehouse.sales_daily, s3://lake/sales).
DATASET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+=~%-]{0,299}$"
DatasetName = Annotated[str, StringConstraints(pattern=DATASET_NAME_PATTERN)]
# A CloudEvents type: reverse-DNS words (com.acme.file.landed), or the engine's own.
EVENT_TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$"
# A workflow of this tenant (a name) or of one that shares its events (tenant/name).
WORKFLOW_REFERENCE_PATTERN = r"^([a-z0-9][a-z0-9_-]{0,62}/)?[a-z0-9][a-z0-9_-]{0,62}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN)]
# A name templates read (a param, a mapped task's element): an identifier.
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
HttpStatus = Annotated[int, Field(ge=100, le=599)]
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN)]
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
Quantity = Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- workflow-level ----------------------------------------------------------------------


def _check_cron(value: str) -> str:
    text = " ".join(value.split())
    if text.startswith("@"):
        if text not in CRON_MACROS:
            raise ValueError(f"unknown cron macro {value!r}; accepted: {', '.join(CRON_MACROS)}")
        return text
    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise ValueError(
            f"{value!r} is not a valid cron expression: expected 5 fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 2 * * *', or a macro "
            f"({', '.join(CRON_MACROS)})"
        )
    try:
        croniter(text).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"{value!r} never fires (no such date, e.g. 31 February)") from None
    return text


def _check_timezone(value: str) -> str:
    if value not in zoneinfo.available_timezones():
        raise ValueError(
            f"unknown timezone {value!r}: use an IANA name such as UTC, Europe/Berlin, "
            "America/New_York"
        )
    return value


class SharedDataset(Strict):
    """Another tenant's dataset, which that tenant has shared with this one (a grant)."""

    tenant: Name = Field(description="the slug of the tenant that owns the dataset")
    name: DatasetName


def _dataset_tag(value: Any) -> str:
    return "shared-dataset" if isinstance(value, dict | SharedDataset) else "dataset-name"


# A discriminated union: errors name the one alternative the value was meant to be.
DatasetRef = Annotated[
    Annotated[str, StringConstraints(pattern=DATASET_NAME_PATTERN), Choice("dataset-name")]
    | Annotated[SharedDataset, Choice("shared-dataset")],
    Discriminator(_dataset_tag),
]


def dataset_key(ref: str | SharedDataset) -> tuple[str, str]:
    """(owner tenant slug or "" for the tenant's own, dataset name)."""
    return ("", ref) if isinstance(ref, str) else (ref.tenant, ref.name)


class Schedule(Strict):
    """When the workflow runs by itself: on a cron schedule, or when datasets were
    updated (each of `datasets` at least once since the last such run)."""

    cron: Annotated[str, AfterValidator(_check_cron)] | None = Field(
        None, description="5-field cron expression or macro, evaluated in `timezone`"
    )
    datasets: Annotated[list[DatasetRef], Field(min_length=1, max_length=50)] | None = Field(
        None,
        description="run once every one of these datasets was updated since the last "
        "dataset-triggered run (instead of cron)",
    )
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"
    catchup: Literal["none", "latest", "all"] = Field(
        "latest",
        description="after downtime or on unpause: none = skip missed intervals, "
        "latest = one run for the newest, all = every missed interval (capped)",
    )
    start: date | datetime | None = None
    end: date | datetime | None = None

    @model_validator(mode="after")
    def _end_after_start(self) -> Schedule:
        if (self.cron is None) == (self.datasets is None):
            raise ValueError("give either cron or datasets")
        if self.datasets is not None:
            timed = sorted(set(self.model_fields_set) & {"timezone", "catchup", "start", "end"})
            if timed:
                raise ValueError(
                    f"{', '.join(timed)} apply only to a cron schedule; a dataset schedule "
                    "takes datasets alone"
                )
            keys = [dataset_key(ref) for ref in self.datasets]
            if len(set(keys)) != len(keys):
                raise ValueError("datasets are listed more than once")
        if self.start is not None and self.end is not None and str(self.end) <= str(self.start):
            raise ValueError("schedule.end must be after schedule.start")
        return self


ParamType = Literal["string", "integer", "number", "boolean", "array", "object"]


class Param(Strict):
    """A run parameter: a subset of JSON Schema, checked when a run is triggered."""

    type: ParamType
    description: Annotated[str, StringConstraints(max_length=1000)] | None = None
    default: Any = None
    enum: Annotated[list[Any], Field(min_length=1)] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    required: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Param:
        if self.pattern is not None:
            if self.type != "string":
                raise ValueError("pattern applies only to type string")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        if (self.minimum is not None or self.maximum is not None) and self.type not in (
            "integer",
            "number",
        ):
            raise ValueError("minimum/maximum apply only to types integer and number")
        if self.default is not None:
            for problem in param_errors(self, self.default):
                raise ValueError(f"default {problem}")
        return self


class Defaults(Strict):
    """Task settings applied to every task that does not set its own."""

    retries: Annotated[int, Field(ge=0, le=100)] | None = None
    retry_delay: Duration | None = None
    retry_backoff: Annotated[float, Field(ge=1, le=10)] | None = None
    max_retry_delay: Duration | None = None
    timeout: Duration | None = None
    priority: Annotated[int, Field(ge=-1000, le=1000)] | None = None


TIME_OF_DAY_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
TimeOfDay = Annotated[str, StringConstraints(pattern=TIME_OF_DAY_PATTERN)]


class Sla(Strict):
    """When a run counts as late: each miss is recorded once and sent as sla.missed."""

    run_duration: Duration | None = Field(
        None, description="a run still unfinished this long after it was triggered"
    )
    deadline: TimeOfDay | None = Field(
        None,
        description="\"HH:MM\" in the schedule's timezone: the day's scheduled run has not "
        "succeeded by then (also when it never started)",
    )

    @model_validator(mode="after")
    def _something(self) -> Sla:
        if self.run_duration is None and self.deadline is None:
            raise ValueError("give run_duration, deadline or both")
        if self.run_duration is not None and self.run_duration < 1:
            raise ValueError("run_duration must be at least 1s")
        return self


class TaskSla(Strict):
    duration: Duration = Field(
        description="the task still unfinished this long after its first try started"
    )

    @model_validator(mode="after")
    def _positive(self) -> TaskSla:
        if self.duration < 1:
            raise ValueError("duration must be at least 1s")
        return self


ChannelName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


class Notify(Strict):
    """Tell these notification channels of these events of this workflow (besides what
    the tenant's notification rules route)."""

    on: Annotated[list[EventType], Field(min_length=1)] = Field(description="event types")
    channels: Annotated[list[ChannelName], Field(min_length=1, max_length=20)] = Field(
        description="names of the tenant's notification channels"
    )


TriggerParams = Annotated[
    dict[Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)], Any],
    Field(max_length=100),
]


class WebhookSpec(Strict):
    name: Name = Field(description="the webhook's name, unique in the workflow")
    params: TriggerParams = Field(
        default_factory=dict,
        description="run params; templates may read the POSTed JSON as {{ event.data }}",
    )


class WebhookTrigger(Strict):
    """A signed HTTP POST to the webhook's URL starts a run (docs/events.md)."""

    webhook: WebhookSpec


class EventFilter(Strict):
    subject: ShortText | None = Field(None, description="glob on the event's subject")
    source: ShortText | None = Field(None, description="glob on the event's source")


class EventSpec(Strict):
    type: Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN)] = Field(
        description="the event type, e.g. com.acme.file.landed or run.succeeded"
    )
    workflow: (
        Annotated[
            str,
            StringConstraints(pattern=WORKFLOW_REFERENCE_PATTERN),
        ]
        | None
    ) = Field(
        None,
        description="only events of this workflow: a name of this tenant, or "
        "other-tenant/name for a workflow another tenant shares (a grant)",
    )
    filter: EventFilter | None = None
    params: TriggerParams = Field(
        default_factory=dict, description="run params; templates may read {{ event }}"
    )


class EventTrigger(Strict):
    """Each matching event in the tenant's event log starts one run (docs/events.md)."""

    event: EventSpec


def _trigger_tag(value: Any) -> str | None:
    if isinstance(value, WebhookTrigger | EventTrigger):
        return "webhook-trigger" if isinstance(value, WebhookTrigger) else "event-trigger"
    if isinstance(value, dict):
        if "webhook" in value:
            return "webhook-trigger"
        if "event" in value:
            return "event-trigger"
    return None


Trigger = Annotated[
    Annotated[WebhookTrigger, Choice("webhook-trigger")]
    | Annotated[EventTrigger, Choice("event-trigger")],
    Discriminator(
        _trigger_tag,
        custom_error_type="trigger_kind",
        custom_error_message="a trigger is {webhook: {name, params}} or {event: {type, ...}}",
    ),
]
# The tags of the discriminated unions above, as pydantic puts them in an error's location,
# and the model each one stands for (None: a plain value).
UNION_TAGS: dict[str, type[BaseModel] | None] = {
    "dataset-name": None,
    "shared-dataset": SharedDataset,
    "webhook-trigger": WebhookTrigger,
    "event-trigger": EventTrigger,
}


# --- tasks -------------------------------------------------------------------------------


class MapSpec(Strict):
    """Dynamic fan-out: one instance of the task per element of a list known at run time."""

    over: str | Annotated[list[Any], Field(max_length=10_000)] = Field(
        description="the list: a template expression such as "
        "'{{ tasks.list_files.result }}' (rendered when the task is ready), or a literal list"
    )
    as_: Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)] = Field(
        "item", alias="as", description="the name of the element in the task's templates"
    )
    max: Annotated[int, Field(ge=1, le=10_000)] = Field(
        1000, description="the most instances: a longer list fails the task"
    )


class Concurrency(Strict):
    """At most `limit` running tasks per rendered key, across the tenant's runs."""

    key: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="a template such as '{{ params.customer }}', rendered when the task is ready"
    )
    limit: Annotated[int, Field(ge=1, le=1000)]


class TaskBase(Strict):
    description: Annotated[str, StringConstraints(max_length=1000)] | None = None
    depends_on: list[TaskId] = Field(default_factory=list, description="upstream task ids")
    trigger_rule: TriggerRule = "all_success"
    retries: Annotated[int, Field(ge=0, le=100)] | None = None
    retry_delay: Duration | None = None
    retry_backoff: Annotated[float, Field(ge=1, le=10)] | None = None
    max_retry_delay: Duration | None = None
    timeout: Duration | None = Field(None, description="per attempt; the attempt fails after it")
    allow_failure: bool = Field(False, description="this task failing does not fail the run")
    priority: Annotated[int, Field(ge=-1000, le=1000)] | None = None
    sla: TaskSla | None = None
    inlets: Annotated[list[DatasetRef], Field(max_length=50)] = Field(
        default_factory=list, description="datasets the task reads (lineage)"
    )
    outlets: Annotated[list[DatasetName], Field(max_length=50)] = Field(
        default_factory=list,
        description="datasets of this tenant the task writes: each success records an update",
    )
    map: MapSpec | None = Field(None, description="fan out: one instance per element")
    pool: Name | None = Field(None, description="the tenant's pool whose slots the task takes")
    pool_slots: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        None, description="slots of the pool the task takes while queued or running (1)"
    )
    concurrency: Concurrency | None = None


class NoopTask(TaskBase):
    """Does nothing: a join point or a placeholder."""

    type: Literal["noop"]


class Rlimits(Strict):
    """Lower the tenant's limits for this task (docs/task-types.md, "Limits")."""

    cpu_seconds: Annotated[int, Field(ge=1)] | None = None
    memory_mb: Annotated[int, Field(ge=16)] | None = None
    open_files: Annotated[int, Field(ge=16)] | None = None
    processes: Annotated[int, Field(ge=1)] | None = None
    file_size_mb: Annotated[int, Field(ge=1)] | None = None


class ShellTask(TaskBase):
    """Runs a command in the task sandbox: the tenant's own uid, PID namespace and files."""

    type: Literal["shell"]
    command: Annotated[list[Text], Field(min_length=1)] | Text = Field(
        description="argv list; a single string only with shell: true"
    )
    shell: bool = Field(False, description="run `command` through /bin/sh -c")
    env: dict[EnvName, Text] = Field(default_factory=dict)
    cwd: Text | None = Field(
        None, description="working directory: relative to the task's private HOME (made if missing)"
    )
    skip_exit_code: Annotated[int, Field(ge=1, le=255)] = Field(
        99, description="this exit code ends the task `skipped`"
    )
    rlimits: Rlimits | None = None

    @model_validator(mode="after")
    def _string_needs_shell(self) -> ShellTask:
        if isinstance(self.command, str) and not self.shell:
            raise ValueError(
                "command is a string, which needs shell: true; or give an argv list such "
                'as ["python", "-m", "job"]'
            )
        return self


class Code(Strict):
    """The team code package python tasks call into (docs/team-code.md)."""

    package: Annotated[str, StringConstraints(pattern=PACKAGE_NAME_PATTERN)] = Field(
        description="an uploaded package's name, e.g. acme-etl"
    )
    version: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        "*",
        description=(
            'which of its uploaded versions: "1.4.2", "1.4.*", a specifier such as '
            '">=1.4,<2", or "*" (the default: the newest); the newest match is pinned '
            "when the workflow is applied"
        ),
    )


class PythonTask(TaskBase):
    """Calls a function of the tenant's code package (`code`), or of the platform's
    allow-listed modules without one, in the task sandbox."""

    type: Literal["python"]
    callable: Annotated[str, StringConstraints(pattern=CALLABLE_PATTERN)] = Field(
        description="module:function, e.g. reports.daily:build"
    )
    kwargs: dict[str, Any] = Field(default_factory=dict)
    code: Code | None = Field(
        None, description="the package this task's callable is in; the workflow's by default"
    )
    rlimits: Rlimits | None = None


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _check_url(value: str) -> str:
    if value.startswith("{{") or value.startswith("{%"):
        return value  # the scheme is checked again when the rendered URL is requested
    if value.startswith("/"):
        return value  # relative to the task's connection (checked below)
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(
            f"{value!r} is not an http(s) URL: it must start with http:// or https:// "
            "(or with / for a path relative to the task's http connection)"
        )
    return value


def _relative_needs_connection(url: str, connection: str | None) -> None:
    if url.startswith("/") and connection is None:
        raise ValueError(
            f"url {url!r} is relative: set `connection` to an http connection whose base "
            "URL it extends, or give a full http(s) URL"
        )


Url = Annotated[Text, AfterValidator(_check_url)]


class HttpTask(TaskBase):
    """Calls an HTTP API; the (size-capped) response body is the task's result."""

    type: Literal["http"]
    method: HttpMethod = "GET"
    url: Url
    headers: dict[Annotated[str, StringConstraints(min_length=1, max_length=200)], Text] = Field(
        default_factory=dict
    )
    query: dict[str, Text | int | float | bool] = Field(default_factory=dict)
    json_body: Any = Field(None, alias="json", description="request body sent as JSON")
    body: Text | None = Field(None, description="raw request body")
    connection: Name | None = Field(None, description="an http connection for auth and base URL")
    request_timeout: Duration | None = None
    expected_status: list[HttpStatus] | None = Field(
        None, description="status codes that count as success (default: any 2xx)"
    )

    @model_validator(mode="after")
    def _one_body(self) -> HttpTask:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give either json or body, not both")
        _relative_needs_connection(self.url, self.connection)
        return self


class SqlTask(TaskBase):
    """Runs SQL against a named connection; rows (capped) are the result."""

    type: Literal["sql"]
    connection: Name
    sql: Annotated[str, StringConstraints(min_length=1, max_length=100_000)]
    parameters: dict[str, Any] | list[Any] = Field(
        default_factory=dict, description="bound by the driver, never interpolated"
    )
    read_only: bool = False
    statement_timeout: Duration | None = None
    max_rows: Annotated[int, Field(ge=0, le=100_000)] = 1000


class ResourceAmounts(Strict):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(Strict):
    requests: ResourceAmounts | None = None
    limits: ResourceAmounts | None = None


class ContainerTask(TaskBase):
    """Runs an image as a Kubernetes Job."""

    type: Literal["container"]
    image: Annotated[str, StringConstraints(pattern=IMAGE_PATTERN)]
    command: list[Text] | None = None
    args: list[Text] | None = None
    env: dict[EnvName, Text] = Field(default_factory=dict)
    resources: Resources | None = None
    namespace: DnsLabel | None = None
    service_account: DnsLabel | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None


class SensorBase(TaskBase):
    type: Literal["wait_for"]
    poke_interval: Duration = Field(60, description="time between checks (worker slot freed)")
    timeout: Duration | None = Field(
        None, description="the whole wait, from the first check; then the task fails (no retry)"
    )

    @model_validator(mode="after")
    def _interval(self) -> SensorBase:
        if self.poke_interval < 1:
            raise ValueError("poke_interval must be at least 1s")
        return self


class WaitForHttp(SensorBase):
    """Until the URL answers with an expected status (and `until` holds, if given)."""

    kind: Literal["http"]
    url: Url
    method: Literal["GET", "HEAD"] = "GET"
    headers: dict[str, Text] = Field(default_factory=dict)
    connection: Name | None = None
    expected_status: list[HttpStatus] | None = None
    until: Text | None = Field(
        None,
        description="Jinja expression over `response` (status, json, text), "
        "e.g. response.json.state == 'done'",
    )

    @model_validator(mode="after")
    def _relative_url(self) -> WaitForHttp:
        _relative_needs_connection(self.url, self.connection)
        return self


class WaitForSql(SensorBase):
    """Until the query's first cell is truthy."""

    kind: Literal["sql"]
    connection: Name
    sql: Annotated[str, StringConstraints(min_length=1, max_length=100_000)]
    parameters: dict[str, Any] | list[Any] = Field(default_factory=dict)


class WaitForTime(SensorBase):
    """Until a point in time (ISO 8601 or a template such as {{ data_interval_end }})."""

    kind: Literal["time"]
    at: Text


class WaitForDataset(SensorBase):
    """Until the dataset has an update recorded since the run's data interval began (or
    since the run was created, for runs without one), by any workflow's outlet."""

    kind: Literal["dataset"]
    dataset: DatasetRef


WaitForTask = Annotated[
    WaitForHttp | WaitForSql | WaitForTime | WaitForDataset, Field(discriminator="kind")
]
Task = Annotated[
    NoopTask | ShellTask | PythonTask | HttpTask | SqlTask | ContainerTask | WaitForTask,
    Field(discriminator="type"),
]
TASK_MODELS: dict[str, type[TaskBase] | dict[str, type[TaskBase]]] = {
    "noop": NoopTask,
    "shell": ShellTask,
    "python": PythonTask,
    "http": HttpTask,
    "sql": SqlTask,
    "container": ContainerTask,
    "wait_for": {
        "http": WaitForHttp,
        "sql": WaitForSql,
        "time": WaitForTime,
        "dataset": WaitForDataset,
    },
}


class WorkflowSpec(Strict):
    """A workflow: a DAG of tasks, with its schedule, params and limits."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Workflow")

    name: Name = Field(description="slug, unique per tenant: lowercase letters, digits, - and _")
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    tags: Annotated[list[Tag], Field(max_length=20)] = Field(default_factory=list)
    schedule: Schedule | None = None
    params: dict[Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)], Param] = Field(
        default_factory=dict
    )
    defaults: Defaults | None = None
    max_active_runs: Annotated[int, Field(ge=1, le=1000)] = 16
    max_active_tasks: Annotated[int, Field(ge=1, le=1000)] = 16
    timeout: Duration | None = Field(
        None, description="the run fails after this long; what is left is cancelled"
    )
    sla: Sla | None = None
    notify: Notify | None = None
    code: Code | None = Field(
        None, description="the code package of the python tasks that name none of their own"
    )
    triggers: Annotated[list[Trigger], Field(max_length=20)] = Field(
        default_factory=list, description="webhooks and events that start runs"
    )
    tasks: Annotated[dict[TaskId, Task], Field(min_length=1)]

    @property
    def cron_schedule(self) -> Schedule | None:
        """The schedule when it is a cron schedule (what ticks, backfills and deadlines
        use); None for no schedule or a dataset schedule."""
        return self.schedule if self.schedule is not None and self.schedule.cron else None
