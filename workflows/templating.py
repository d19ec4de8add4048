"""Sandboxed Jinja2 templates in task fields: syntax and reference checks at apply time
(rendering happens at run time, in the engine). Pure: no Django."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "CONTEXT_NAMES",
    "ENGINE_CONTEXT_NAMES",
    "TemplateProblem",
    "check_template",
    "check_trigger_template",
    "environment",
    "render_value",
    "strings_in",
]

# What a template may reference (DESIGN.md section 6, "Templating").
CONTEXT_NAMES = (
    "run",
    "params",
    "ds",
    "logical_date",
    "data_interval_start",
    "data_interval_end",
    "tasks",
    "vars",
    "secrets",
    "conn",
    "try_number",
    "task",
    "event",
)
# What the engine itself renders (a mapped task's `map.over`, a `concurrency.key`), before
# any worker: no secrets, connections, variables or try.
ENGINE_CONTEXT_NAMES = tuple(
    n for n in CONTEXT_NAMES if n not in ("vars", "secrets", "conn", "try_number", "task")
)

_environment = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def environment() -> ImmutableSandboxedEnvironment:
    """The one sandboxed environment that parses and renders every template."""
    return _environment


def render_value(value: Any, context: dict[str, Any], *, native: bool) -> Any:
    """Render every template inside a JSON-like value. With `native`, a string that is one
    whole expression (`{{ event.data.rows }}`) keeps the expression's type."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        text = value.strip()
        if native and text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
            return _environment.compile_expression(text[2:-2].strip())(**context)
        return _environment.from_string(value).render(**context)
    if isinstance(value, list):
        return [render_value(v, context, native=native) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, context, native=native) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class TemplateProblem:
    message: str


def strings_in(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside a JSON-like value, with its dotted path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings_in(item, f"{path}[{index}]")


def _attribute_of(node: nodes.Node, name: str) -> Iterator[str]:
    """Names read as `name.x` or `name['x']` in a template's syntax tree."""
    for getattr_node in node.find_all(nodes.Getattr):
        if isinstance(getattr_node.node, nodes.Name) and getattr_node.node.name == name:
            yield getattr_node.attr
    for getitem in node.find_all(nodes.Getitem):
        if (
            isinstance(getitem.node, nodes.Name)
            and getitem.node.name == name
            and isinstance(getitem.arg, nodes.Const)
            and isinstance(getitem.arg.value, str)
        ):
            yield getitem.arg.value


def check_template(
    source: str,
    *,
    params: set[str],
    upstream: set[str],
    names: tuple[str, ...] = CONTEXT_NAMES,
) -> list[str]:
    """Problems of one template: syntax, unknown names, unknown params, tasks that are not
    upstream of the task using the template. Empty when fine (or when not a template).
    `names`: what the template may read (a mapped task's adds `map_index` and its item)."""
    if "{{" not in source and "{%" not in source and "{#" not in source:
        return []
    try:
        tree = _environment.parse(source)
    except TemplateSyntaxError as exc:
        return [f"template syntax error on line {exc.lineno}: {exc.message}"]
    problems = []
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for name_node in tree.find_all(nodes.Name):
        name = name_node.name
        if name_node.ctx == "load" and name not in names and name not in assigned:
            problems.append(f"unknown template variable {name!r}; available: {', '.join(names)}")
    for param in sorted(set(_attribute_of(tree, "params"))):
        if param not in params:
            declared = ", ".join(sorted(params)) or "none declared"
            problems.append(f"unknown param {param!r} (params: {declared})")
    for task in sorted(set(_attribute_of(tree, "tasks"))):
        if task not in upstream:
            problems.append(
                f"task {task!r} is not upstream of this task, so its result is not "
                "available here; add it to depends_on (directly or through another task)"
            )
    return sorted(set(problems), key=problems.index)


def check_trigger_template(source: str) -> list[str]:
    """Problems of a trigger's param template: it is rendered when the event arrives,
    before there is a run, so it may read the event (`event`) and nothing else."""
    if "{{" not in source and "{%" not in source and "{#" not in source:
        return []
    try:
        tree = _environment.parse(source)
    except TemplateSyntaxError as exc:
        return [f"template syntax error on line {exc.lineno}: {exc.message}"]
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    unknown = sorted(
        {
            n.name
            for n in tree.find_all(nodes.Name)
            if n.ctx == "load" and n.name != "event" and n.name not in assigned
        }
    )
    return [
        f"unknown template variable {name!r}: a trigger's params may read only the event "
        "that starts the run, as {{ event.data... }}, {{ event.subject }}, ..."
        for name in unknown
    ]
