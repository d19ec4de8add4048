"""Where a spec's problem was written: the 1-based line of an error's dotted path
(`tasks.load.command`, `tasks.load.depends_on[1]`) in the YAML or JSON text it came from,
so that an editor can show each error at its line. Pure (no Django).

The validator reports paths in the parsed data, which has forgotten where things stood;
the composed node tree (PyYAML's compose, before any object is built) still has each
node's start mark. JSON is YAML too, so the same walk serves both."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import yaml

from orchestrator.errors import FieldError
from orchestrator.limits import ExpansionLimitedLoader

__all__ = ["LocatedError", "compose", "line_of", "locate", "path_parts"]

MERGE_TAG = "tag:yaml.org,2002:merge"
# How the parsers say where the text stopped being YAML or JSON: parse_document writes
# "invalid YAML at line 3, column 5", json "invalid JSON: ...: line 3 column 5 (char 20)".
_SYNTAX_LINE = re.compile(r"\bline (\d+)\b")
_PART = re.compile(r"\[(\d+)\]|[^.\[\]]+")
# What YAML counts as a line break (its marks count lines by these).
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


@dataclass(frozen=True)
class LocatedError:
    """A validation error with the line its path was written at (None: the whole
    document, e.g. a missing top-level field or a spec over the size limit) and that
    line's text, to show beside it."""

    line: int | None
    path: str
    message: str
    source: str = ""


def path_parts(path: str) -> list[str | int]:
    """`tasks.load.depends_on[1]` -> ["tasks", "load", "depends_on", 1]."""
    return [
        int(match.group(1)) if match.group(1) is not None else match.group()
        for match in _PART.finditer(path)
    ]


def compose(text: str) -> yaml.Node | None:
    """The text's node tree; None when it is not YAML (its parser's error says where) or
    is empty. The loader refuses what would be costly to compose (deep nesting, recursive
    aliases), as the spec parser does."""
    loader = ExpansionLimitedLoader(text)
    try:
        return loader.get_single_node()
    except (yaml.YAMLError, ValueError):
        return None
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]


def _entry(mapping: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    """The (key, value) nodes of `key` in a mapping, or in what it merges (`<<: *base`)."""
    for key_node, value_node in mapping.value:
        if (
            isinstance(key_node, yaml.ScalarNode)
            and key_node.tag != MERGE_TAG
            and key_node.value == key
        ):
            return key_node, value_node
    for key_node, value_node in mapping.value:
        if key_node.tag != MERGE_TAG:
            continue
        merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for base in merged:
            if isinstance(base, yaml.MappingNode) and (found := _entry(base, key)):
                return found
    return None


def _step(node: yaml.Node, parts: Sequence[str | int]) -> tuple[int, yaml.Node, int] | None:
    """One step down the path: (the 0-based line of the entry, its value, how many parts
    it took). A key with dots in it (an env name, say) spans several parts; the longest
    that names a key wins."""
    head = parts[0]
    if isinstance(node, yaml.SequenceNode):
        if isinstance(head, int) and head < len(node.value):
            item = node.value[head]
            return item.start_mark.line, item, 1
        return None
    if not isinstance(node, yaml.MappingNode) or isinstance(head, int):
        return None
    keys: list[str] = []
    for part in parts:
        if isinstance(part, int):
            break
        keys.append(part)
    for count in range(len(keys), 0, -1):
        found = _entry(node, ".".join(keys[:count]))
        if found is not None:
            key_node, value_node = found
            return key_node.start_mark.line, value_node, count
    return None


def line_of(root: yaml.Node | None, path: str) -> int | None:
    """The line of the deepest entry the path reaches: a mapping entry's key line, a list
    item's first line. A field that is missing is shown at the entry that lacks it (a
    task's missing `command` at the task); a path that reaches nothing has no line."""
    parts = path_parts(path)
    node, line = root, None
    while node is not None and parts:
        step = _step(node, parts)
        if step is None:
            break
        found, node, taken = step
        line = found + 1
        parts = parts[taken:]
    return line


def locate(text: str, errors: Iterable[FieldError]) -> list[LocatedError]:
    """Each error with its line, ordered by line; those of the whole document first.
    A syntax error (no path) is at the line its parser named."""
    root = compose(text)
    lines = _LINE_BREAK.split(text)
    located = []
    for path, message in errors:
        line = line_of(root, path) if path else _syntax_line(message)
        source = lines[line - 1] if line is not None and line <= len(lines) else ""
        located.append(LocatedError(line, path, message, source))
    return sorted(located, key=lambda e: (e.line is not None, e.line or 0))


def _syntax_line(message: str) -> int | None:
    match = _SYNTAX_LINE.search(message)
    return int(match.group(1)) if match else None
