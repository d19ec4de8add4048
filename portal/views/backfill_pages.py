"""Backfills from the browser: the form that previews a backfill (the API's dry run: every
interval and what would happen to it) and creates it, the backfill's page with its progress
and runs (refreshed while it goes on), and its pause, resume and cancel.

Each write calls the service the REST API calls (runs.backfills), with the portal's actor,
so the rules, the checks and the audit are the API's; the form only turns what was typed
into the values the API accepts and shows the service's errors next to their fields."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, ClassVar

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from orchestrator.errors import Conflict, Invalid
from orchestrator.integers import ascii_int
from portal.actions import FieldErrors, TenantForm, field_errors
from portal.pages import TenantPage, fingerprint, is_htmx, unchanged
from portal.wording import cron_in_words
from runs.backfills import (
    cancel_backfill,
    create_backfill,
    get_backfill,
    pause_backfill,
    plan_backfill,
    progress,
    resume_backfill,
)
from runs.graph import graph_for
from runs.models import Backfill, WorkflowRun
from runs.selectors import runs_page_list
from workflows.models import Workflow
from workflows.selectors import get_workflow
from workflows.spec import WorkflowSpec

__all__ = [
    "FIELDS",
    "RUNS_SHOWN",
    "BackfillCancelForm",
    "BackfillFormPage",
    "BackfillOperation",
    "BackfillPage",
    "BackfillPauseForm",
    "BackfillResumeForm",
    "urlpatterns",
]

# The form's fields, by the names the API's problem paths use for them.
FIELDS = ("start", "end", "reprocess", "max_active_runs", "reverse", "params")
RUNS_SHOWN = 100  # a backfill's page lists its newest runs, at most this many
# What each reprocess policy does, in the words of the API's help (runs.api.serializers).
REPROCESS_HELP: dict[str, str] = {
    Backfill.Reprocess.NONE: "skip an interval that already has a run",
    Backfill.Reprocess.FAILED: "rerun an interval whose run failed or was cancelled",
    Backfill.Reprocess.ALL: "rerun an interval whose run has ended, whatever it ended as",
}
LIVE = (Backfill.State.RUNNING, Backfill.State.PAUSED)


# --- the form: preview, then create ------------------------------------------------------


def _by_field(errors: FieldErrors) -> tuple[FieldErrors, list[str]]:
    """The errors of the form's fields, and the rest (shown above the form). A param's
    error (`params.region`) belongs to the params box, with the param's name."""
    fields: FieldErrors = {}
    rest: list[str] = []
    for where, said in errors.items():
        if where in FIELDS:
            fields.setdefault(where, []).extend(said)
        elif where.startswith("params."):
            name = where.removeprefix("params.")
            fields.setdefault("params", []).extend(f"{name}: {m}" for m in said)
        else:
            rest.extend(f"{where}: {m}" if where else m for m in said)
    return fields, rest


