"""What every portal page stands on: who is signed in, which tenant the URL names, whether
the policy lets them see the page, and the tenant scope their reads run in.

A page reads through the apps' selectors inside the tenant's scope, exactly as the API's
TenantScopedViewSet does, so it can never show what the API would refuse: a tenant the user
is not a member of is a 404 (as if it did not exist), a page their role may not see a 403.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from django.contrib.auth.views import redirect_to_login
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.template.response import SimpleTemplateResponse, TemplateResponse
from django.utils.dateparse import parse_datetime
from django.views import View

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Forbidden, Invalid, NotFound
from orchestrator.models import Membership, Role, Tenant
from orchestrator.policy import PERMISSIONS, authorize
from orchestrator.selectors import memberships_of

__all__ = [
    "KeysetPage",
    "TenantPage",
    "fingerprint",
    "forbidden",
    "is_htmx",
    "keyset_page",
    "not_found",
    "permitted",
    "portal_actor",
    "time_filter",
    "unchanged",
]

M = TypeVar("M", bound=Model)
T = TypeVar("T")


def portal_actor(request: HttpRequest) -> Actor:
    return Actor(
        user=request.user, source="portal", request_id=getattr(request, "request_id", None)
    )


def forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "portal/403.html", {"message": message}, status=403)


def not_found(request: HttpRequest) -> HttpResponse:
    """The portal's own 404 page, with DEBUG on too (Django's debug page would list the
    URLconf); it says the same whether the thing is missing or another tenant's."""
    return render(request, "404.html", status=404)


class TenantPage(View):
    """A page under /t/<tenant>/. Subclasses set `permission` (the policy's name for what
    the page shows), `template_name` and `nav`, and return their context from `context()`;
    both run inside the tenant's scope, and so does the template's rendering."""

    permission: ClassVar[str]
    template_name: ClassVar[str]
    # What an htmx request (a live part refreshing itself) gets instead of the whole page.
    part_template_name: ClassVar[str | None] = None
    nav: ClassVar[str] = ""
    http_method_names: ClassVar[list[str]] = ["get", "head"]  # type: ignore[misc]

    actor: Actor
    tenant: Tenant
    role: Role
    memberships: list[Membership]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        self.actor = portal_actor(request)
        # One query answers the switcher, the tenant and the role (the policy reads the
        # role from actor.memberships instead of asking again).
        self.memberships = list(memberships_of(self.actor))
        slug = kwargs.pop("tenant")
        membership = next((m for m in self.memberships if m.tenant.slug == slug), None)
        if membership is None:
            return not_found(request)
        for m in self.memberships:
            self.actor.memberships[m.tenant_id] = m.role
        self.tenant = membership.tenant
        with tenant_scope([self.tenant]):
            try:
                self.role = authorize(self.actor, self.permission, self.tenant)
                response = super().dispatch(request, *args, **kwargs)
                if isinstance(response, SimpleTemplateResponse):
                    response.render()
            except (NotFound, Http404):
                return not_found(request)
            except Forbidden as exc:
                return forbidden(request, exc.message)
        return response

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            context = self.context(**kwargs)
        except Invalid as exc:
            context = {"errors": exc.errors} | self.context_after_error(**kwargs)
        if isinstance(context, HttpResponse):
            return context
        template = self.template_name
        if self.part_template_name and is_htmx(request):
            template = self.part_template_name
        return TemplateResponse(request, template, self.page_context() | context)

    def context(self, **kwargs: Any) -> dict[str, Any] | HttpResponse:
        return {}

    def context_after_error(self, **kwargs: Any) -> dict[str, Any]:
        """What to show when `context` refused the request's filters (Invalid)."""
        return {}

    def page_context(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "role": self.role,
            "memberships": self.memberships,
            "nav": self.nav,
            "can": permitted(self.role),
        }


def permitted(role: Role) -> dict[str, bool]:
    """`{% if can.audit_view %}`: whether the role holds each of the policy's permissions
    (dots written as underscores), so a page shows only the links its reader may follow.
    The server still decides on every request; this only hides what would be refused."""
    return {name.replace(".", "_"): role.includes(needed) for name, needed in PERMISSIONS.items()}


def is_htmx(request: HttpRequest) -> bool:
    """Whether htmx sent the request (django-htmx's `request.htmx`): a part refreshing."""
    return bool(getattr(request, "htmx", False))


def time_filter(request: HttpRequest, name: str) -> dt.datetime | None:
    """A filter's time from `?name=`: what an <input type="datetime-local"> sends (read as
    UTC, as the pages show times) or an ISO 8601 time with its offset."""
    raw = request.GET.get(name, "").strip()
    if not raw:
        return None
    try:
        value = parse_datetime(raw)
    except ValueError:
        value = None
    if value is None:
        raise Invalid([(name, f"{raw!r} is not a time; expected e.g. 2026-01-31T08:00 (UTC)")])
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def fingerprint(*parts: object) -> str:
    """A short digest of what a live part shows, for `unchanged`."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=8).hexdigest()


def unchanged(request: HttpRequest, fingerprint: str) -> HttpResponse | None:
    """A live part polls with `?seen=<fingerprint>` of what it shows; when nothing changed
    it gets an empty 204, which htmx leaves unswapped (and costs no rendering)."""
    if request.GET.get("seen") == fingerprint:
        response = HttpResponse(status=204)
        response["Cache-Control"] = "no-store"
        return response
    return None


@dataclass(frozen=True)
class KeysetPage(Generic[T]):
    """One page of a list ordered by a unique key: `items` and the cursor of the next page
    (None on the last). Keyset paging costs the same on page 1 and page 10,000."""

    items: Sequence[T]
    next_cursor: str | None


def keyset_page(
    queryset: QuerySet[M],
    *,
    key: str,
    descending: bool,
    cursor: str | None,
    size: int,
    parse: Callable[[str], Any] = str,
) -> KeysetPage[M]:
    """Rows after `cursor` (the last key of the previous page) in key order."""
    qs = queryset.order_by(f"-{key}" if descending else key)
    if cursor:
        try:
            after = parse(cursor)
        except ValueError:
            raise Invalid([("cursor", "invalid cursor: follow the page's own links")]) from None
        qs = qs.filter(**{f"{key}__{'lt' if descending else 'gt'}": after})
    rows = list(qs[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return KeysetPage(rows, str(getattr(rows[-1], key)) if more else None)
