"""What a GraphQL query may cost, known before it runs: the most objects it can return.

Each object field counts its objects; a list of objects counts its `limit` (given, from a
variable, or the argument's default; a list without one counts LIST_LIMIT_MAX), times the
objects of every list above it. So `runs(limit: 500) { taskInstances { attempts { id } } }`
costs 500 + 500 x 500 + 500 x 500 x 50. Scalars are free. A query over GRAPHQL_MAX_COST is
refused in validation, with `extensions.code` QUERY_TOO_COSTLY and the cost.

The walk is linear in the document: a fragment's cost per parent object is worked out once,
however often it is spread."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    get_named_type,
    get_nullable_type,
    is_composite_type,
    type_from_ast,
    value_from_ast,
)
from graphql.language.visitor import BREAK
from graphql.utilities import get_operation_ast
from strawberry.extensions import SchemaExtension

from orchestrator.graphql.types import LIST_LIMIT_MAX

__all__ = ["QueryCostLimiter", "query_cost"]


class _CostWalk:
    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.variables = {**_variable_defaults(schema, operation), **variables}
        self.fragment_costs: dict[str, int] = {}
        self.open_fragments: set[str] = set()

    def selection_cost(self, parent: GraphQLNamedType | None, selections: SelectionSetNode) -> int:
        """Objects returned per one `parent` object."""
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                total += self.field_cost(parent, selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selection_cost(inner, selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.fragment_cost(selection.name.value)
        return total

    def fragment_cost(self, name: str) -> int:
        if name in self.fragment_costs:
            return self.fragment_costs[name]
        fragment = self.fragments.get(name)
        if fragment is None or name in self.open_fragments:
            return 0  # unknown or cyclic: validation reports it
        self.open_fragments.add(name)
        on = self.schema.get_type(fragment.type_condition.name.value)
        cost = self.selection_cost(on, fragment.selection_set)
        self.open_fragments.discard(name)
        self.fragment_costs[name] = cost
        return cost

    def field_cost(self, parent: GraphQLNamedType | None, node: FieldNode) -> int:
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0
        field = parent.fields.get(node.name.value)
        if field is None:
            return 0  # __typename, introspection, or unknown (validation reports it)
        item = get_named_type(field.type)
        if not is_composite_type(item):
            return 0
        size = self.list_size(field, node) if _is_list(field) else 1
        inner = self.selection_cost(item, node.selection_set) if node.selection_set else 0
        return size * (1 + inner)

    def list_size(self, field: GraphQLField, node: FieldNode) -> int:
        argument = field.args.get("limit")
        if argument is None:
            return LIST_LIMIT_MAX
        value = argument.default_value
        for given in node.arguments or ():
            if given.name.value == "limit":
                value = value_from_ast(given.value, argument.type, self.variables)
        if not isinstance(value, int) or isinstance(value, bool):
            return LIST_LIMIT_MAX
        # An out-of-range limit is refused by its resolver (BAD_USER_INPUT); count it capped.
        return min(max(value, 1), LIST_LIMIT_MAX)


def _is_list(field: GraphQLField) -> bool:
    return isinstance(get_nullable_type(field.type), GraphQLList)  # type: ignore[arg-type]


def _variable_defaults(schema: GraphQLSchema, operation: OperationDefinitionNode) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        declared = type_from_ast(schema, definition.type)
        if definition.default_value is not None and declared is not None:
            value = value_from_ast(definition.default_value, declared)  # type: ignore[arg-type]
            defaults[definition.variable.name.value] = value
    return defaults


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> int:
    """The most objects the operation can return (0 when the document has no such one)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 0
    root = schema.get_root_type(operation.operation)
    walk = _CostWalk(schema, document, operation, variables or {})
    return walk.selection_cost(root, operation.selection_set)


def _cost_rule(
    max_cost: int, variables: Mapping[str, Any], operation_name: str | None
) -> type[ValidationRule]:
    class QueryCostRule(ValidationRule):
        def enter_document(self, node: DocumentNode, *_: Any) -> Any:
            cost = query_cost(self.context.schema, node, operation_name, variables)
            if cost > max_cost:
                self.report_error(
                    GraphQLError(
                        f"this query may return up to {cost} objects (each list's `limit`, "
                        f"or its default, multiplied along its path); the most is {max_cost}: "
                        "ask for fewer with smaller `limit` arguments",
                        extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "maxCost": max_cost},
                    )
                )
            return BREAK

    return QueryCostRule


class QueryCostLimiter(SchemaExtension):
    """Refuses, in validation (before anything runs), a query costing more than `max_cost`."""

    def __init__(self, *, max_cost: int) -> None:
        self.max_cost = max_cost

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        rule = _cost_rule(self.max_cost, context.variables or {}, context.operation_name)
        context.validation_rules = (*context.validation_rules, rule)
        yield
