"""The team page: who is in the tenant and with which role, its service accounts and API
tokens, and its quotas with what is used of them; and the forms that change them.

Every form calls the service the REST API's MemberViewSet, ServiceAccountViewSet and
TokenViewSet call, after the API's own serializer has read what was typed (the same rules
in the same words), and each view's permission is the one the policy names for it. The
services decide the rest: nobody grants a role above their own (Forbidden, a 403 on the
form), the last owner stays (Conflict, a 409).

A new token is shown once, on the answer to the POST that made it (201, `no-store`): it
never travels in a redirect, a message or the session, and no later page can show it.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from rest_framework.serializers import Serializer

from orchestrator import services
from orchestrator.api import serializers as api
from orchestrator.errors import Invalid, NotFound
from orchestrator.integers import ascii_int
from orchestrator.models import ApiToken, Membership, Role, ServiceAccount
from orchestrator.tenancy import tenant_quota
from portal.actions import FieldErrors, TenantForm
from portal.pages import TenantPage, permitted
from runs.models import WorkflowRun
from workflows.selectors import live_workflows

__all__ = [
    "QUOTA_LABELS",
    "QUOTA_NOTES",
    "REVOKED_SHOWN",
    "MemberAddForm",
    "MemberRemoveForm",
    "MemberRoleForm",
    "QuotaRow",
    "ServiceAccountNewForm",
    "TeamForm",
    "TeamPage",
    "TokenNewForm",
    "TokenRevokeForm",
    "all_errors",
    "checked",
    "expiry",
    "grantable",
    "quota_rows",
    "urlpatterns",
]

# What each quota limits, in words; a quota not named here is shown by its key.
QUOTA_LABELS = {
    "max_workflows": "Workflows",
    "max_tasks_per_workflow": "Tasks in one workflow",
    "max_spec_bytes": "Size of one workflow spec (bytes)",
    "max_concurrent_runs": "Runs running at once",
    "max_catchup_runs": "Missed runs caught up at once (catchup: all)",
    "max_tokens": "Live API tokens",
}
# How a quota without one number in use is checked.
QUOTA_NOTES = {
    "max_tasks_per_workflow": "checked for each workflow when its spec is applied",
    "max_spec_bytes": "checked for each workflow when its spec is applied",
    "max_catchup_runs": "checked for each schedule when it catches up on missed intervals",
    "max_tokens": "live tokens, counted for admins",
}
# Revoked tokens stay for the record; the page shows the latest few of them.
REVOKED_SHOWN = 20


@dataclass(frozen=True)
class QuotaRow:
    """One quota: its limit and, where the tenant has one number to compare with it, how
    much is used now (None for limits each workflow or schedule meets on its own)."""

    key: str
    label: str
    limit: int
    used: int | None
    note: str


def quota_rows(quotas: Mapping[str, Any], usage: Mapping[str, tuple[int, str]]) -> list[QuotaRow]:
    """Every quota in the platform's order, its limit as the services read it, and what
    is in use where `usage` has it."""
    return [
        QuotaRow(
            key=key,
            label=QUOTA_LABELS.get(key, key),
            limit=tenant_quota(quotas, key),
            used=usage[key][0] if key in usage else None,
            note=usage[key][1] if key in usage else QUOTA_NOTES.get(key, ""),
        )
        for key in settings.DEFAULT_TENANT_QUOTAS
    ]


def checked(serializer: Serializer[Any]) -> dict[str, Any]:
    """What was typed, read by the API's own serializer: a person gets the rules and the
    words a REST request gets, each next to its field (Invalid)."""
    if not serializer.is_valid():
        raise Invalid(
            (field, str(message))
            for field, messages in serializer.errors.items()
            for message in messages
        )
    return dict(serializer.validated_data)


def expiry(raw: str, now: dt.datetime) -> dt.datetime | None:
    """A token's expiry from the form's "expires in N days" (empty: never)."""
    raw = raw.strip()
    if not raw:
        return None
    days = ascii_int(raw)
    try:
        if days is None or days < 1:
            raise ValueError(raw)
        return now + dt.timedelta(days=days)
    except (ValueError, OverflowError):  # not a number, or past the year 9999
        raise Invalid(
            [("expires_in_days", f"{raw!r}: expected a whole number of days, 1 or more, or empty")]
        ) from None


def all_errors(*steps: Callable[[], Any]) -> list[Any]:
    """Run each step (a callable); the values, or every step's field errors at once."""
    values, errors = [], []
    for step in steps:
        try:
            values.append(step())
        except Invalid as exc:
            errors += exc.errors
    if errors:
        raise Invalid(errors)
    return values


def grantable(role: Role) -> list[str]:
    """The roles someone with `role` may hand out: their own and those below it (the
    service refuses the rest; the form does not offer them)."""
    return [r.value for r in Role if role.includes(r)]