def _params(raw: str) -> Any:
    """The params box: empty is none given (the workflow's defaults), else a JSON object
    (the service checks it against the workflow's params)."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise Invalid([("params", f"not JSON ({exc}); expected an object such as {{}}")]) from None


def _submitted(form: dict[str, str]) -> dict[str, Any]:
    """What was typed, as the API's body would say it: the service decides the rest (a
    count that is not a whole number is passed on as typed, for the service to refuse)."""
    slots = form.get("max_active_runs", "").strip()
    count = ascii_int(slots)
    return {
        "start": form.get("start", "").strip(),
        "end": form.get("end", "").strip(),
        "reprocess": form.get("reprocess", Backfill.Reprocess.NONE),
        "max_active_runs": None if not slots else slots if count is None else count,
        "reverse": form.get("reverse") in ("on", "true", "1"),
        "params": _params(form.get("params", "")),
    }


class BackfillFormPage(TenantForm):
    """A backfill of one workflow: "Preview" runs the API's dry run and shows every
    interval with what would happen to it (nothing is stored), "Create backfill" creates
    it and opens its page."""

    permission = "backfill.operate"
    api_action = "create"
    template_name = "portal/backfills/form.html"
    nav = "backfills"
    _workflow: Workflow | None = None

    def workflow(self, name: str) -> Workflow:
        if self._workflow is None:
            self._workflow = get_workflow(name)
        return self._workflow

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        workflow = self.workflow(kwargs["workflow"])
        assert workflow.current_version_id is not None  # get_workflow finds live ones only
        spec = graph_for(workflow.current_version_id).spec
        fields, rest = _by_field(errors)
        return {
            "title": f"Backfill {workflow.name}",
            "workflow": workflow,
            "spec": spec,
            "schedule_words": cron_in_words(spec.cron_schedule.cron) if spec.cron_schedule else "",
            "declared": _declared(spec),
            "params_example": _params_example(spec),
            "values": values or {"reprocess": Backfill.Reprocess.NONE},
            "errors": fields,
            "general_errors": rest,
            "reprocess_choices": list(REPROCESS_HELP.items()),
        }

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.POST.get("intent") == "preview":
            return self.preview(**kwargs)
        return super().post(request, *args, **kwargs)

    def preview(self, **kwargs: Any) -> HttpResponse:
        """The dry run (plan_backfill: the API's `dry_run`), shown under the form."""
        workflow = self.workflow(kwargs["workflow"])
        try:
            planned = plan_backfill(
                actor=self.actor, workflow=workflow, **_submitted(self.request.POST.dict())
            )
        except Invalid as exc:
            return self.again(field_errors(exc.errors), 400, **kwargs)
        except Conflict as exc:
            return self.again({"": [exc.message]}, 409, **kwargs)
        counts = Counter(interval.action for interval in planned)
        context = self.form_context(values=self.request.POST.dict(), errors={}, **kwargs)
        context |= {
            "preview": planned,
            "preview_counts": {action: counts[action] for action in ("create", "rerun", "skip")},
        }
        return TemplateResponse(self.request, self.template_name, self.page_context() | context)

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        workflow = self.workflow(kwargs["workflow"])
        backfill = create_backfill(
            actor=self.actor, workflow=workflow, **_submitted(self.request.POST.dict())
        )
        url = reverse("portal:backfill", args=[self.tenant.slug, backfill.pk])
        return url, (
            f"Backfill #{backfill.pk} of {workflow.name} created: "
            f"{backfill.total} interval{'s' if backfill.total != 1 else ''}."
        )


def _declared(spec: WorkflowSpec) -> list[dict[str, Any]]:
    """The workflow's params as the form names them: type, required, default as JSON."""
    return [
        {
            "name": name,
            "type": param.type,
            "required": param.required,
            "default": None if param.default is None else json.dumps(param.default),
        }
        for name, param in sorted(spec.params.items())
    ]


def _params_example(spec: WorkflowSpec) -> str:
    """The params box's placeholder: each param with its default (or its type)."""
    example = {
        name: param.default if param.default is not None else f"<{param.type}>"
        for name, param in sorted(spec.params.items())
    }
    return json.dumps(example, indent=2)


# --- the backfill's page -----------------------------------------------------------------


def backfill_runs(backfill: Backfill) -> QuerySet[WorkflowRun]:
    """The backfill's runs, newest first, without their versions' specs."""
    return runs_page_list().filter(backfill_id=backfill.pk).order_by("-id")


class BackfillPage(TenantPage):
    """A backfill: its workflow, range and settings, who created it, its progress and its
    newest runs; the live part refreshes every 5 s while it runs or is paused (204 when
    nothing moved), and operators see Pause, Resume and Cancel."""

    permission = "backfill.view"
    template_name = "portal/backfills/detail.html"
    part_template_name = "portal/backfills/live.html"
    nav = "backfills"

    def context(self, **kwargs: Any) -> dict[str, Any] | HttpResponse:
        backfill = get_backfill(kwargs["backfill"])
        counts = progress(backfill)
        runs = list(backfill_runs(backfill)[:RUNS_SHOWN])
        seen = fingerprint(
            backfill.state,
            sorted(counts.items()),
            backfill.ended_at,
            [(r.pk, r.state) for r in runs],
        )
        if is_htmx(self.request) and (nothing_new := unchanged(self.request, seen)):
            return nothing_new
        run_count = sum(
            counts[s] for s in ("queued", "running", "succeeded", "failed", "cancelled")
        )
        ended = counts["succeeded"] + counts["failed"] + counts["cancelled"]
        return {
            "title": f"Backfill #{backfill.pk}",
            "backfill": backfill,
            "p": counts,
            "done": min(counts["skipped"] + ended, backfill.total),
            "runs": runs,
            "run_count": run_count,
            "more_runs": run_count > len(runs),
            "live": backfill.state in LIVE,
            "seen": seen,
            "params": json.dumps(backfill.params, indent=2, sort_keys=True),
            "reprocess_help": REPROCESS_HELP.get(backfill.reprocess, ""),
        }


# --- pause, resume, cancel ---------------------------------------------------------------


class BackfillOperation(TenantForm):
    """GET: what the operation will do (a confirmation); POST: the service, then back to
    the backfill's page with a message. A backfill in the wrong state is the API's 409,
    said on the confirmation."""

    permission = "backfill.operate"
    template_name = "portal/backfills/confirm.html"
    nav = "backfills"
    operation: ClassVar[str]
    done: ClassVar[str]

    def act(self, backfill: Backfill) -> Backfill:
        """Call the service the API's action calls."""
        raise NotImplementedError

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        backfill = get_backfill(kwargs["backfill"])
        counts = progress(backfill)
        active = counts["queued"] + counts["running"]
        doomed = []
        if self.operation == "cancel" and active:
            doomed = list(
                backfill_runs(backfill).filter(state__in=("queued", "running"))[:RUNS_SHOWN]
            )
        return {
            "title": f"{self.operation.title()} backfill #{backfill.pk}",
            "backfill": backfill,
            "p": counts,
            "active": active,
            "doomed": doomed,
            "operation": self.operation,
            "general_errors": [m for said in errors.values() for m in said],
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        backfill = get_backfill(kwargs["backfill"])
        self.act(backfill)
        url = reverse("portal:backfill", args=[self.tenant.slug, backfill.pk])
        return url, f"Backfill #{backfill.pk} of {backfill.workflow.name} {self.done}."


class BackfillPauseForm(BackfillOperation):
    operation = "pause"
    done = "paused: no new runs; those queued or running go on"

    def act(self, backfill: Backfill) -> Backfill:
        return pause_backfill(actor=self.actor, backfill=backfill)


class BackfillResumeForm(BackfillOperation):
    api_action = "resume"
    operation = "resume"
    done = "resumed"

    def act(self, backfill: Backfill) -> Backfill:
        return resume_backfill(actor=self.actor, backfill=backfill)


class BackfillCancelForm(BackfillOperation):
    operation = "cancel"
    done = "cancelled"

    def act(self, backfill: Backfill) -> Backfill:
        return cancel_backfill(actor=self.actor, backfill=backfill)


urlpatterns = [
    path("workflows/<str:workflow>/backfill/", BackfillFormPage.as_view(), name="backfill-new"),
    path("backfills/<int:backfill>/", BackfillPage.as_view(), name="backfill"),
    path("backfills/<int:backfill>/pause/", BackfillPauseForm.as_view(), name="backfill-pause"),
    path("backfills/<int:backfill>/resume/", BackfillResumeForm.as_view(), name="backfill-resume"),
    path("backfills/<int:backfill>/cancel/", BackfillCancelForm.as_view(), name="backfill-cancel"),
]
