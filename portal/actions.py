"""What every portal form stands on: a page under /t/<tenant>/ that shows a form (or a
confirmation) on GET and does one thing on POST, through the same service the API calls.

The server decides, always: the view's `permission` is checked before anything is shown or
done (403 when the role is too low), the service checks its own again, CSRF is Django's,
and every change is audited by the service with the source `portal` (the actor says so).
A domain error becomes what a person can act on: Invalid is shown next to its field (by
the path the API would report), Conflict and Forbidden as a message on the form, NotFound
as a 404."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any, ClassVar

from django.contrib import messages
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from orchestrator.errors import Conflict, Forbidden, Invalid
from orchestrator.ratelimit import TRIGGERS, RateLimited, charge_caller, charge_tenant, scope_of
from portal.pages import TenantPage

__all__ = ["FieldErrors", "TenantForm", "by_field", "field_errors", "form_key"]

FieldErrors = dict[str, list[str]]


def field_errors(errors: list[tuple[str, str]], prefix: str = "") -> FieldErrors:
    """The API's problem paths (`params.region`, `tasks.load.command`) by the form field
    they belong to: the path without `prefix` (`params.`); a path of no field is kept whole
    under "" (shown above the form)."""
    found: FieldErrors = {}
    for path, message in errors:
        name = path[len(prefix) :] if prefix and path.startswith(prefix) else path
        found.setdefault(name, []).append(message)
    return found


def by_field(errors: FieldErrors, fields: Collection[str]) -> FieldErrors:
    """The service's paths by the form's fields: `recipients[1]` and `data.x` belong to
    `recipients` and `data`; a path of no field goes above the form ("") with its path
    said."""
    found: FieldErrors = {}
    for problem, said in errors.items():
        name = problem.split("[", 1)[0].split(".", 1)[0]
        if name in fields:
            found.setdefault(name, []).extend(said)
        else:
            found.setdefault("", []).extend(f"{problem}: {m}" if problem else m for m in said)
    return found


def form_key(request: HttpRequest) -> str:
    """The form's own idempotency key: made when the form is shown, posted back with it,
    so a double click or a resubmitted form does its work once."""
    return request.POST.get("form_key") or uuid.uuid4().hex


class TenantForm(TenantPage):
    """GET: the form (`form_context`). POST: `perform()`, then a redirect to its answer
    with a success message; on a domain error the form again, with the error where it
    belongs and what was typed kept."""

    http_method_names: ClassVar[list[str]] = ["get", "post", "head"]  # type: ignore[misc]
    # The API's action this form is (e.g. "create" for a trigger): a form that starts
    # runs draws on the same trigger budgets as the API's request would (per user and per
    # tenant, orchestrator/ratelimit.py), so a browser is no way around them.
    api_action: ClassVar[str | None] = None
    # A form whose answer cannot be shown twice (a token or a secret, shown once): the key
    # each rendering of it carries (`form_key`) is taken on its first POST, so a reload
    # that sends it again is refused instead of making a second one.
    single_use: ClassVar[bool] = False

    def context(self, **kwargs: Any) -> dict[str, Any] | HttpResponse:
        return self.form_context(values=None, errors={}, **kwargs)

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any] | HttpResponse:
        """What the form page shows; `values` are what was posted (None on GET)."""
        return {"values": values or {}, "errors": errors}

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        """Do it: (the URL to go to, the message to say there)."""
        raise NotImplementedError

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            self.charge_trigger_budget()
        except RateLimited as limited:
            response = self.again({"": [limited.message]}, 429, **kwargs)
            response["Retry-After"] = str(limited.retry_after)
            return response
        if self.single_use and not self.take_form_key():
            already = "this form was sent already; what it made was shown once: start again"
            return self.again({"": [already]}, 409, **kwargs)
        try:
            url, said = self.perform(**kwargs)
        except Invalid as exc:
            return self.again(field_errors(exc.errors, self.error_prefix), 400, **kwargs)
        except Conflict as exc:
            return self.again({"": [exc.message]}, 409, **kwargs)
        except Forbidden as exc:  # e.g. granting a role above one's own: the API's 403
            return self.again({"": [exc.message]}, 403, **kwargs)
        messages.success(request, said)
        return HttpResponseRedirect(url)

    def page_context(self) -> dict[str, Any]:
        return super().page_context() | {"form_key": uuid.uuid4().hex}

    def take_form_key(self) -> bool:
        """False when this form's key was posted before (a day's memory is enough: a
        rendering older than that is not reloaded)."""
        key = self.request.POST.get("form_key", "")
        if not key:
            return True  # a form without a key (a script): nothing to repeat by accident
        return bool(cache.add(f"portal:form-taken:{self.actor.user_id}:{key}", 1, 86400))

    def charge_trigger_budget(self) -> None:
        """Raises RateLimited when this form starts runs and a trigger budget is spent."""
        if scope_of(self.permission, self.api_action) != TRIGGERS:
            return
        charge_caller(user_id=self.actor.user_id, token=None, scope=TRIGGERS)
        charge_tenant(self.tenant, TRIGGERS)

    # What the API's problem paths start with that the form's field names do not.
    error_prefix: ClassVar[str] = ""

    def again(self, errors: FieldErrors, status: int, **kwargs: Any) -> HttpResponse:
        """The form again, with the errors and what was typed (the status the API gives)."""
        context = self.form_context(values=self.request.POST.dict(), errors=errors, **kwargs)
        if isinstance(context, HttpResponse):
            return context
        return TemplateResponse(
            self.request, self.template_name, self.page_context() | context, status=status
        )
