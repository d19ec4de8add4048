"""The platform core's GraphQL queries and mutations, through the same services and policy
as REST. Apps add their own Query/Mutation classes to the root schema."""

from __future__ import annotations

import datetime as dt

import strawberry
from django.conf import settings
from graphql import GraphQLError
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.scalars import JSON
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext, Info
from strawberry_django.optimizer import DjangoOptimizerExtension

from orchestrator import models, services
from orchestrator.api import serializers as s
from orchestrator.context import tenant_scope
from orchestrator.errors import NotFound
from orchestrator.grants import create_grant, delete_grant, grants_of
from orchestrator.graphql.cost import QueryCostLimiter
from orchestrator.graphql.errors import DomainErrorExtension, validate
from orchestrator.graphql.introspection import IntrospectionPolicy
from orchestrator.graphql.ratelimit import RateLimitExtension
from orchestrator.graphql.types import (
    LIST_LIMIT_DEFAULT,
    ApiTokenType,
    CreatedToken,
    GrantType,
    MembershipRef,
    MemberType,
    MeType,
    ServiceAccountType,
    TenantType,
    actor_of,
    list_limit,
    tenant_for,
    tenant_scope_for,
)
from orchestrator.selectors import memberships_of, tenants_visible_to

__all__ = ["schema"]


def _member(tenant: models.Tenant, username: str) -> models.Membership:
    with tenant_scope([tenant]):
        membership = (
            models.Membership.objects.select_related("user", "tenant")
            .filter(user__username=username)
            .first()
        )
    if membership is None:
        raise NotFound(f"{username!r} is not a member of {tenant.slug!r}")
    return membership


@strawberry.type
class Query:
    @strawberry.field
    def me(self, info: Info) -> MeType:
        actor = actor_of(info)
        user = actor.user
        return MeType(
            id=actor.user_id or 0,
            username=actor.label,
            email=getattr(user, "email", ""),
            is_staff=bool(getattr(user, "is_staff", False)),
            memberships=[
                MembershipRef(tenant=m.tenant.slug, role=m.role) for m in memberships_of(actor)
            ],
            token_prefix=actor.token.prefix if actor.token else None,
        )

    @strawberry.field
    def tenants(self, info: Info, limit: int = LIST_LIMIT_DEFAULT) -> list[TenantType]:
        limit = list_limit(limit)
        return list(tenants_visible_to(actor_of(info))[:limit])  # type: ignore[arg-type]

    @strawberry.field(description="Null, with a NOT_FOUND error, when invisible to you.")  # type: ignore[untyped-decorator]
    def tenant(self, info: Info, slug: str) -> TenantType | None:
        return tenant_for(info, slug, "tenant.view")  # type: ignore[return-value]

    @strawberry.field(
        description="What the tenant shares with others (given) and they with it (received)."
    )  # type: ignore[untyped-decorator]
    def grants(self, info: Info, tenant: str, direction: str | None = None) -> list[GrantType]:
        with tenant_scope_for(info, tenant, "grant.view") as t:
            return [GrantType.of(g, t) for g in grants_of(t, direction)]


