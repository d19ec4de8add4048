"""The published JSON Schema of workflow specs, generated from the pydantic models."""

from __future__ import annotations

from functools import cache
from typing import Any

from workflows.spec import WorkflowSpec

__all__ = ["spec_json_schema"]


@cache
def spec_json_schema() -> dict[str, Any]:
    schema = WorkflowSpec.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **{k: v for k, v in schema.items() if k != "$schema"},
    }
