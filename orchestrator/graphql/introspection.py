"""Who may introspect the schema (`__schema`, `__type`): GRAPHQL_INTROSPECTION is "on"
(anyone), "authenticated" (a token or a session; the default when DEBUG is off) or "off".
`__typename` stays allowed: clients need it to tell types apart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.conf import settings
from graphql import FieldNode, GraphQLError, ValidationRule
from graphql.language.visitor import BREAK
from strawberry.extensions import SchemaExtension

__all__ = ["IntrospectionPolicy"]

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


def _refusal(code: str, message: str) -> type[ValidationRule]:
    class NoIntrospection(ValidationRule):
        def enter_field(self, node: FieldNode, *_: Any) -> Any:
            if node.name.value not in INTROSPECTION_FIELDS:
                return None
            self.report_error(GraphQLError(message, [node], extensions={"code": code}))
            return BREAK

    return NoIntrospection


class IntrospectionPolicy(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        setting = settings.GRAPHQL_INTROSPECTION
        actor = getattr(context.context, "actor", None)
        signed_in = actor is not None and actor.user_id is not None
        rule = None
        if setting == "off":
            rule = _refusal("FORBIDDEN", "introspection is off on this server")
        elif setting == "authenticated" and not signed_in:
            rule = _refusal(
                "UNAUTHENTICATED",
                "introspection is for signed-in callers: send Authorization: Bearer <token>",
            )
        if rule is not None:
            context.validation_rules = (*context.validation_rules, rule)
        yield
