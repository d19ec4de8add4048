"""A workflow's inbound webhooks in the portal (docs/events.md, "Webhooks"): the workflow's
page lists what its spec declares (`webhooks_context`), with each one's URL and signing
secrets (prefix and expiry only); editors make a new signing secret, shown once on the
page that answers the POST (never stored, never redirected to, never cached), and revoke
one after a confirmation. Both through the services the API calls."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from events import webhooks
from orchestrator.errors import NotFound
from orchestrator.integers import ascii_int
from portal.actions import FieldErrors, TenantForm
from workflows.models import Workflow
from workflows.selectors import get_workflow

__all__ = [
    "WebhookSecretCreate",
    "WebhookSecretRevoke",
    "urlpatterns",
    "webhooks_context",
]

# How long the older secrets stay valid after a new one is made: (seconds, in words).
OVERLAPS: list[tuple[int, str]] = [
    (86400, "1 day"),
    (3600, "1 hour"),
    (7 * 86400, "7 days"),
    (0, "none: they stop at once"),
]


def webhooks_context(workflow: Workflow) -> dict[str, Any]:
    """What the workflow's page shows of its webhooks (and the key of its new-secret
    forms, so that a resent form makes no second secret)."""
    return {
        "webhooks": webhooks.webhooks_of(workflow),
        "webhook_overlaps": OVERLAPS,
        "webhook_form_key": uuid.uuid4().hex,
        "webhook_header": webhooks.SIGNATURE_HEADER,
    }


def _declared(workflow: Workflow, name: str) -> webhooks.DeclaredWebhook:
    for webhook in webhooks.webhooks_of(workflow):
        if webhook.name == name:
            return webhook
    raise NotFound(f"workflow {workflow.name!r} declares no webhook {name!r}")


class WebhookForm(TenantForm):
    """A form about one declared webhook of a workflow; back to the workflow's page."""

    permission = "webhook.manage"
    nav = "workflows"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        workflow = get_workflow(kwargs["workflow"])
        return {
            "values": values or {},
            "errors": errors,
            "general": [m for path, found in errors.items() if path != "overlap" for m in found],
            "workflow": workflow,
            "webhook": _declared(workflow, kwargs["webhook"]),
        }

    def workflow_url(self, workflow: str) -> str:
        return reverse("portal:workflow", args=[self.tenant.slug, workflow]) + "#webhooks"


class WebhookSecretCreate(WebhookForm):
    """GET: what a new secret does to the older ones, and how long they overlap. POST:
    the page that shows the new secret, this once."""

    template_name = "portal/webhooks/secret_new.html"
    single_use = True
    made: tuple[str, str] | None = None  # (the secret, the URL)

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        context = super().form_context(values=values, errors=errors, **kwargs)
        return context | {"overlaps": OVERLAPS, "header": webhooks.SIGNATURE_HEADER}

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        workflow = get_workflow(kwargs["workflow"])
        given = self.request.POST.get("overlap", "")
        overlap = ascii_int(given) if given else webhooks.DEFAULT_OVERLAP
        webhook, _, secret = webhooks.create_secret(
            actor=self.actor, workflow=workflow, name=kwargs["webhook"], overlap=overlap
        )
        self.made = (secret, webhooks.webhook_url(webhook))
        said = f"Webhook {webhook.name} of {workflow.name} has a new signing secret."
        return self.workflow_url(workflow.name), said

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        done = super().post(request, *args, **kwargs)
        if self.made is None or not isinstance(done, HttpResponseRedirect):
            return done
        secret, url = self.made
        context = self.page_context() | {
            "workflow": get_workflow(kwargs["workflow"]),
            "name": kwargs["webhook"],
            "secret": secret,
            "url": url,
            "header": webhooks.SIGNATURE_HEADER,
        }
        shown = TemplateResponse(request, "portal/webhooks/secret.html", context)
        shown["Cache-Control"] = "no-store"
        return shown


class WebhookSecretRevoke(WebhookForm):
    """GET: which secret stops being accepted, at once. POST: revoke it."""

    template_name = "portal/webhooks/secret_revoke.html"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        context = super().form_context(values=values, errors=errors, **kwargs)
        secret = webhooks.get_secret(context["workflow"], kwargs["webhook"], kwargs["secret"])
        valid = [s for s in context["webhook"].secrets if not s.expired and s.id != secret.pk]
        return context | {"secret": secret, "others_valid": len(valid)}

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        workflow = get_workflow(kwargs["workflow"])
        secret = webhooks.get_secret(workflow, kwargs["webhook"], kwargs["secret"])
        webhooks.delete_secret(actor=self.actor, secret=secret)
        said = f"Signing secret {secret.prefix}… of webhook {kwargs['webhook']} revoked."
        return self.workflow_url(workflow.name), said


urlpatterns = [
    path(
        "workflows/<str:workflow>/webhooks/<str:webhook>/new-secret/",
        WebhookSecretCreate.as_view(),
        name="webhook-secret-new",
    ),
    path(
        "workflows/<str:workflow>/webhooks/<str:webhook>/secrets/<int:secret>/revoke/",
        WebhookSecretRevoke.as_view(),
        name="webhook-secret-revoke",
    ),
]
