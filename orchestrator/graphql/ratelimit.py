"""Rate limits of /graphql, counted as REST counts them (orchestrator.ratelimit).

One operation is one request of its caller: a trigger when it holds a mutation that starts
runs or runs tasks again, else a read; over the caller's limit nothing of it runs and the
answer is 429 with `Retry-After`. Each tenant a root field names (`tenant:` or `slug:`) is
charged once per operation, and only when the caller holds the field's permission there;
over the tenant's limit that field is null. Errors carry `extensions.code` RATE_LIMITED and
`extensions.retryAfter` (seconds)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLResolveInfo,
    InlineFragmentNode,
    SelectionSetNode,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.utilities import get_operation_ast
from strawberry.extensions import SchemaExtension

from orchestrator.actors import Actor
from orchestrator.errors import Forbidden, NotFound
from orchestrator.models import Tenant
from orchestrator.ratelimit import (
    READS,
    TRIGGERS,
    RateLimited,
    Scope,
    charge_caller,
    charge_tenant,
    scope_of,
)
from orchestrator.selectors import authorized_tenant

__all__ = ["RateLimitExtension", "rate_limited_error"]

# The mutations that start runs or run tasks again: the permission and the REST action
# they stand for (orchestrator.ratelimit.TRIGGER_ACTIONS decides what counts).
TRIGGER_MUTATIONS: dict[str, tuple[str, str]] = {
    "triggerRun": ("run.operate", "create"),
    "retryRun": ("run.operate", "retry"),
    "clearTask": ("run.operate", "clear"),
    "createBackfill": ("backfill.operate", "create"),
    "resumeBackfill": ("backfill.operate", "resume"),
    "publishEvent": ("event.publish", "create"),
}
# Every other tenant-addressed field is charged once the caller may see the tenant at all.
VIEW_PERMISSION = "tenant.view"


def rate_limited_error(limited: RateLimited) -> GraphQLError:
    return GraphQLError(
        limited.message,
        extensions={"code": "RATE_LIMITED", "retryAfter": limited.retry_after},
    )


def _field_scope(parent_type: str, field_name: str) -> Scope:
    if parent_type != "Mutation" or field_name not in TRIGGER_MUTATIONS:
        return READS
    return scope_of(*TRIGGER_MUTATIONS[field_name])


def _root_field_names(
    selections: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]
) -> Iterator[str]:
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            yield selection.name.value
        elif isinstance(selection, InlineFragmentNode):
            yield from _root_field_names(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            yield from _root_field_names(fragments[selection.name.value].selection_set, fragments)


def _operation_scope(document: DocumentNode, operation_name: str | None) -> Scope:
    """A trigger when any root field of the operation is one, else a read."""
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation.value != "mutation":
        return READS
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    names = _root_field_names(operation.selection_set, fragments)
    return TRIGGERS if any(_field_scope("Mutation", n) == TRIGGERS for n in names) else READS


class RateLimitExtension(SchemaExtension):
    """A fresh one per request (the schema lists a factory), so its memo is the request's."""

    def __init__(self) -> None:
        self.charged: set[tuple[int, Scope]] = set()

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        actor: Actor | None = getattr(context.context, "actor", None)
        if actor is not None and actor.user_id is not None and context.graphql_document:
            scope = _operation_scope(context.graphql_document, context.operation_name)
            try:
                charge_caller(user_id=actor.user_id, token=actor.token, scope=scope)
            except RateLimited as limited:
                response = getattr(context.context, "response", None)
                if response is not None:
                    response.status_code = 429
                    response["Retry-After"] = str(limited.retry_after)
                context.result = GraphQLExecutionResult(
                    data=None, errors=[rate_limited_error(limited)]
                )
        yield

    def resolve(
        self,
        _next: Callable[..., Any],
        root: Any,
        info: GraphQLResolveInfo[Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if info.path.prev is None:  # a root field
            self._charge_tenant(info, kwargs)
        return _next(root, info, *args, **kwargs)

    def _charge_tenant(self, info: GraphQLResolveInfo[Any], kwargs: dict[str, Any]) -> None:
        slug = kwargs.get("tenant", kwargs.get("slug"))
        actor: Actor | None = getattr(info.context, "actor", None)
        if not isinstance(slug, str) or actor is None or actor.user_id is None:
            return
        parent, name = info.parent_type.name, info.field_name
        scope = _field_scope(parent, name)
        permission = TRIGGER_MUTATIONS[name][0] if scope == TRIGGERS else VIEW_PERMISSION
        try:
            tenant: Tenant = authorized_tenant(actor, slug, permission)[0]
        except (NotFound, Forbidden):
            return  # not the caller's to spend; the resolver answers for itself
        if (tenant.pk, scope) in self.charged:
            return
        try:
            charge_tenant(tenant, scope)
        except RateLimited as limited:
            response = getattr(info.context, "response", None)
            if response is not None:
                response["Retry-After"] = str(limited.retry_after)
            raise rate_limited_error(limited) from None
        self.charged.add((tenant.pk, scope))