class TeamPage(TenantPage):
    """Members for everyone; service accounts and tokens for those who may see them."""

    permission = "member.view"
    template_name = "portal/team/team.html"
    nav = "team"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        can = permitted(self.role)
        members = list(
            Membership.objects.select_related("user", "user__service_account").order_by(
                "user__username"
            )
        )
        live, revoked = self.tokens() if can["token_view"] else ([], [])
        usage = self.usage()
        if can["token_view"]:
            usage["max_tokens"] = (len(live), "live tokens (revoked ones do not count)")
        return {
            "members": [(m, can["member_manage"] and self.role.includes(m.role)) for m in members],
            "service_accounts": self.service_accounts(members, live)
            if can["service_account_view"]
            else [],
            "tokens": live,
            "revoked_tokens": revoked,
            "quotas": quota_rows(self.tenant.quotas, usage),
            "now": timezone.now(),
        }

    def tokens(self) -> tuple[list[ApiToken], list[ApiToken]]:
        rows = ApiToken.objects.select_related("user", "user__service_account", "created_by")
        live = rows.filter(revoked_at__isnull=True).order_by("-created_at", "-id")
        revoked = rows.filter(revoked_at__isnull=False).order_by("-revoked_at", "-id")
        return list(live), list(revoked[:REVOKED_SHOWN])

    def service_accounts(
        self, members: Iterable[Membership], live: Iterable[ApiToken]
    ) -> list[tuple[ServiceAccount, str | None, int]]:
        """Each account with its role (its membership) and its number of live tokens."""
        roles = {m.user_id: m.role for m in members}
        counts = Counter(token.user_id for token in live)
        accounts = ServiceAccount.objects.select_related("user", "created_by").order_by("name")
        return [(a, roles.get(a.user_id), counts[a.user_id]) for a in accounts]

    def usage(self) -> dict[str, tuple[int, str]]:
        """What is used of the quotas that count the tenant's things, counted as the
        services count them when they enforce the quota."""
        running, queued = WorkflowRun.State.RUNNING, WorkflowRun.State.QUEUED
        runs = WorkflowRun.objects.filter(state__in=[running, queued]).aggregate(
            running=Count("id", filter=Q(state=running)),
            queued=Count("id", filter=Q(state=queued)),
        )
        return {
            "max_workflows": (
                live_workflows().count(),
                "live workflows (deleted ones do not count)",
            ),
            "max_concurrent_runs": (
                runs["running"],
                f"running now; {runs['queued']} more queued, waiting for a slot",
            ),
        }


class TeamForm(TenantForm):
    """A form of the team page, which it returns to."""

    nav = "team"

    def team_url(self, part: str = "") -> str:
        return reverse("portal:team", args=[self.tenant.slug]) + part

    def posted(self, *names: str) -> dict[str, str]:
        """The posted fields the API's serializer reads, and no others (it refuses unknown
        fields, such as the CSRF token)."""
        return {name: self.request.POST[name] for name in names if name in self.request.POST}

    def member(self, username: str) -> Membership:
        found = Membership.objects.select_related("user").filter(user__username=username).first()
        if found is None:
            raise NotFound(f"no member {username!r} in {self.tenant.slug!r}")
        return found


