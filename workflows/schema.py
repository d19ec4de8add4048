"""The published JSON Schema of workflow specs, generated from the pydantic models."""

from __future__ import annotations

from functools import cache
from typing import Any

from workflows.spec import WorkflowSpec

__all__ = ["spec_json_schema"]


def _close_pattern_maps(node: Any) -> None:
    """Maps with constrained keys (task ids, env names) accept no other keys: pydantic
    emits patternProperties alone, which would let any other key through."""
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_pattern_maps(value)
    elif isinstance(node, list):
        for value in node:
            _close_pattern_maps(value)


@cache
def spec_json_schema() -> dict[str, Any]:
    schema = WorkflowSpec.model_json_schema(by_alias=True)
    _close_pattern_maps(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **{k: v for k, v in schema.items() if k != "$schema"},
    }
