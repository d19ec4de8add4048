"""Sharing between tenants in the portal (docs/events.md, "Sharing between tenants"): the
grants this tenant gave (what other tenants may see of it) and received (what they share
with it), for every member; an admin shares a workflow's events or a dataset with another
tenant and revokes what this tenant gave, through the services the API calls. A grant
received is the other tenant's to revoke: it has no button here, and its revoke page is a
404."""

from __future__ import annotations

from typing import Any, ClassVar

from django.urls import path, reverse

from orchestrator.errors import NotFound
from orchestrator.grants import ANY, create_grant, delete_grant, grants_of
from orchestrator.integers import ascii_int
from orchestrator.models import Grant
from portal.actions import FieldErrors, TenantForm, by_field
from portal.pages import TenantPage
from workflows.selectors import live_workflows

__all__ = ["GrantCreate", "GrantRevoke", "SharingPage", "urlpatterns"]

FIELDS = ("grantee", "kind", "name")


def _choices() -> dict[str, Any]:
    """What the share form offers: the kinds, and the workflows' names to pick from."""
    return {
        "kinds": Grant.Kind.choices,
        "workflow_names": list(live_workflows().order_by("name").values_list("name", flat=True)),
        "any": ANY,
    }


class SharingPage(TenantPage):
    """Both directions, newest first, and (for admins) the share form."""

    permission = "grant.view"
    template_name = "portal/sharing/sharing.html"
    nav = "sharing"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        return _choices() | {
            "given": list(grants_of(self.tenant, "given")),
            "received": list(grants_of(self.tenant, "received")),
            "values": {"kind": Grant.Kind.EVENTS},
            "errors": {},
        }


class GrantCreate(TenantForm):
    """GET: the form alone; POST: share, then back to the sharing page."""

    permission = "grant.manage"
    template_name = "portal/sharing/grant_form.html"
    nav = "sharing"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        return _choices() | {
            "values": {"kind": Grant.Kind.EVENTS} if values is None else values,
            "errors": errors,
            "general": errors.get("", []),
        }

    def again(self, errors: FieldErrors, status: int, **kwargs: Any) -> Any:
        return super().again(by_field(errors, FIELDS), status, **kwargs)

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        post = self.request.POST
        grant = create_grant(
            actor=self.actor,
            tenant=self.tenant,
            grantee=post.get("grantee", "").strip(),
            kind=post.get("kind", ""),
            name=post.get("name", "").strip(),
        )
        what = "all workflows' events" if grant.kind == Grant.Kind.EVENTS else "all datasets"
        if grant.name != ANY:
            what = f"the events of {grant.name}" if grant.kind == Grant.Kind.EVENTS else grant.name
        return self.sharing_url(), f"{grant.grantee.slug} now sees {what}."

    def sharing_url(self) -> str:
        return reverse("portal:sharing", args=[self.tenant.slug])


class GrantRevoke(GrantCreate):
    """GET: what revoking stops; POST: revoke. Only a grant this tenant gave."""

    template_name = "portal/sharing/grant_revoke.html"
    fields: ClassVar[tuple[str, ...]] = ()

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        return {"grant": self.grant(kwargs["grant"]), "general": errors.get("", [])}

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        grant = self.grant(kwargs["grant"])
        delete_grant(actor=self.actor, grant=grant)
        return self.sharing_url(), f"{grant.grantee.slug} no longer sees {grant.kind} {grant.name}."

    def grant(self, raw: str) -> Grant:
        grant_id = ascii_int(raw)
        found = grants_of(self.tenant, "given").filter(pk=grant_id).first() if grant_id else None
        if found is None:
            raise NotFound(f"no grant {raw} given by {self.tenant.slug!r}")
        return found


urlpatterns = [
    path("sharing/", SharingPage.as_view(), name="sharing"),
    path("sharing/new/", GrantCreate.as_view(), name="grant-new"),
    path("sharing/<str:grant>/revoke/", GrantRevoke.as_view(), name="grant-revoke"),
]
