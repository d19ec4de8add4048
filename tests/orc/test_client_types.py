"""orc.client's result types have exactly the fields of the committed OpenAPI document's
components (docs/openapi.yaml, generated from the server), so neither drifts from the
other unnoticed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orc import client

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"

# The client's type -> the component it mirrors.
MIRRORS: dict[str, Any] = {
    "Me": client.Me,
    "MeMembership": client.MeMembership,
    "MeToken": client.MeToken,
    "Version": client.Version,
    "Workflow": client.Workflow,
    "Run": client.Run,
    "RunRetried": client.RunRetried,
    "Attempt": client.Attempt,
    "TaskInstance": client.TaskInstance,
    "Log": client.Log,
    "Backfill": client.Backfill,
    "BackfillDryRun": client.BackfillDryRun,
    "PlannedInterval": client.PlannedInterval,
    "Token": client.Token,
    "Package": client.Package,
    "FieldError": client.FieldError,
    "ApplyPlan": client.ApplyPlan,
    "PlannedChange": client.PlannedChange,
    "SpecFileRequest": client.ApplyFile,
}
# What the document leaves out: a bulk apply's errors also name their file.
EXTRA = {"FieldError": {"file"}}


@pytest.fixture(scope="module")
def components() -> dict[str, Any]:
    schemas: dict[str, Any] = yaml.safe_load(OPENAPI.read_text())["components"]["schemas"]
    return schemas


@pytest.mark.parametrize("name", MIRRORS)
def test_the_type_has_the_components_fields(name: str, components: dict[str, Any]) -> None:
    typed = MIRRORS[name]
    fields = set(typed.__required_keys__) | set(typed.__optional_keys__)
    assert fields == set(components[name]["properties"]) | EXTRA.get(name, set())
