"""Run parameters: their JSON Schema, and checking values against it. Pure: no Django."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from jsonschema import Draft202012Validator

__all__ = ["Param", "param_errors", "params_schema"]


class Param(Protocol):
    """What a parameter declares (workflows.spec.Param is the spec's model of it)."""

    @property
    def type(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def default(self) -> Any: ...
    @property
    def enum(self) -> list[Any] | None: ...
    @property
    def minimum(self) -> float | None: ...
    @property
    def maximum(self) -> float | None: ...
    @property
    def pattern(self) -> str | None: ...
    @property
    def required(self) -> bool: ...


def _schema(param: Param) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": param.type}
    for key in ("enum", "minimum", "maximum", "pattern", "description"):
        value = getattr(param, key)
        if value is not None:
            schema[key] = value
    return schema


def params_schema(params: Mapping[str, Param]) -> dict[str, Any]:
    """The JSON Schema of a run's params object."""
    return {
        "type": "object",
        "properties": {name: _schema(p) for name, p in params.items()},
        "required": sorted(n for n, p in params.items() if p.required and p.default is None),
        "additionalProperties": False,
    }


def param_errors(param: Param, value: Any) -> Iterator[str]:
    for error in Draft202012Validator(_schema(param)).iter_errors(value):
        yield error.message