@strawberry.type
class Mutation:
    @strawberry.mutation
    def create_tenant(self, info: Info, slug: str, name: str) -> TenantType:
        data = validate(s.TenantSerializer, {"slug": slug, "name": name})
        return services.create_tenant(actor=actor_of(info), **data)  # type: ignore[return-value]

    @strawberry.mutation
    def update_tenant(
        self, info: Info, slug: str, name: str | None = None, quotas: JSON | None = None
    ) -> TenantType:
        tenant = tenant_for(info, slug, "tenant.update")
        data = validate(s.TenantUpdateSerializer, {"name": name, "quotas": quotas}, partial=True)
        return services.update_tenant(  # type: ignore[return-value]
            actor=actor_of(info), tenant=tenant, **data
        )

    @strawberry.mutation
    def archive_tenant(self, info: Info, slug: str) -> bool:
        services.archive_tenant(
            actor=actor_of(info), tenant=tenant_for(info, slug, "tenant.archive")
        )
        return True

    @strawberry.mutation
    def add_member(self, info: Info, tenant: str, username: str, role: str) -> MemberType:
        t = tenant_for(info, tenant, "member.view")
        data = validate(s.MembershipSerializer, {"username": username, "role": role})
        return services.add_member_by_username(  # type: ignore[return-value]
            actor=actor_of(info), tenant=t, username=data["user"]["username"], role=data["role"]
        )

    @strawberry.mutation
    def change_member_role(self, info: Info, tenant: str, username: str, role: str) -> MemberType:
        t = tenant_for(info, tenant, "member.view")
        data = validate(s.MembershipUpdateSerializer, {"role": role})
        return services.change_member_role(  # type: ignore[return-value]
            actor=actor_of(info), membership=_member(t, username), role=data["role"]
        )

    @strawberry.mutation
    def remove_member(self, info: Info, tenant: str, username: str) -> bool:
        t = tenant_for(info, tenant, "member.view")
        services.remove_member(actor=actor_of(info), membership=_member(t, username))
        return True

    @strawberry.mutation
    def create_service_account(
        self, info: Info, tenant: str, name: str, role: str, description: str | None = None
    ) -> ServiceAccountType:
        t = tenant_for(info, tenant, "service_account.manage")
        data = validate(
            s.ServiceAccountSerializer, {"name": name, "role": role, "description": description}
        )
        return services.create_service_account(  # type: ignore[return-value]
            actor=actor_of(info), tenant=t, **data
        )

    @strawberry.mutation
    def create_token(
        self,
        info: Info,
        tenant: str,
        name: str,
        role: str,
        service_account: str | None = None,
        expires_at: dt.datetime | None = None,
    ) -> CreatedToken:
        with tenant_scope_for(info, tenant, "token.manage") as t:
            data = validate(
                s.TokenSerializer,
                {
                    "name": name,
                    "role": role,
                    "service_account": service_account,
                    "expires_at": expires_at,
                },
            )
            holder = None
            if account_name := data.pop("service_account", None):
                account = (
                    models.ServiceAccount.objects.select_related("user")
                    .filter(name=account_name)
                    .first()
                )
                if account is None:
                    raise NotFound(f"no service account named {account_name!r} in {t.slug!r}")
                holder = account.user
        token, raw = services.create_token(actor=actor_of(info), tenant=t, user=holder, **data)
        return CreatedToken(token=raw, api_token=token)  # type: ignore[arg-type]

    @strawberry.mutation
    def revoke_token(self, info: Info, tenant: str, prefix: str) -> ApiTokenType:
        with tenant_scope_for(info, tenant, "token.manage") as t:
            token = models.ApiToken.objects.select_related("tenant").filter(prefix=prefix).first()
        if token is None:
            raise NotFound(f"no token {prefix!r} in {t.slug!r}")
        return services.revoke_token(actor=actor_of(info), token=token)  # type: ignore[return-value]

    @strawberry.mutation(
        description="Share a workflow's events (kind events) or a dataset (kind dataset) with "
        'another tenant; name "*" shares all of them.'
    )  # type: ignore[untyped-decorator]
    def create_grant(
        self, info: Info, tenant: str, grantee: str, kind: str, name: str
    ) -> GrantType:
        with tenant_scope_for(info, tenant, "grant.manage") as t:
            grant = create_grant(
                actor=actor_of(info), tenant=t, grantee=grantee, kind=kind, name=name
            )
            return GrantType.of(grant, t)

    @strawberry.mutation(description="Revoke a grant this tenant gave.")  # type: ignore[untyped-decorator]
    def delete_grant(self, info: Info, tenant: str, id: int) -> bool:
        with tenant_scope_for(info, tenant, "grant.manage") as t:
            grant = grants_of(t, "given").filter(pk=id).first()
            if grant is None:
                raise NotFound(f"no grant {id} given by {t.slug!r}")
            delete_grant(actor=actor_of(info), grant=grant)
        return True


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log only unexpected errors, those met while executing a field: a caller's mistake
        (a coded error, or a document or variables that do not parse or validate, which
        carry no path) is not ours."""
        unexpected = [
            e
            for e in errors
            if not (e.extensions or {}).get("code")
            and (e.path is not None or e.original_error is not None)
        ]
        if unexpected:
            super().process_errors(unexpected, execution_context)


# The root schema assembles every app's Query and Mutation (the one place that imports apps).
from connections.graphql.schema import Mutation as ConnectionMutation  # noqa: E402
from connections.graphql.schema import Query as ConnectionQuery  # noqa: E402
from events.graphql.schema import Mutation as EventMutation  # noqa: E402
from events.graphql.schema import Query as EventQuery  # noqa: E402
from gitsync.graphql.schema import Mutation as GitSyncMutation  # noqa: E402
from gitsync.graphql.schema import Query as GitSyncQuery  # noqa: E402
from notifications.graphql.schema import Mutation as NotificationMutation  # noqa: E402
from notifications.graphql.schema import Query as NotificationQuery  # noqa: E402
from runs.graphql.schema import Mutation as RunMutation  # noqa: E402
from runs.graphql.schema import Query as RunQuery  # noqa: E402
from workflows.graphql.schema import Mutation as WorkflowMutation  # noqa: E402
from workflows.graphql.schema import Query as WorkflowQuery  # noqa: E402

schema = Schema(
    query=merge_types(
        "Query",
        (
            Query,
            WorkflowQuery,
            RunQuery,
            ConnectionQuery,
            NotificationQuery,
            EventQuery,
            GitSyncQuery,
        ),
    ),
    mutation=merge_types(
        "Mutation",
        (
            Mutation,
            WorkflowMutation,
            RunMutation,
            ConnectionMutation,
            NotificationMutation,
            EventMutation,
            GitSyncMutation,
        ),
    ),
    extensions=[  # factories: a fresh extension per request, no state shared
        RateLimitExtension,
        DjangoOptimizerExtension,
        lambda: QueryDepthLimiter(max_depth=settings.GRAPHQL_MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=settings.GRAPHQL_MAX_ALIASES),
        lambda: MaxTokensLimiter(max_token_count=settings.GRAPHQL_MAX_TOKENS),
        lambda: QueryCostLimiter(max_cost=settings.GRAPHQL_MAX_COST),
        IntrospectionPolicy,
        DomainErrorExtension,
    ],
)
