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
from typing import Any, ClassVar

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from orchestrator.errors import Conflict, Forbidden, Invalid
from portal.pages import TenantPage

__all__ = ["FieldErrors", "TenantForm", "field_errors", "form_key"]

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


def form_key(request: HttpRequest) -> str:
    """The form's own idempotency key: made when the form is shown, posted back with it,
    so a double click or a resubmitted form does its work once."""
    return request.POST.get("form_key") or uuid.uuid4().hex


class TenantForm(TenantPage):
    """GET: the form (`form_context`). POST: `perform()`, then a redirect to its answer
    with a success message; on a domain error the form again, with the error where it
    belongs and what was typed kept."""

    http_method_names: ClassVar[list[str]] = ["get", "post", "head"]  # type: ignore[misc]

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
            url, said = self.perform(**kwargs)
        except Invalid as exc:
            return self.again(field_errors(exc.errors, self.error_prefix), 400, **kwargs)
        except Conflict as exc:
            return self.again({"": [exc.message]}, 409, **kwargs)
        except Forbidden as exc:  # e.g. granting a role above one's own: the API's 403
            return self.again({"": [exc.message]}, 403, **kwargs)
        messages.success(request, said)
        return HttpResponseRedirect(url)

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
