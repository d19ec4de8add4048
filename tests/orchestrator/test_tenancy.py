"""Tenant isolation that fails closed: scoped querysets refuse to run without a tenant,
another tenant's objects are a 404 (REST) or NOT_FOUND and null (GraphQL), tokens are
bound to their tenant, archived tenants disappear."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from orchestrator import services
from orchestrator.api.base import TenantScopedViewSet
from orchestrator.context import TenantScopeMissing, current_tenant_ids, tenant_scope
from orchestrator.models import ApiToken, AuditEvent, Membership, Tenant
from tests.harness import Team, assert_problem, gql, send, token_row


@pytest.mark.parametrize("model", [Membership, ApiToken, AuditEvent])
def test_it_refuses_to_query_tenant_rows_without_a_tenant_in_scope(team: Team, model: Any) -> None:
    with pytest.raises(TenantScopeMissing):
        model.objects.count()


def test_it_scopes_querysets_to_the_tenants_in_scope(team: Team, outsider: Team) -> None:
    with tenant_scope([outsider.tenant]):
        assert [m.user.username for m in Membership.objects.all()] == ["globex-owner"]
    with tenant_scope([team.tenant.pk, outsider.tenant.pk]):
        assert Membership.objects.count() == 6
    assert Membership.objects.dangerously_unscoped().count() == 6


def test_it_refuses_a_viewset_that_overrides_get_queryset() -> None:
    with pytest.raises(ImproperlyConfigured, match="safely_get_queryset"):

        class Leaky(TenantScopedViewSet):
            def get_queryset(self) -> Any:
                return Membership.objects.dangerously_unscoped()


def test_it_never_deletes_a_tenant(team: Team) -> None:
    with pytest.raises(TypeError):
        team.tenant.delete()
    assert Tenant.objects.filter(pk=team.tenant.pk).exists()


@pytest.fixture
def member_of_both(team: Team, outsider: Team) -> str:
    """Tenant A's owner token, its holder also an owner of tenant B."""
    Membership.objects.dangerously_unscoped().create(
        tenant=outsider.tenant, user=team.owner, role="owner"
    )
    return team.tokens["owner"]


def test_it_binds_a_token_to_its_tenant_over_rest(member_of_both: str, outsider: Team) -> None:
    for path in ("", "members/", "tokens/", "service-accounts/", "audit-events/"):
        assert_problem(send(member_of_both, "GET", f"/api/v1/tenants/{outsider.slug}/{path}"), 404)
    body = {"name": "Taken over"}
    assert_problem(send(member_of_both, "PATCH", f"/api/v1/tenants/{outsider.slug}/", body), 404)
    listed = send(member_of_both, "GET", "/api/v1/tenants/").json()["results"]
    assert [t["slug"] for t in listed] == ["acme"]
    memberships = send(member_of_both, "GET", "/api/v1/me").json()["memberships"]
    assert [m["tenant"] for m in memberships] == ["acme"]


def test_it_binds_a_token_to_its_tenant_over_graphql(member_of_both: str, outsider: Team) -> None:
    body = gql(member_of_both, "query($s: String!) { tenant(slug: $s) { slug } }", {"s": "globex"})
    assert body.json()["data"] == {"tenant": None}
    assert body.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    listed = gql(member_of_both, "{ tenants { slug } me { memberships { tenant } } }").json()
    assert listed["data"]["tenants"] == [{"slug": "acme"}]
    assert listed["data"]["me"]["memberships"] == [{"tenant": "acme"}]
    mutation = gql(
        member_of_both,
        'mutation { removeMember(tenant: "globex", username: "globex-owner") }',
    ).json()
    assert mutation["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_it_hides_an_archived_tenant_everywhere(team: Team) -> None:
    team.tenant.archived_at = team.tenant.created_at
    team.tenant.save()
    raw = team.tokens["owner"]
    assert_problem(send(raw, "GET", f"/api/v1/tenants/{team.slug}/"), 404)
    assert_problem(send(raw, "GET", f"/api/v1/tenants/{team.slug}/audit-events/"), 404)
    assert send(raw, "GET", "/api/v1/tenants/").json()["results"] == []
    assert gql(raw, "{ tenants { slug } }").json()["data"] == {"tenants": []}
    assert send(raw, "GET", "/api/v1/me").json()["memberships"] == []


def test_it_leaves_no_tenant_in_scope_after_a_request(team: Team) -> None:
    response = send(team.tokens["viewer"], "GET", f"/api/v1/tenants/{team.slug}/members/")
    assert response.status_code == 200
    with pytest.raises(TenantScopeMissing):
        current_tenant_ids()


def test_it_leaves_no_tenant_in_scope_after_a_request_fails(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(**kwargs: Any) -> None:
        raise RuntimeError("the service broke")

    monkeypatch.setattr(services, "revoke_token", fail)
    prefix = token_row(team.tokens["viewer"]).prefix
    with pytest.raises(RuntimeError, match="the service broke"):
        send(team.tokens["admin"], "DELETE", f"/api/v1/tenants/{team.slug}/tokens/{prefix}/")
    with pytest.raises(TenantScopeMissing):
        current_tenant_ids()


@pytest.mark.parametrize(
    ("policy", "path", "message"),
    [
        ({"task_network": "wifi"}, "policy.task_network", "egress (default) or none"),
        ({"task_limits": {"memory_mb": 0}}, "policy.task_limits.memory_mb", "positive integer"),
        ({"task_limits": {"swap": 1}}, "policy.task_limits.swap", "unknown limit; accepted:"),
        ({"task_mounts": [{"path": "data"}]}, "policy.task_mounts[0].path", "absolute"),
        ({"task_mounts": [{"path": "/srv/../etc"}]}, "policy.task_mounts[0].path", "normalised"),
        ({"task_mounts": [{"path": "/usr/x"}]}, "policy.task_mounts[0].path", "/usr/x would"),
        ({"task_mounts": [{"path": "/home/task"}]}, "policy.task_mounts[0].path", "would hide"),
        ({"task_mounts": [{"path": "/srv", "mode": "rw"}]}, "policy.task_mounts[0]", "each {"),
        ({"task_queue": "bad queue"}, "policy.task_queue", "letters, digits"),
        ({"task_queue": "housekeeping"}, "policy.task_queue", "the platform's own queue"),
        ({"max_map_length": 0}, "policy.max_map_length", "an integer from 1 to 100000"),
        ({"max_map_length": "10"}, "policy.max_map_length", "an integer from 1 to 100000"),
        ({"share": 1001}, "policy.share", "an integer from 1 to 1000"),
        ({"share": True}, "policy.share", "an integer from 1 to 1000"),
    ],
)
def test_it_refuses_a_bad_task_policy_naming_the_field(
    policy: dict[str, Any], path: str, message: str
) -> None:
    from orchestrator.errors import Invalid
    from orchestrator.tenancy import validate_policy

    with pytest.raises(Invalid) as caught:
        validate_policy(policy)
    [(where, text)] = caught.value.errors
    assert where == path
    assert message in text


def test_it_accepts_a_map_length_and_a_share() -> None:
    from orchestrator.tenancy import fair_share, max_map_length, validate_policy

    policy = validate_policy({"max_map_length": 500, "share": 3})
    assert (max_map_length(policy), fair_share(policy)) == (500, 3)
    assert (max_map_length({}), fair_share({})) == (10_000, 1)
