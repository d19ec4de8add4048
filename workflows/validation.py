"""Parse and validate a submitted spec: every error at once, each with its exact path and
what would be accepted. Pure (no Django): `manage.py validate` runs it without a database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from orchestrator.errors import FieldError, Invalid
from orchestrator.limits import (
    AliasExpansionTooLarge,
    ExpansionLimitedLoader,
    NestingTooDeep,
    RecursiveAlias,
    check_json_nesting,
)
from workflows import dag
from workflows.python_modules import callable_refusal
from workflows.spec import (
    CALLABLE_PATTERN,
    DATASET_NAME_PATTERN,
    DNS_LABEL_PATTERN,
    ENV_NAME_PATTERN,
    EVENT_TYPE_PATTERN,
    IDENTIFIER_PATTERN,
    IMAGE_PATTERN,
    NAME_PATTERN,
    PACKAGE_NAME_PATTERN,
    QUANTITY_PATTERN,
    TAG_PATTERN,
    TASK_ID_PATTERN,
    TASK_MODELS,
    TIME_OF_DAY_PATTERN,
    UNION_TAGS,
    WORKFLOW_REFERENCE_PATTERN,
    WebhookTrigger,
    WorkflowSpec,
)
from workflows.task_types import TASK_TYPES, is_runnable, runnable_kinds, runnable_types
from workflows.templating import (
    CONTEXT_NAMES,
    ENGINE_CONTEXT_NAMES,
    check_template,
    check_trigger_template,
    environment,
    strings_in,
)

__all__ = ["Limits", "ValidSpec", "canonical_json", "parse_document", "validate_spec"]


@dataclass(frozen=True)
class Limits:
    """What the tenant allows: task types (None = all), task count and spec size."""

    allowed_task_types: Sequence[str] | None = None
    max_tasks: int | None = None
    max_spec_bytes: int | None = None
    # The most a shell task's `rlimits` may ask for (the tenant's task limits; 0: none).
    task_limits: Mapping[str, int] | None = None
    # Modules whose functions python tasks may call (PYTHON_TASK_MODULES); None: unchecked.
    python_modules: Sequence[str] | None = None


@dataclass(frozen=True)
class ValidSpec:
    spec: WorkflowSpec
    canonical: dict[str, Any]
    content_hash: str
    warnings: list[str] = field(default_factory=list)


# --- parsing -------------------------------------------------------------------------------

# How far aliases may expand a document parsed without a size limit (`manage.py validate`).
MAX_EXPANDED_BYTES = 16 * 1024 * 1024


class _UniqueKeyLoader(ExpansionLimitedLoader):
    """YAML that refuses duplicate keys (PyYAML would silently keep the last one), nesting
    deeper than MAX_NESTING_DEPTH and aliases that expand past the size limit."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _construct_timestamp(loader: _UniqueKeyLoader, node: yaml.ScalarNode) -> Any:
    """A date or time as PyYAML reads it; one that does not exist (2026-02-30) is an error
    at its line, not a ValueError from deep inside the parser."""
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    except (ValueError, OverflowError) as exc:
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value!r} is not a date: {exc}", node.start_mark
        ) from None


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_document(text: str | bytes, *, max_bytes: int | None = None) -> Any:
    """YAML (a superset of JSON) or JSON text -> data. Raises Invalid with the position."""
    raw = text.encode() if isinstance(text, str) else text
    if max_bytes is not None and len(raw) > max_bytes:
        raise Invalid([("", f"spec is {len(raw)} bytes; this tenant's limit is {max_bytes}")])
    source = raw.decode("utf-8", errors="replace")
    if source.lstrip().startswith("{"):
        try:
            check_json_nesting(source)
            return json.loads(source, object_pairs_hook=_unique_pairs)
        except ValueError as exc:  # NestingTooDeep included
            raise Invalid([("", f"invalid JSON: {exc}")]) from None
    try:
        # The reader refuses non-printable characters as it is made: inside the try.
        loader = _UniqueKeyLoader(source)
    except yaml.reader.ReaderError as exc:
        character = exc.character if isinstance(exc.character, int) else ord(exc.character)
        problem = f"character #x{character:04x} at position {exc.position}: {exc.reason}"
        raise Invalid([("", f"invalid YAML: {problem}")]) from None
    # Aliases may expand a document at most to the size it may have written out.
    loader.max_expanded_bytes = max_bytes if max_bytes is not None else MAX_EXPANDED_BYTES
    try:
        return loader.get_single_data()
    except (NestingTooDeep, AliasExpansionTooLarge, RecursiveAlias) as exc:
        raise Invalid([("", str(exc))]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise Invalid([("", f"invalid YAML{where}: {problem}")]) from None
    finally:
        loader.dispose()


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- pydantic errors as paths ------------------------------------------------------------

PATTERN_HINTS = {
    NAME_PATTERN: "a name is lowercase letters, digits, - and _, starting with a letter or "
    "digit, at most 63 characters (e.g. daily-sales)",
    TASK_ID_PATTERN: "a task id is letters, digits, - and _, starting with a letter or _, "
    "at most 100 characters",
    DATASET_NAME_PATTERN: "a dataset is a name or URI of letters, digits and . _ : / @ + = ~ % -, "
    "starting with a letter or digit, at most 300 characters (e.g. warehouse.sales_daily or "
    "s3://lake/sales); no templates",
    EVENT_TYPE_PATTERN: "an event type is letters, digits and . _ : / -, at most 200 "
    "characters (e.g. com.acme.file.landed)",
    IDENTIFIER_PATTERN: "a name templates read is letters, digits and _, starting with a "
    "letter or _, at most 63 characters (e.g. file)",
    ENV_NAME_PATTERN: "an environment variable's name is letters, digits and _, starting "
    "with a letter or _, at most 128 characters",
    TAG_PATTERN: "a tag is 1 to 50 letters, digits and _ . : -",
    DNS_LABEL_PATTERN: "lowercase letters, digits and -, starting and ending with a letter "
    "or digit, at most 63 characters (a Kubernetes name)",
    QUANTITY_PATTERN: "a Kubernetes quantity: a number with an optional unit (m, k, M, G, T, "
    "Ki, Mi, Gi, Ti), e.g. 500m or 2Gi",
    TIME_OF_DAY_PATTERN: "a time of day as HH:MM, 00:00 to 23:59",
    WORKFLOW_REFERENCE_PATTERN: "a workflow's name, or tenant/name for a workflow of a "
    "tenant that shares its events",
    PACKAGE_NAME_PATTERN: "a package's name is letters, digits and . _ -, starting and "
    "ending with a letter or digit, at most 100 characters (e.g. acme-etl)",
    CALLABLE_PATTERN: "module:function, e.g. reports.daily:build",
    IMAGE_PATTERN: "an image reference: 1 to 500 characters without spaces, e.g. "
    "registry.example.com/etl:1.4",
}


def _model_fields(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _task_model(task: Any) -> type[BaseModel] | None:
    if not isinstance(task, Mapping):
        return None
    entry = TASK_MODELS.get(str(task.get("type")))
    if isinstance(entry, dict):
        return entry.get(str(task.get("kind")))
    return entry


def _path(loc: tuple[int | str, ...], data: Any) -> tuple[str, type[BaseModel] | None]:
    """Dotted path of a pydantic location, without union tags; and the model found there."""
    parts: list[str] = []
    model: type[BaseModel] | None = WorkflowSpec
    node: Any = data
    index = 0
    while index < len(loc):
        item = loc[index]
        if parts[:1] == ["tasks"] and len(parts) == 2 and isinstance(node, Mapping):
            # Inside one task: skip the discriminator tags pydantic puts in the location.
            model = _task_model(node)
            if item == node.get("type"):
                index += 1
                if index < len(loc) and item == "wait_for" and loc[index] == node.get("kind"):
                    index += 1
                continue
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item == "[key]":
            index += 1
            continue
        elif item in UNION_TAGS:
            model = UNION_TAGS[str(item)]
            index += 1
            continue
        else:
            parts.append(str(item))
        node = (
            node.get(item)
            if isinstance(node, Mapping)
            else (
                node[item]
                if isinstance(node, list) and isinstance(item, int) and item < len(node)
                else None
            )
        )
        model = _submodel(model, item)
        index += 1
    return ".".join(parts), model


def _submodel(model: type[BaseModel] | None, item: int | str) -> type[BaseModel] | None:
    if model is None or isinstance(item, int):
        return model
    by_alias = {(f.alias or n): f for n, f in model.model_fields.items()}
    info = by_alias.get(str(item))
    if info is None:
        return model if str(item) not in by_alias else None
    annotation = info.annotation
    for candidate in _flatten(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _flatten(annotation: Any) -> list[Any]:
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    out: list[Any] = []
    for arg in args:
        out.extend(_flatten(arg))
    return out


def _message(error: ErrorDetails, model: type[BaseModel] | None, key: str) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind == "extra_forbidden":
        accepted = ", ".join(_model_fields(model)) if model else ""
        return f"unknown field {key!r}" + (f"; accepted: {accepted}" if accepted else "")
    if kind == "missing":
        return "required field missing"
    if kind == "union_tag_invalid":
        what = "task type" if ctx.get("discriminator") == "'type'" else "kind"
        return f"unknown {what} {ctx.get('tag')!r}; accepted: {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"missing {ctx.get('discriminator')}; accepted: " + (
            ", ".join(TASK_TYPES)
            if ctx.get("discriminator") == "'type'"
            else "http, sql, time, dataset"
        )
    if kind in ("value_error", "trigger_kind"):
        return str(ctx.get("error", error["msg"]))
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in PATTERN_HINTS:
        return f"{error['input']!r} is not accepted: {PATTERN_HINTS[ctx['pattern']]}"
    if kind == "too_short" and key == "tasks":
        return "a workflow needs at least one task"
    if kind == "literal_error":
        return f"{error['input']!r} is not accepted; expected {ctx.get('expected')}"
    if kind in ("model_type", "model_attributes_type"):
        # Pydantic says "a valid dictionary or instance of <class>": name the fields instead.
        fields = ", ".join(_model_fields(model)) if model is not None else ""
        shape = f"a mapping with the fields {fields}" if fields else "a mapping"
        return f"expected {shape}, not {_described(error.get('input'))}"
    if kind == "dict_type":
        return f"expected a mapping, not {_described(error.get('input'))}"
    return str(error["msg"])


def _described(value: Any) -> str:
    """What a value is, in the spec's (YAML/JSON) words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int | float):
        return f"{value!r} (a number)"
    if isinstance(value, str):
        return f"{value[:40]!r} (a string)"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _pydantic_errors(exc: ValidationError, data: Any) -> list[FieldError]:
    errors: list[FieldError] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        path, model = _path(loc, data)
        if error["type"] == "extra_forbidden":
            model = _path(loc[:-1], data)[1] if loc[:-1] else WorkflowSpec
        key = str(loc[-1]) if loc else ""
        errors.append((path, _message(error, model, key)))
    return errors


# --- graph, templates, policy --------------------------------------------------------------


def _graph_errors(tasks: Mapping[str, Any]) -> tuple[list[FieldError], dict[str, list[str]]]:
    errors: list[FieldError] = []
    graph: dict[str, list[str]] = {}
    for task_id, task in tasks.items():
        deps = task.get("depends_on", []) if isinstance(task, Mapping) else []
        if not isinstance(deps, list):
            graph[str(task_id)] = []
            continue
        seen: set[str] = set()
        graph[str(task_id)] = []
        for i, dep in enumerate(deps):
            path = f"tasks.{task_id}.depends_on[{i}]"
            if not isinstance(dep, str):
                continue  # the type error is reported by the schema
            if dep == task_id:
                errors.append((path, f"task {task_id!r} cannot depend on itself"))
            elif dep in seen:
                errors.append((path, f"duplicate dependency {dep!r}"))
            elif dep not in tasks:
                known = ", ".join(sorted(str(t) for t in tasks))
                errors.append((path, f"unknown task {dep!r}; tasks: {known}"))
            else:
                graph[str(task_id)].append(dep)
            seen.add(dep)
    cycle = dag.find_cycle(graph)
    if cycle:
        flow = " -> ".join(reversed(cycle))
        errors.append((f"tasks.{cycle[0]}.depends_on", f"cycle: {flow}"))
    return errors, graph


def _template_errors(
    tasks: Mapping[str, Any], graph: dict[str, list[str]], params: set[str], acyclic: bool
) -> list[FieldError]:
    errors: list[FieldError] = []
    for task_id, task in tasks.items():
        if not isinstance(task, Mapping):
            continue
        upstream = dag.upstream_of(graph, str(task_id)) if acyclic else set(graph.get(task_id, []))
        mapped = _mapped_names(task)
        for key, value in task.items():
            if key in ("type", "kind", "depends_on", "trigger_rule"):
                continue
            path = f"tasks.{task_id}.{key}"
            if key in ("map", "concurrency"):
                errors += _engine_template_errors(path, value, params, upstream, mapped)
                continue
            if key == "until" and isinstance(value, str) and task.get("type") == "wait_for":
                try:
                    environment().compile_expression(value)
                except Exception as exc:  # any jinja2 error is a bad expression
                    errors.append((path, f"invalid expression: {exc}"))
                continue
            for where, text in strings_in(value, path):
                errors.extend(
                    (where, p)
                    for p in check_template(
                        text, params=params, upstream=upstream, names=CONTEXT_NAMES + mapped
                    )
                )
    return errors


def _mapped_names(task: Mapping[str, Any]) -> tuple[str, ...]:
    """What a mapped task's templates read besides the usual: its index and its element."""
    spec = task.get("map")
    if not isinstance(spec, Mapping):
        return ()
    item = spec.get("as", "item")
    return ("map_index", item) if isinstance(item, str) else ("map_index",)


def _engine_template_errors(
    path: str, value: Any, params: set[str], upstream: set[str], mapped: tuple[str, ...]
) -> list[FieldError]:
    """`map` and `concurrency` are rendered by the engine when the task is ready, before any
    worker has it: they read no secrets, connections, variables or try, and only a
    concurrency key sees the element (the list itself comes first)."""
    if not isinstance(value, Mapping):
        return []
    errors: list[FieldError] = []
    names: tuple[str, ...]
    if path.endswith(".map"):
        item, over = value.get("as", "item"), value.get("over")
        if isinstance(item, str) and item in (*CONTEXT_NAMES, "map_index"):
            errors.append((f"{path}.as", f"{item!r} is a template name already; pick another"))
        if isinstance(over, str) and "{{" not in over:
            errors.append(
                (
                    f"{path}.over",
                    "a template expression such as '{{ tasks.list_files.result }}' or a "
                    "literal list",
                )
            )
        names, field = ENGINE_CONTEXT_NAMES, "over"
    else:
        names, field = ENGINE_CONTEXT_NAMES + mapped, "key"
    text = value.get(field)
    for where, source in strings_in(text, f"{path}.{field}") if text is not None else ():
        errors.extend(
            (where, p)
            for p in check_template(source, params=params, upstream=upstream, names=names)
        )
    return errors


def _slot_errors(tasks: Mapping[str, Any]) -> list[FieldError]:
    """`pool_slots` counts slots of the task's `pool`: alone it would do nothing."""
    return [
        (f"tasks.{task_id}.pool_slots", "takes slots of a pool: set `pool` too")
        for task_id, task in tasks.items()
        if isinstance(task, Mapping) and task.get("pool_slots") is not None and not task.get("pool")
    ]


def _policy_errors(
    tasks: Mapping[str, Any], limits: Limits, workflow_code: Any = None
) -> list[FieldError]:
    errors: list[FieldError] = []
    if limits.max_tasks is not None and len(tasks) > limits.max_tasks:
        errors.append(("tasks", f"{len(tasks)} tasks; this tenant's limit is {limits.max_tasks}"))
    for task_id, task in tasks.items():
        task_type = task.get("type") if isinstance(task, Mapping) else None
        if task_type not in TASK_TYPES:
            continue
        errors += _rlimit_errors(task_id, task, limits)
        if not (task.get("code") or workflow_code):  # team code: checked when applied
            errors += _callable_errors(task_id, task, limits)
        path = f"tasks.{task_id}.type"
        allowed = limits.allowed_task_types
        if allowed is not None and task_type not in allowed:
            errors.append(
                (
                    path,
                    f"task type {task_type!r} is not allowed in this tenant "
                    f"(allowed: {', '.join(allowed) or 'none'})",
                )
            )
        elif not is_runnable(task_type):
            errors.append(
                (
                    path,
                    f"task type {task_type!r} is valid but this installation "
                    "cannot run it yet: its executor is not built (runnable: "
                    f"{', '.join(runnable_types()) or 'none'})",
                )
            )
        elif (kinds := runnable_kinds(task_type)) is not None and task.get("kind") not in kinds:
            errors.append(
                (
                    f"tasks.{task_id}.kind",
                    f"{task_type} kind {task.get('kind')!r} is valid but this installation "
                    f"cannot run it yet (runnable kinds: {', '.join(kinds)})",
                )
            )
    return errors


def _callable_errors(task_id: str, task: Mapping[str, Any], limits: Limits) -> list[FieldError]:
    """A python task calls a function of the platform's allow-listed modules only."""
    target = task.get("callable")
    if task.get("type") != "python" or limits.python_modules is None or not isinstance(target, str):
        return []
    refusal = callable_refusal(target, limits.python_modules)
    return [] if refusal is None else [(f"tasks.{task_id}.callable", refusal)]


def _rlimit_errors(task_id: str, task: Mapping[str, Any], limits: Limits) -> list[FieldError]:
    """A task may lower its tenant's limits, never raise them."""
    asked = task.get("rlimits")
    if not limits.task_limits or not isinstance(asked, Mapping):
        return []
    errors: list[FieldError] = []
    for key, value in asked.items():
        ceiling = limits.task_limits.get(key)
        if ceiling and isinstance(value, int) and value > ceiling:
            errors.append(
                (
                    f"tasks.{task_id}.rlimits.{key}",
                    f"{value} is above this tenant's limit of {ceiling}; ask for at most "
                    f"{ceiling} (platform staff set it in the tenant's policy task_limits)",
                )
            )
    return errors


# --- entry point ---------------------------------------------------------------------------


def validate_spec(data: Any, limits: Limits | None = None) -> ValidSpec:
    """Validate parsed spec data; raise Invalid with every error found."""
    limits = limits or Limits()
    if not isinstance(data, Mapping):
        raise Invalid([("", "a workflow spec is a mapping with at least name and tasks")])
    errors: list[FieldError] = []
    spec: WorkflowSpec | None = None
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        errors.extend(_pydantic_errors(exc, data))
    tasks = data.get("tasks")
    if isinstance(tasks, Mapping):
        graph_errors, graph = _graph_errors(tasks)
        errors.extend(graph_errors)
        params = data.get("params")
        names = {str(k) for k in params} if isinstance(params, Mapping) else set()
        acyclic = dag.find_cycle(graph) is None
        errors.extend(_template_errors(tasks, graph, names, acyclic))
        errors.extend(_policy_errors(tasks, limits, data.get("code")))
        errors.extend(_slot_errors(tasks))
    if spec is not None:
        errors.extend(_schedule_param_errors(spec))
        errors.extend(_sla_errors(spec))
        errors.extend(_trigger_errors(spec))
    if errors or spec is None:
        raise Invalid(_dedupe(errors))
    canonical = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    canonical["tasks"] = {tid: _type_first(task) for tid, task in canonical["tasks"].items()}
    digest = hashlib.sha256(canonical_json(canonical).encode()).hexdigest()
    return ValidSpec(spec=spec, canonical=canonical, content_hash=digest)


def _schedule_param_errors(spec: WorkflowSpec) -> list[FieldError]:
    """Scheduled runs get every param from its default: a required param without one
    would make the schedule skip every firing."""
    if spec.schedule is None:
        return []
    return [
        (
            f"params.{name}",
            "required without a default, but this workflow has a schedule and scheduled "
            "runs take every param from its default: give it a default or make it optional",
        )
        for name, param in spec.params.items()
        if param.required and param.default is None
    ]


def _sla_errors(spec: WorkflowSpec) -> list[FieldError]:
    if spec.sla is None or spec.sla.deadline is None or spec.cron_schedule is not None:
        return []
    return [
        (
            "sla.deadline",
            "a deadline needs a cron schedule: it is the time of day by which the day's scheduled "
            "run must have succeeded (for triggered runs use sla.run_duration)",
        )
    ]


def _trigger_errors(spec: WorkflowSpec) -> list[FieldError]:
    """Webhook names unique; trigger params name declared params, and their templates
    read the event (`event`) and the usual names, never a task's result."""
    errors: list[FieldError] = []
    seen: set[str] = set()
    for index, trigger in enumerate(spec.triggers):
        if isinstance(trigger, WebhookTrigger):
            path, params = f"triggers[{index}].webhook", trigger.webhook.params
            if trigger.webhook.name in seen:
                errors.append((f"{path}.name", "another webhook of this workflow has this name"))
            seen.add(trigger.webhook.name)
        else:
            path, params = f"triggers[{index}].event", trigger.event.params
        for name, value in params.items():
            where = f"{path}.params.{name}"
            if name not in spec.params:
                declared = ", ".join(spec.params) or "none (this workflow declares no params)"
                errors.append((where, f"unknown param; accepted: {declared}"))
            for at, text in strings_in(value, where):
                errors.extend((at, p) for p in check_trigger_template(text))
    return errors


def _type_first(task: dict[str, Any]) -> dict[str, Any]:
    """`type` (and `kind`) first, so the canonical YAML reads the way people write it."""
    head: dict[str, Any] = {k: task[k] for k in ("type", "kind") if k in task}
    return {**head, **{k: v for k, v in task.items() if k not in head}}


def _dedupe(errors: list[FieldError]) -> list[FieldError]:
    return list(dict.fromkeys(errors))