class MemberAddForm(TeamForm):
    """Add a person who already shares a tenant with you (the service's rule and words)."""

    permission = "member.manage"
    template_name = "portal/team/member_add.html"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        return {
            "values": values or {"role": Role.VIEWER.value},
            "errors": errors,
            "roles": grantable(self.role),
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        data = checked(api.MembershipSerializer(data=self.posted("username", "role")))
        membership = services.add_member_by_username(
            actor=self.actor,
            tenant=self.tenant,
            username=data["user"]["username"],
            role=data["role"],
        )
        return (
            self.team_url("#members"),
            f"Added {membership.user.get_username()} as {membership.role}.",
        )


class MemberRoleForm(TeamForm):
    """Change a member's role; lowering it revokes their tokens above the new role."""

    permission = "member.manage"
    template_name = "portal/team/member_role.html"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        member = self.member(kwargs["username"])
        return {
            "member": member,
            "values": values or {"role": member.role},
            "errors": errors,
            "roles": grantable(self.role),
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        member = self.member(kwargs["username"])
        data = checked(api.MembershipUpdateSerializer(data=self.posted("role")))
        member = services.change_member_role(actor=self.actor, membership=member, role=data["role"])
        return self.team_url("#members"), f"{member.user.get_username()} is now {member.role}."


class MemberRemoveForm(TeamForm):
    """Confirm, then remove a member; their tokens in the tenant are revoked with it."""

    permission = "member.manage"
    template_name = "portal/team/member_remove.html"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        member = self.member(kwargs["username"])
        live = ApiToken.objects.filter(user_id=member.user_id, revoked_at__isnull=True)
        return {"member": member, "live_tokens": list(live), "errors": errors}

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        member = self.member(kwargs["username"])
        services.remove_member(actor=self.actor, membership=member)
        name = member.user.get_username()
        if member.user_id == self.actor.user_id:  # they left: the team page is closed to them
            return reverse("portal:tenants"), f"You left {self.tenant.name}."
        return self.team_url("#members"), f"Removed {name} from {self.tenant.name}."


class ServiceAccountNewForm(TeamForm):
    """A user without a login for a CI system or another service; its tokens come next."""

    permission = "service_account.manage"
    template_name = "portal/team/service_account_new.html"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        return {
            "values": values or {"role": Role.VIEWER.value},
            "errors": errors,
            "roles": grantable(self.role),
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        data = checked(
            api.ServiceAccountSerializer(data=self.posted("name", "description", "role"))
        )
        account = services.create_service_account(actor=self.actor, tenant=self.tenant, **data)
        return (
            self.team_url("#service-accounts"),
            f"Service account {account.name} created with role {data['role']}; "
            "give it a token with “New token”.",
        )


class TokenNewForm(TeamForm):
    """Mint a token for yourself or a service account. The answer is the token itself,
    shown on this POST's own response and never again."""

    permission = "token.manage"
    template_name = "portal/team/token_new.html"
    single_use = True
    created: tuple[ApiToken, str] | None = None

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        wanted = self.request.GET.get("service_account", "")
        return {
            "values": values or {"role": Role.VIEWER.value, "service_account": wanted},
            "errors": errors,
            "roles": grantable(self.role),
            "service_accounts": self.accounts(),
        }

    def accounts(self) -> list[tuple[str, str | None]]:
        """The tenant's service accounts with their roles (a token's role is at most its
        holder's)."""
        roles = dict(
            Membership.objects.filter(user__service_account__isnull=False).values_list(
                "user_id", "role"
            )
        )
        return [(a.name, roles.get(a.user_id)) for a in ServiceAccount.objects.order_by("name")]

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        post = self.request.POST
        fields = self.posted("name", "role")
        if account_name := post.get("service_account", ""):
            fields["service_account"] = account_name
        data, expires_at = all_errors(
            lambda: checked(api.TokenSerializer(data=fields)),
            lambda: expiry(post.get("expires_in_days", ""), timezone.now()),
        )
        holder = None
        if account_name := data.pop("service_account", None):
            account = (
                ServiceAccount.objects.select_related("user").filter(name=account_name).first()
            )
            if account is None:
                raise Invalid(
                    [("service_account", f"no service account named {account_name!r} here")]
                )
            holder = account.user
        self.created = services.create_token(
            actor=self.actor, tenant=self.tenant, user=holder, expires_at=expires_at, **data
        )
        return self.team_url("#tokens"), f"API token {data['name']} created."

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """TenantForm's POST (its errors, its message), but a token it made is answered
        here, not by its redirect: the token exists only in this response."""
        response = super().post(request, *args, **kwargs)
        if self.created is None:
            return response  # the form again, with what was wrong
        token, raw = self.created
        shown = TemplateResponse(
            request,
            "portal/team/token_created.html",
            self.page_context() | {"token": token, "raw": raw},
            status=201,
        )
        add_never_cache_headers(shown)  # Cache-Control: no-store, among others
        return shown


class TokenRevokeForm(TeamForm):
    """Confirm, then revoke a token: refused from the next request on; the row stays."""

    permission = "token.manage"
    template_name = "portal/team/token_revoke.html"

    def token(self, prefix: str) -> ApiToken:
        rows = ApiToken.objects.select_related("user", "user__service_account")
        found = rows.filter(prefix=prefix).first()
        if found is None:
            raise NotFound(f"no API token {prefix!r} in {self.tenant.slug!r}")
        return found

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        return {"token": self.token(kwargs["prefix"]), "errors": errors}

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        token = services.revoke_token(actor=self.actor, token=self.token(kwargs["prefix"]))
        return (
            self.team_url("#tokens"),
            f"API token {token.name} (orc_{token.prefix}_…) revoked: it is refused from now on.",
        )


urlpatterns = [
    path("team/", TeamPage.as_view(), name="team"),
    path("team/members/new/", MemberAddForm.as_view(), name="member-add"),
    path("team/members/<str:username>/role/", MemberRoleForm.as_view(), name="member-role"),
    path("team/members/<str:username>/remove/", MemberRemoveForm.as_view(), name="member-remove"),
    path("team/service-accounts/new/", ServiceAccountNewForm.as_view(), name="service-account-new"),
    path("team/tokens/new/", TokenNewForm.as_view(), name="token-new"),
    path("team/tokens/<str:prefix>/revoke/", TokenRevokeForm.as_view(), name="token-revoke"),
]
