"""Operating workflows and runs from the portal: trigger a run (a form made from the
workflow's params), pause and unpause a workflow, cancel a run, retry its failed tasks,
clear a task (with or without its downstream) and mark one success or failed.

Each page is a TenantForm: the permission the API uses for the action is checked first,
GET shows what will happen (the trigger form, or a confirmation naming the tasks an
operation touches, read through runs.selectors) and POST does it through the service the
API calls, with the portal's actor. The service decides again and audits; its errors come
back to the page where they belong (a param's next to its field, by the API's path)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.cache import add_never_cache_headers

from orchestrator.errors import Invalid
from portal.actions import FieldErrors, TenantForm, form_key
from runs import services
from runs.graph import graph_for
from runs.models import TaskInstance, WorkflowRun
from runs.selectors import (
    get_run,
    get_task_instance,
    parse_map_index,
    run_task_instances,
    tasks_decided_again,
    tasks_to_clear,
    tasks_to_retry,
)
from workflows import services as workflow_services
from workflows.models import Workflow
from workflows.selectors import get_workflow
from workflows.spec import Param

__all__ = [
    "CancelRunPage",
    "ClearTaskPage",
    "MarkTaskPage",
    "ParamField",
    "PauseWorkflow",
    "RetryRunPage",
    "TriggerPage",
    "UnpauseWorkflow",
    "as_text",
    "from_text",
    "param_fields",
    "posted_params",
    "urlpatterns",
]

# What a JSON number looks like: the only text an integer or number field turns into one.
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_KEY_MAX = 255  # the API's limit for an Idempotency-Key
_STOPPED = (TaskInstance.State.RUNNING, TaskInstance.State.QUEUED)


def _general(errors: FieldErrors) -> list[str]:
    """Every message of the errors: with its path, when it is not a field's (above the form)."""
    return [f"{key}: {m}" if key else m for key, found in errors.items() for m in found]


def _listed(task_ids: list[str]) -> str:
    return ", ".join(task_ids) if task_ids else "none"


# --- the trigger form -------------------------------------------------------------------


def as_text(kind: str, value: Any) -> str:
    """A param value as its field shows it: strings as they are, JSON for the rest."""
    if value is None:
        return ""
    if kind == "string" and isinstance(value, str):
        return value
    indent = 2 if kind in ("array", "object") else None
    return json.dumps(value, indent=indent, ensure_ascii=False)


def from_text(kind: str, text: str) -> tuple[Any, str | None]:
    """The value a field's text stands for by the param's declared type ("42" -> 42 for an
    integer, "true" -> True for a boolean, JSON for an array or object). Text that is not
    of the type is passed on as it is, so the service reports it at the API's path with
    the API's message ("'abc' is not of type 'integer'"); the second item says why JSON
    text could not be read."""
    if kind == "string":
        return text, None
    if kind == "boolean":
        return {"true": True, "false": False}.get(text, text), None
    if kind in ("integer", "number"):
        if not _NUMBER.fullmatch(text.strip()):
            return text, None
        number = json.loads(text.strip())
        if kind == "integer" and isinstance(number, float) and number.is_integer():
            number = int(number)
        return number, None
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return text, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"


