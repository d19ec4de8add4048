"""Test support shared by every app: teams with one member and one API token per role, API
helpers, and `EndpointSuite`, the generic checks every REST endpoint's tests inherit
(DESIGN.md section 9: role too low -> 403, another tenant -> 404, bad credentials -> 401,
each change audited once).

    class TestMembersEndpoint(EndpointSuite):
        cases = [
            EndpointCase("list", "GET", "/api/v1/tenants/{tenant}/members/", "viewer"),
            EndpointCase("remove", "DELETE", "/api/v1/tenants/{tenant}/members/{username}/",
                         "admin", status=204, setup=a_viewer, audit_action="membership.delete"),
        ]

Tests never share objects: each makes its tenants, then `setup` makes the target in them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from string import Formatter
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone

from orchestrator import services, tokens
from orchestrator.actors import Actor
from orchestrator.models import ROLE_ORDER, ApiToken, AuditEvent, Tenant, TenantOwnedModel

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

__all__ = [
    "BAD_CREDENTIALS",
    "ROLES",
    "EndpointCase",
    "EndpointSuite",
    "Team",
    "allow_flush_of_append_only_tables",
    "api",
    "assert_problem",
    "audit_count",
    "bad_credential",
    "for_cases",
    "gql",
    "gql_error",
    "make_member",
    "make_team",
    "make_teammate",
    "make_token",
    "make_user",
    "new_audit_events",
    "send",
    "set_policy",
    "tenant_state",
    "token_row",
]

ROLES: tuple[str, ...] = tuple(r.value for r in ROLE_ORDER)
BAD_CREDENTIALS = ("missing", "malformed", "unknown", "expired", "revoked")
# Bookkeeping that changes on a mere read; not a change of state.
VOLATILE_FIELDS = frozenset({"last_used_at"})
_serial = itertools.count(1)


# --- factories ------------------------------------------------------------------------


@dataclass
class Team:
    """A tenant with one member per role (`users`) and an API token per role (`tokens`)."""

    tenant: Tenant
    users: dict[str, User]
    tokens: dict[str, str]

    @property
    def slug(self) -> str:
        return self.tenant.slug

    @property
    def owner(self) -> User:
        return self.users["owner"]


def make_user(username: str | None = None) -> User:
    """A user without a password (hashing one would slow every test down)."""
    user = User(username=username or f"user-{next(_serial)}")
    user.set_unusable_password()
    user.save()
    return user


def make_token(tenant: Tenant, user: User, role: str, name: str = "", **kwargs: Any) -> str:
    _, raw = services.create_token(
        actor=Actor.cli(),
        tenant=tenant,
        name=name or f"{role} token",
        role=role,
        user=user,
        **kwargs,
    )
    return raw


def make_member(tenant: Tenant, role: str, username: str | None = None) -> User:
    user = make_user(username)
    services.add_member(actor=Actor.cli(), tenant=tenant, user=user, role=role)
    return user


def make_teammate(team: Team) -> User:
    """A new user who shares a tenant of their own with every member of `team` (and is not
    in the team's tenant): someone the team's admins may add (members/ adds only people
    who already share a tenant with whoever adds them)."""
    user = make_user()
    side = services.create_tenant(
        actor=Actor.cli(), slug=f"side-{next(_serial)}", name="Side", owner=user
    )
    for member in team.users.values():
        services.add_member(actor=Actor.cli(), tenant=side, user=member, role="viewer")
    return user


def make_team(slug: str | None = None, roles: Sequence[str] = ROLES) -> Team:
    """A tenant made through the services, as the CLI would: an owner and a member of each
    of `roles`, named `<slug>-<role>`, each with an API token of their role."""
    slug = slug or f"team-{next(_serial)}"
    owner = make_user(f"{slug}-owner")
    tenant = services.create_tenant(actor=Actor.cli(), slug=slug, name=slug.title(), owner=owner)
    users = {"owner": owner}
    users.update({r: make_member(tenant, r, f"{slug}-{r}") for r in roles if r != "owner"})
    return Team(tenant, users, {r: make_token(tenant, u, r) for r, u in users.items()})


def token_row(raw: str) -> ApiToken:
    return ApiToken.objects.dangerously_unscoped().get(prefix=tokens.parse(raw))


def bad_credential(team: Team, kind: str) -> str | None:
    """A credential of the given kind (one of BAD_CREDENTIALS) that must be refused."""
    raw = team.tokens["owner"]
    rows = ApiToken.objects.dangerously_unscoped().filter(prefix=tokens.parse(raw))
    if kind == "expired":
        rows.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    elif kind == "revoked":
        rows.update(revoked_at=timezone.now())
    elif kind == "unknown":
        raw = tokens.generate()[1]
    elif kind == "malformed":
        raw = "orc_not-a-token"
    elif kind == "missing":
        return None
    else:
        raise ValueError(f"unknown credential kind {kind!r}; accepted: {BAD_CREDENTIALS}")
    return raw


# --- clients and assertions -----------------------------------------------------------


def api(token: str | None = None, **headers: str) -> Client:
    """A test client that sends `Authorization: Bearer <token>` (none when token is None)."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return Client(headers=headers)


def send(token: str | None, method: str, url: str, body: Any = None) -> Response:
    """One JSON request; `body` is encoded unless it is already a string."""
    data = body if body is None or isinstance(body, str) else json.dumps(body)
    return api(token).generic(method, url, data or "", content_type="application/json")


def gql(token: str | None, query: str, variables: Mapping[str, Any] | None = None) -> Response:
    body = {"query": query, "variables": dict(variables or {})}
    return api(token).post("/graphql", body, content_type="application/json")


def gql_error(response: Response) -> dict[str, Any]:
    """The one error of a GraphQL answer (fails when there is none, or several)."""
    [error] = response.json()["errors"]
    return dict(error)


def assert_problem(response: Response, status: int, path: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem with this status (and an error at `path`, when given)."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:orchestrator:problem:")
    assert body["title"]
    assert body["detail"]
    if path is not None:
        assert path in [e["path"] for e in body["errors"]], body
    return body


def audit_count(tenant: Tenant) -> int:
    return AuditEvent.objects.dangerously_unscoped().filter(tenant=tenant).count()


def new_audit_events(tenant: Tenant, after_count: int) -> list[AuditEvent]:
    """The tenant's events appended after it had `after_count` (its chain counts from 1)."""
    events = AuditEvent.objects.dangerously_unscoped().filter(tenant=tenant)
    return list(events.filter(seq__gt=after_count).order_by("seq"))


def tenant_state(tenant: Tenant) -> dict[str, Any]:
    """Everything a request could change in a tenant: its row, every tenant-owned row and
    the audit count. Equal before and after means the request changed nothing."""
    state: dict[str, Any] = {
        "tenant": list(Tenant.objects.filter(pk=tenant.pk).values()),
        "audit_events": audit_count(tenant),
    }
    for model in apps.get_models():
        if issubclass(model, TenantOwnedModel):
            rows = model._base_manager.filter(tenant=tenant).order_by("pk").values()
            state[model._meta.label] = [
                {k: v for k, v in row.items() if k not in VOLATILE_FIELDS} for row in rows
            ]
    return state


# --- the generic endpoint suite -------------------------------------------------------

UrlKwargs = dict[str, str]


@dataclass(frozen=True)
class EndpointCase:
    """One endpoint action. `url` has `{tenant}` and the placeholders `setup` returns values
    for; `setup(team)` makes the target object in that team's tenant; `body` is JSON or
    `body(team)` building it. `audit_action` is the one event a success writes (None: a read).
    """

    name: str
    method: str
    url: str
    min_role: str
    status: int = 200
    body: Any = None
    setup: Callable[[Team], UrlKwargs] | None = None
    audit_action: str | None = None

    def __post_init__(self) -> None:
        assert self.min_role in ROLES, f"{self.name}: unknown role {self.min_role!r}"

    @property
    def changes_state(self) -> bool:
        return self.audit_action is not None

    @property
    def placeholders(self) -> set[str]:
        return {name for _, name, _, _ in Formatter().parse(self.url) if name}

    @property
    def in_tenant(self) -> bool:
        return "tenant" in self.placeholders

    @property
    def has_object(self) -> bool:
        return bool(self.placeholders - {"tenant"})

    def prepare(self, team: Team) -> tuple[UrlKwargs, Any]:
        """The target's URL kwargs and the request body, both made fresh in `team`."""
        kwargs = self.setup(team) if self.setup is not None else {}
        body = self.body(team) if callable(self.body) else self.body
        return kwargs, body

    def url_for(self, team: Team, kwargs: UrlKwargs) -> str:
        return self.url.format(tenant=team.slug, **kwargs)

    def denied_roles(self) -> Sequence[str]:
        return ROLES[: ROLES.index(self.min_role)]

    def allowed_roles(self) -> Sequence[str]:
        return ROLES[ROLES.index(self.min_role) :]


_F = TypeVar("_F", bound=Callable[..., Any])


def for_cases(predicate: Callable[[EndpointCase], bool]) -> Callable[[_F], _F]:
    """Run a suite test only for the cases this predicate accepts."""

    def mark(test: _F) -> _F:
        setattr(test, "case_filter", predicate)  # noqa: B010 (a function attribute)
        return test

    return mark


# Parameters a suite test may ask for, and their values for one case.
_AXES: dict[str, Callable[[EndpointCase], Sequence[str]]] = {
    "denied_role": EndpointCase.denied_roles,
    "allowed_role": EndpointCase.allowed_roles,
    "credential": lambda case: BAD_CREDENTIALS,
}


class EndpointSuite:
    """Subclass as `Test...` and list `cases`; every test below runs for every case (and
    role or credential) it applies to. Each test makes its own tenants ("acme" and, for
    isolation, "globex"), with an owner and the role under test only, to stay fast."""

    cases: ClassVar[Sequence[EndpointCase]] = ()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "case" not in metafunc.fixturenames:
            return
        accepts = getattr(metafunc.function, "case_filter", lambda case: True)
        axes = [name for name in _AXES if name in metafunc.fixturenames]
        params = [
            pytest.param(case, *values, id="-".join([case.name, *values]))
            for case in self.cases
            if accepts(case)
            for values in itertools.product(*(_AXES[a](case) for a in axes))
        ]
        metafunc.parametrize(["case", *axes], params)

    def test_it_forbids_roles_below_the_minimum(
        self, db: None, case: EndpointCase, denied_role: str
    ) -> None:
        team = make_team("acme", roles=[denied_role])
        kwargs, body = case.prepare(team)
        before = tenant_state(team.tenant)
        response = send(team.tokens[denied_role], case.method, case.url_for(team, kwargs), body)
        assert_problem(response, 403)
        assert tenant_state(team.tenant) == before

    def test_it_allows_roles_at_or_above_the_minimum_and_audits_each_change_once(
        self, db: None, case: EndpointCase, allowed_role: str
    ) -> None:
        team = make_team("acme", roles=[allowed_role])
        kwargs, body = case.prepare(team)
        count = audit_count(team.tenant)
        raw = team.tokens[allowed_role]
        response = send(raw, case.method, case.url_for(team, kwargs), body)
        assert response.status_code == case.status, response.content
        events = new_audit_events(team.tenant, count)
        if not case.changes_state:
            assert events == []
            return
        [event] = events
        assert event.action == case.audit_action
        assert event.tenant_id == team.tenant.pk
        assert event.actor_id == team.users[allowed_role].pk
        assert event.token_prefix == tokens.parse(raw)
        assert event.source == "api"
        assert event.request_id == response["X-Request-ID"]
        assert set(event.changes) >= {"before", "after"}
        assert event.changes["before"] or event.changes["after"]

    @for_cases(lambda case: case.in_tenant)
    def test_it_hides_another_tenant_and_its_objects(self, db: None, case: EndpointCase) -> None:
        team, outsider = make_team("acme", roles=[]), make_team("globex", roles=[])
        kwargs, body = case.prepare(outsider)
        before = tenant_state(team.tenant), tenant_state(outsider.tenant)
        urls = [case.url_for(outsider, kwargs)]  # tenant A's token on tenant B's URL
        if case.has_object:
            urls.append(case.url_for(team, kwargs))  # B's object addressed under A
        for url in urls:
            assert_problem(send(team.tokens["owner"], case.method, url, body), 404)
            assert (tenant_state(team.tenant), tenant_state(outsider.tenant)) == before

    def test_it_refuses_bad_credentials(
        self, db: None, case: EndpointCase, credential: str
    ) -> None:
        team = make_team("acme", roles=[])
        kwargs, body = case.prepare(team)
        raw = bad_credential(team, credential)
        before = tenant_state(team.tenant)
        response = send(raw, case.method, case.url_for(team, kwargs), body)
        assert_problem(response, 401)
        assert response["WWW-Authenticate"].startswith("Bearer ")
        assert tenant_state(team.tenant) == before


# --- transactional tests --------------------------------------------------------------


# pg_trigger.tgtype bit of TRUNCATE triggers.
_TRUNCATE_TRIGGERS = """
    SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    WHERE NOT t.tgisinternal AND t.tgtype & 32 <> 0
"""


@pytest.fixture(scope="session")
def allow_flush_of_append_only_tables(django_db_setup: None, django_db_blocker: Any) -> None:
    """Append-only tables (the audit log, workflow versions) refuse TRUNCATE, and so Django's
    `flush`, which ends every transactional test. Lift those triggers in the test database
    only; UPDATE and DELETE stay refused. Every transactional test needs it: tests/conftest.py
    requests it for them automatically."""
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(_TRUNCATE_TRIGGERS)
        for table, trigger in cursor.fetchall():
            qn = connection.ops.quote_name
            cursor.execute(f"ALTER TABLE {qn(table)} DISABLE TRIGGER {qn(trigger)}")


def set_policy(tenant: Tenant, **keys: Any) -> Tenant:
    """Change keys of a tenant's policy as platform staff do in the admin (the same
    service: validated and audited). A key set to None is kept as None."""
    return services.update_tenant(
        actor=Actor.cli(), tenant=tenant, policy={**tenant.policy, **keys}
    )
