"""How deep a request body may nest and how far YAML aliases may expand, checked before
the recursive parsers (json, graphql-core, PyYAML's composer and constructor) see it.
Pure (no Django): the REST parsers, the GraphQL view and the spec parser share it.

100,000 nested brackets would otherwise raise RecursionError inside the parser, and a few
hundred bytes of nested YAML anchors ("billion laughs") would expand to megabytes."""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = [
    "MAX_NESTING_DEPTH",
    "AliasExpansionTooLarge",
    "ExpansionLimitedLoader",
    "NestingTooDeep",
    "RecursiveAlias",
    "check_graphql_nesting",
    "check_json_nesting",
]

# Deep enough for any workflow spec, params or GraphQL query; shallow enough that every
# recursive parser stays far from Python's recursion limit.
MAX_NESTING_DEPTH = 64

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
# GraphQL: block strings, strings and comments hold no structure.
_GRAPHQL_IGNORED = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*')
_OPENING = frozenset("[{(")
_CLOSING = frozenset("]})")
_BRACKETS = re.compile(r"[\[\]{}()]")


class NestingTooDeep(ValueError):
    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} nests deeper than {limit} levels, the limit")
        self.limit = limit


class AliasExpansionTooLarge(ValueError):
    def __init__(self, expanded: int, limit: int) -> None:
        super().__init__(
            f"YAML aliases (*name) expand this document to more than {limit} bytes, "
            f"the limit (at least {expanded} bytes); repeat less, or write it out"
        )
        self.expanded, self.limit = expanded, limit


class RecursiveAlias(ValueError):
    def __init__(self, line: int) -> None:
        super().__init__(f"the YAML alias at line {line} refers to a node that contains it")


def _check_brackets(text: str, what: str, limit: int) -> None:
    depth = 0
    for match in _BRACKETS.finditer(text):
        if match.group() in _OPENING:
            depth += 1
            if depth > limit:
                raise NestingTooDeep(what, limit)
        elif depth:
            depth -= 1


def check_json_nesting(text: str | bytes, *, limit: int = MAX_NESTING_DEPTH) -> None:
    """Raise NestingTooDeep when the JSON text's arrays and objects nest deeper than
    `limit` (brackets inside strings do not count). Malformed JSON is left to the parser."""
    source = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    _check_brackets(_JSON_STRING.sub("", source), "the JSON document", limit)


def check_graphql_nesting(document: str, *, limit: int = MAX_NESTING_DEPTH) -> None:
    """Raise NestingTooDeep when a GraphQL document's selections, arguments and input
    values ({, [, ( outside strings and comments) nest deeper than `limit`."""
    _check_brackets(_GRAPHQL_IGNORED.sub("", document), "the GraphQL document", limit)


class ExpansionLimitedLoader(yaml.SafeLoader):
    """A SafeLoader that refuses, while composing and before anything is constructed,
    a document nested deeper than `max_depth` (aliases included: an alias nests its
    anchor's node where it stands), aliases that refer to their own ancestor, and aliases
    that expand the document beyond `max_expanded_bytes` (None: no limit).

    The expanded size is counted per node (a scalar's text, one byte per node), once per
    node thanks to the memo, so a billion laughs costs a few microseconds to refuse."""

    max_depth: int = MAX_NESTING_DEPTH
    max_expanded_bytes: int | None = None

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._open_nodes = 0
        self._measured: dict[yaml.Node, tuple[int, int]] = {}  # node -> (bytes, depth)
        self.aliases_used = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        alias = self.check_event(yaml.AliasEvent)
        line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
        self._open_nodes += 1
        try:
            # Scalars count one level here, collections only in the measured depth.
            if self._open_nodes > self.max_depth + 1:
                raise NestingTooDeep("the YAML document", self.max_depth)
            node = super().compose_node(parent, index)
        finally:
            self._open_nodes -= 1
        if node is None:
            return None
        if alias:
            self.aliases_used += 1
            if node not in self._measured:
                raise RecursiveAlias(line)
        else:
            self._measure(node)
        return node

    def _measure(self, node: yaml.Node) -> None:
        if isinstance(node, yaml.ScalarNode):
            size, depth = len(str(node.value).encode()) + 1, 0
        else:
            children: list[yaml.Node] = (
                [item for pair in node.value for item in pair]
                if isinstance(node, yaml.MappingNode)
                else list(node.value)
            )
            measured = [self._measured[child] for child in children]
            size = 1 + sum(m[0] for m in measured)
            depth = 1 + max((m[1] for m in measured), default=0)
        if depth > self.max_depth:
            raise NestingTooDeep("the YAML document (with its aliases expanded)", self.max_depth)
        limit = self.max_expanded_bytes
        if self.aliases_used and limit is not None and size > limit:
            raise AliasExpansionTooLarge(size, limit)
        self._measured[node] = (size, depth)