def posted_params(
    posted: Mapping[str, str], declared: Mapping[str, Param]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The run's params from the form's `params.<name>` fields, each by its declared type;
    an empty field is left out (its default applies, or the service says it is required).
    Also the JSON problems, at the paths the service reports their values at."""
    params: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for name, param in declared.items():
        text = posted.get(f"params.{name}", "")
        if text.strip() == "":
            continue
        params[name], problem = from_text(param.type, text)
        if problem:
            problems.append((f"params.{name}", problem))
    return params, problems


@dataclass(frozen=True)
class ParamField:
    """One param as a form field: `widget` is select (enums, booleans), number, json
    (arrays and objects, in a textarea) or text; `text` is what it shows."""

    name: str
    param: Param
    widget: str
    text: str
    choices: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def required(self) -> bool:
        return _must_fill(self.param)

    @property
    def default_text(self) -> str | None:
        return None if self.param.default is None else as_text(self.param.type, self.param.default)

    @property
    def step(self) -> str:
        return "1" if self.param.type == "integer" else "any"

    @property
    def minimum(self) -> str | None:
        return _number_text(self.param.minimum)

    @property
    def maximum(self) -> str | None:
        return _number_text(self.param.maximum)

    @property
    def hints(self) -> list[str]:
        """What the field's help line says: the description, then what is accepted."""
        hints = [self.param.description] if self.param.description else []
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            hints.append(f"from {low} to {high}")
        elif low is not None or high is not None:
            hints.append(f"at least {low}" if low is not None else f"at most {high}")
        if self.param.pattern:
            hints.append(f"matching {self.param.pattern}")
        if self.widget == "json":
            hints.append(f"a JSON {self.param.type}")
        if self.default_text is not None and self.widget != "select":
            hints.append(f"default {self.default_text}")
        return hints


def _number_text(value: float | None) -> str | None:
    """A limit as people write it: 1, not 1.0."""
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else str(value)


def _widget(param: Param) -> str:
    if param.enum is not None or param.type == "boolean":
        return "select"
    return {"integer": "number", "number": "number", "array": "json", "object": "json"}.get(
        param.type, "text"
    )


def _choices(param: Param) -> list[tuple[str, str]]:
    """A select's (value, label) options; a first empty one when no default is chosen."""
    values = param.enum if param.enum is not None else [True, False]
    options = [(as_text(param.type, v), as_text(param.type, v)) for v in values]
    if param.default is None:
        options.insert(0, ("", "— choose —" if param.required else "— not set —"))
    return options


def param_fields(
    declared: Mapping[str, Param], posted: Mapping[str, str] | None, errors: FieldErrors
) -> list[ParamField]:
    """The form's fields, those that must be filled first, then by name (a stored spec
    keeps no order of its own): what was posted when the form comes back, else the
    defaults; each with the errors of its path (`region`, `tags.0`, ...)."""
    fields = []
    for name, param in sorted(declared.items(), key=_must_fill_first):
        if posted is None:
            text = as_text(param.type, param.default)
        else:
            text = posted.get(f"params.{name}", "")
        mine = [m for key, found in errors.items() if key.split(".")[0] == name for m in found]
        fields.append(ParamField(name, param, _widget(param), text, _choices(param), mine))
    return fields


def _must_fill(param: Param) -> bool:
    """Required, and no default fills it (as the params' JSON Schema has it)."""
    return param.required and param.default is None


def _must_fill_first(item: tuple[str, Param]) -> tuple[bool, str]:
    name, param = item
    return (not _must_fill(param), name)


def _declared(workflow: Workflow) -> dict[str, Param]:
    if workflow.current_version_id is None:
        return {}
    return dict(graph_for(workflow.current_version_id).spec.params)


def _valid_key(key: str) -> str:
    """The form's key as the API's Idempotency-Key rules have it."""
    if not (0 < len(key) <= _KEY_MAX and key.isprintable()):
        raise Invalid([("form_key", "the form's key is damaged: reload the form")])
    return key


class TriggerPage(TenantForm):
    """A run of the workflow's current version with the params typed in; the form's key
    makes a double click or a resubmitted form one run (it replays to the same run)."""

    permission = "run.operate"
    api_action = "create"
    template_name = "portal/operate/trigger.html"
    nav = "workflows"
    error_prefix = "params."

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Never cached: the back button shows a fresh form, with a key of its own."""
        response = super().get(request, *args, **kwargs)
        add_never_cache_headers(response)
        return response

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        workflow = get_workflow(kwargs["workflow"])
        declared = _declared(workflow)
        fields = param_fields(declared, values, errors)
        general = {k: found for k, found in errors.items() if k.split(".")[0] not in declared}
        return {
            "title": f"Trigger {workflow.name}",
            "workflow": workflow,
            "fields": fields,
            "general_errors": _general(general),
            # Each form shown has a key of its own, one shown again after an error too:
            # its clicks are one request, and a form sent back from an earlier page (with
            # the key of a run made since) cannot keep the person at a conflict.
            "form_key": uuid.uuid4().hex,
            "forced": bool(values and values.get("force")),
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        workflow = get_workflow(kwargs["workflow"])
        params, problems = posted_params(self.request.POST, _declared(workflow))
        try:
            triggered = services.trigger_run(
                actor=self.actor,
                workflow=workflow,
                params=params,
                idempotency_key=_valid_key(form_key(self.request)),
                force=bool(self.request.POST.get("force")),
            )
        except Invalid as exc:
            raise Invalid([*exc.errors, *problems]) from None
        run = triggered.run
        said = f"Run #{run.pk} of {workflow.name} triggered."
        if triggered.replayed:
            said = f"This form was sent already: it triggered run #{run.pk} of {workflow.name}."
        elif workflow.paused:
            said = f"Run #{run.pk} of {workflow.name} triggered although the workflow is paused."
        return reverse("portal:run", args=[self.tenant.slug, run.pk]), said


# --- pausing ----------------------------------------------------------------------------


class _PauseAction(TenantForm):
    """A button on the workflow's page (POST only): pause or unpause, then back there."""

    permission = "workflow.pause"
    http_method_names: ClassVar[list[str]] = ["post"]  # type: ignore[misc]
    paused: ClassVar[bool]

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        workflow = get_workflow(kwargs["workflow"])
        was = workflow.paused
        workflow_services.set_paused(actor=self.actor, workflow=workflow, paused=self.paused)
        url = reverse("portal:workflow", args=[self.tenant.slug, workflow.name])
        if was == self.paused:
            return url, f"{workflow.name} was {'paused' if was else 'not paused'} already."
        if self.paused:
            return url, f"Paused {workflow.name}: its schedule starts no run until unpaused."
        return url, f"Unpaused {workflow.name}: its schedule runs it again."

    def again(self, errors: FieldErrors, status: int, **kwargs: Any) -> HttpResponse:
        """No form to show: back to the workflow's page, with what the service said."""
        for found in errors.values():
            for message in found:
                messages.error(self.request, message)
        url = reverse("portal:workflow", args=[self.tenant.slug, kwargs["workflow"]])
        return HttpResponseRedirect(url)


class PauseWorkflow(_PauseAction):
    paused = True


class UnpauseWorkflow(_PauseAction):
    paused = False


# --- run and task operations ------------------------------------------------------------


def _run_url(tenant: str, run: WorkflowRun) -> str:
    return reverse("portal:run", args=[tenant, run.pk])


def _states(run: WorkflowRun) -> dict[str, str]:
    """Each task's state now, for the lists a confirmation shows."""
    return {ti.task_id: ti.state for ti in run_task_instances(run)}


def _unfinished(states: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The tasks a cancel stops: those running or queued now, and those still waiting."""
    open_tasks = [t for t, state in states.items() if state not in TaskInstance.FINISHED]
    stopped = sorted(t for t in open_tasks if states[t] in _STOPPED)
    waiting = sorted(t for t in open_tasks if states[t] not in _STOPPED)
    return stopped, waiting


class CancelRunPage(TenantForm):
    """Which tasks a cancel stops (running, queued) and which then never start; POST
    cancels the run."""

    permission = "run.operate"
    template_name = "portal/operate/cancel.html"
    nav = "runs"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        run = get_run(kwargs["run"])
        states = _states(run)
        stopped, waiting = _unfinished(states)
        return {
            "title": f"Cancel run #{run.pk}",
            "run": run,
            "states": states,
            "ended": run.state in WorkflowRun.FINISHED,
            "stopped": stopped,
            "waiting": waiting,
            "general_errors": _general(errors),
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        run = get_run(kwargs["run"])
        stopped, waiting = _unfinished(_states(run))
        services.cancel_run(actor=self.actor, run=run)
        said = f"Run #{run.pk} cancelled: stopped {_listed(stopped)}"
        if waiting:
            said += f"; not started: {_listed(waiting)}"
        return _run_url(self.tenant.slug, run), said + "."


class RetryRunPage(TenantForm):
    """Which tasks a retry runs again (failed, upstream_failed and cancelled ones and all
    downstream of them); POST retries, in the same run."""

    permission = "run.operate"
    api_action = "retry"
    template_name = "portal/operate/retry.html"
    nav = "runs"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        run = get_run(kwargs["run"])
        return {
            "title": f"Retry run #{run.pk}",
            "run": run,
            "states": _states(run),
            "ended": run.state in WorkflowRun.FINISHED,
            "rerun": tasks_to_retry(run, graph_for(run.version_id).upstream),
            "general_errors": _general(errors),
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        run = get_run(kwargs["run"])
        cleared = services.retry_run(actor=self.actor, run=run)
        return _run_url(self.tenant.slug, run), f"Run #{run.pk}: retrying {_listed(cleared)}."


class ClearTaskPage(TenantForm):
    """Run a finished task again: only it, or it and its downstream (every finished task
    after it, which the page lists); POST clears the one chosen."""

    permission = "run.operate"
    api_action = "clear"
    template_name = "portal/operate/clear.html"
    nav = "runs"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        run = get_run(kwargs["run"])
        ti = get_task_instance(
            run, kwargs["task"], parse_map_index(self.request.GET.get("map_index"))
        )
        upstream = graph_for(run.version_id).upstream
        downstream, unfinished = tasks_to_clear(run, ti.task_id, upstream)
        return {
            "title": f"Clear {ti.task_id} · run #{run.pk}",
            "run": run,
            "states": _states(run),
            "ti": ti,
            "finished": ti.state in TaskInstance.FINISHED,
            "downstream": downstream,
            "unfinished": unfinished,
            "general_errors": _general(errors),
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        run = get_run(kwargs["run"])
        downstream = self.request.POST.get("downstream") == "yes"
        cleared = services.clear_task(
            actor=self.actor,
            run=run,
            task_id=kwargs["task"],
            downstream=downstream,
            map_index=parse_map_index(self.request.GET.get("map_index")),
        )
        said = f"Cleared {_listed(cleared)} in run #{run.pk}: they run again."
        return _run_url(self.tenant.slug, run), said


class MarkTaskPage(TenantForm):
    """Set a task success or failed by hand: the page says what follows (its downstream
    goes on as if it had ended so; those settled without running are decided again)."""

    permission = "run.operate"
    template_name = "portal/operate/mark.html"
    nav = "runs"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        run = get_run(kwargs["run"])
        ti = get_task_instance(
            run, kwargs["task"], parse_map_index(self.request.GET.get("map_index"))
        )
        upstream = graph_for(run.version_id).upstream
        return {
            "title": f"Mark {ti.task_id} · run #{run.pk}",
            "run": run,
            "states": _states(run),
            "ti": ti,
            "decided_again": tasks_decided_again(run, ti.task_id, upstream),
            "running": ti.state in _STOPPED,
            "general_errors": _general(errors),
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        run = get_run(kwargs["run"])
        state = self.request.POST.get("state", "")
        ti = services.mark_task(
            actor=self.actor,
            run=run,
            task_id=kwargs["task"],
            state=state,
            map_index=parse_map_index(self.request.GET.get("map_index")),
        )
        said = f"Marked {ti.task_id} {ti.state} in run #{run.pk}."
        return _run_url(self.tenant.slug, run), said


urlpatterns = [
    path("workflows/<str:workflow>/trigger/", TriggerPage.as_view(), name="trigger"),
    path("workflows/<str:workflow>/pause/", PauseWorkflow.as_view(), name="workflow-pause"),
    path("workflows/<str:workflow>/unpause/", UnpauseWorkflow.as_view(), name="workflow-unpause"),
    path("runs/<int:run>/cancel/", CancelRunPage.as_view(), name="run-cancel"),
    path("runs/<int:run>/retry/", RetryRunPage.as_view(), name="run-retry"),
    path("runs/<int:run>/tasks/<str:task>/clear/", ClearTaskPage.as_view(), name="task-clear"),
    path("runs/<int:run>/tasks/<str:task>/mark/", MarkTaskPage.as_view(), name="task-mark"),
]
