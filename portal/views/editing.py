"""Workflow editing: create a workflow or give it a new version from a spec pasted or
uploaded (YAML or JSON), every validation error shown at its line and path, the changes
against the current version shown before they are applied; and deleting a workflow, with
the API's guard against active runs.

Nothing here decides what a valid spec is. Check runs the API's own apply rolled back
(workflows.services.check_workflow), so it refuses exactly what Apply would (the spec, the
tenant's limits and quotas, the names it refers to, a name that is not the edited
workflow's); Apply runs it for real as the signed-in person (audited as `portal`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.response import TemplateResponse
from django.urls import path, reverse

from orchestrator.actors import Actor
from orchestrator.errors import Conflict, Invalid
from orchestrator.models import Tenant
from portal.actions import FieldErrors, TenantForm
from portal.wording import DiffRow, side_by_side
from workflows.models import Workflow, WorkflowVersion
from workflows.scheduling import schedule_of
from workflows.selectors import get_workflow
from workflows.services import (
    DELETE_GUARDS,
    apply_workflow,
    check_workflow,
    delete_workflow,
    parse_spec,
    spec_yaml,
)
from workflows.yaml_lines import LocatedError, locate

__all__ = [
    "Preview",
    "WorkflowDeletePage",
    "WorkflowEditorPage",
    "preview_apply",
    "urlpatterns",
]


# --- what applying would do ----------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """What applying a spec would do: the version it would make (or keep, when nothing
    changed), the version it would replace, and the diff of their canonical YAML."""

    name: str
    created: bool
    changed: bool
    number: int
    content_hash: str
    base: WorkflowVersion | None
    rows: list[DiffRow]

    @property
    def base_number(self) -> str:
        return str(self.base.number) if self.base is not None else ""

    def is_what_was_checked(self, posted: QueryDict) -> bool:
        """Whether an Apply posts the very spec whose diff was shown, against the version
        it was shown against: otherwise the person has not seen what it would do."""
        return (
            posted.get("checked") == self.content_hash
            and posted.get("base", "") == self.base_number
        )


def preview_apply(*, actor: Actor, tenant: Tenant, data: Any, name: str | None) -> Preview:
    """What applying `data` would do (workflows.services.check_workflow), with the diff
    against the current version."""
    result = check_workflow(actor=actor, tenant=tenant, data=data, name=name)
    new = result.version
    base = None if result.created else get_workflow(result.workflow.name).current_version
    rows = []
    if base is not None and result.changed:
        rows = side_by_side(spec_yaml(base.spec).splitlines(), spec_yaml(new.spec).splitlines())
    return Preview(
        name=result.workflow.name,
        created=result.created,
        changed=result.changed,
        number=new.number,
        content_hash=new.content_hash,
        base=base,
        rows=rows,
    )


# --- the editor ----------------------------------------------------------------------------


class WorkflowEditorPage(TenantForm):
    """A spec in a text area (or an uploaded file). Check shows every error at its line
    and path, or the changes it would make; Apply (offered once checked) makes them.
    Under `editor/` a new workflow (or a new version of the one the spec names, as the
    API's POST); under a workflow's `edit/` that workflow, whose name the spec must keep
    (the API's PUT)."""

    permission = "workflow.edit"
    template_name = "portal/editing/editor.html"
    nav = "workflows"

    def edited(self, **kwargs: Any) -> Workflow | None:
        name = kwargs.get("workflow")
        return None if name is None else get_workflow(name)

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        workflow = self.edited(**kwargs)
        version = workflow.current_version if workflow is not None else None
        return self.editor(workflow, spec_yaml(version.spec) if version is not None else "")

    def editor(
        self,
        workflow: Workflow | None,
        text: str,
        *,
        located: list[LocatedError] | None = None,
        problem: str = "",
        preview: Preview | None = None,
        stale: bool = False,
    ) -> dict[str, Any]:
        slug = self.tenant.slug
        return {
            "title": f"Edit {workflow.name}" if workflow else "New workflow",
            "workflow": workflow,
            "text": text,
            "located": located or [],
            "problem": problem,
            "preview": preview,
            "stale": stale,
            "cancel_url": reverse("portal:workflow", args=[slug, workflow.name])
            if workflow
            else reverse("portal:workflows", args=[slug]),
        }

    def show(self, workflow: Workflow | None, text: str, status: int, **shown: Any) -> HttpResponse:
        context = self.page_context() | self.editor(workflow, text, **shown)
        return TemplateResponse(self.request, self.template_name, context, status=status)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        workflow = self.edited(**kwargs)
        text = request.POST.get("spec", "")
        upload = request.FILES.get("file")
        if upload is not None:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # the API's limit on a body (413)
            if upload.size is not None and upload.size > limit:
                problem = f"{upload.name} is {upload.size} bytes; at most {limit} are accepted"
                return self.show(workflow, text, 413, problem=problem)
            text = upload.read().decode("utf-8", errors="replace")
        name = workflow.name if workflow is not None else None
        try:
            data = parse_spec(text, self.tenant)
            preview = preview_apply(actor=self.actor, tenant=self.tenant, data=data, name=name)
            applying = request.POST.get("action") == "apply"
            if applying and preview.is_what_was_checked(request.POST):
                return self.apply(data, name)
        except Invalid as exc:
            return self.show(workflow, text, 400, located=locate(text, exc.errors))
        except Conflict as exc:
            return self.show(workflow, text, 409, problem=exc.message)
        # An Apply of a spec (or against a version) other than the one checked: show
        # what it would do now, for the person to apply again.
        return self.show(workflow, text, 409 if applying else 200, preview=preview, stale=applying)

    def apply(self, data: Any, name: str | None) -> HttpResponse:
        result = apply_workflow(actor=self.actor, tenant=self.tenant, data=data, name=name)
        workflow = result.workflow
        if result.created:
            said = f"Workflow {workflow.name} created: version {result.version.number}."
        elif result.changed:
            said = f"Workflow {workflow.name}: version {result.version.number} applied."
        else:
            said = f"Workflow {workflow.name} unchanged: version {result.version.number} stays."
        messages.success(self.request, said)
        return HttpResponseRedirect(
            reverse("portal:workflow", args=[self.tenant.slug, workflow.name])
        )


# --- deleting ------------------------------------------------------------------------------


class WorkflowDeletePage(TenantForm):
    """What deleting a workflow means, then the API's delete (without force: a workflow
    with active runs is refused with the API's message)."""

    permission = "workflow.edit"
    template_name = "portal/editing/delete.html"
    nav = "workflows"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        workflow = get_workflow(kwargs["workflow"])
        return {
            "title": f"Delete {workflow.name}",
            "workflow": workflow,
            "schedule": schedule_of(workflow),
            # The service's own guards, asked ahead so the page can say so; it asks again.
            "blocked": [reason for guard in DELETE_GUARDS if (reason := guard(workflow))],
            "problems": [message for found in errors.values() for message in found],
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        workflow = delete_workflow(actor=self.actor, workflow=get_workflow(kwargs["workflow"]))
        said = (
            f"Workflow {workflow.name} deleted. Its versions, runs and audit history are kept; "
            "its schedule is stopped and its name is free."
        )
        return reverse("portal:workflows", args=[self.tenant.slug]), said


urlpatterns = [
    path("editor/", WorkflowEditorPage.as_view(), name="workflow-new"),
    path("workflows/<str:workflow>/edit/", WorkflowEditorPage.as_view(), name="workflow-edit"),
    path(
        "workflows/<str:workflow>/delete/",
        WorkflowDeletePage.as_view(),
        name="workflow-delete",
    ),
]
