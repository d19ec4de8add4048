"""The published JSON Schema of workflow specs: public, valid Draft 2020-12, accepts the
examples and refuses what validation refuses, checked with the independent `jsonschema`;
and docs/workflow-spec.md is generated from it."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from jsonschema import Draft202012Validator

from orchestrator.errors import Invalid
from workflows.docs import DOC_PATH
from workflows.schema import spec_json_schema
from workflows.validation import validate_spec

SCHEMA_URL = "/api/v1/workflow-spec.schema.json"
EXAMPLES = sorted((Path(settings.BASE_DIR) / "examples").glob("*.yaml"))
NOOP = {"type": "noop"}


def as_json(data: Any) -> Any:
    """What an editor sees: YAML dates (schedule.start) are strings in JSON."""
    return json.loads(json.dumps(data, default=str))


def validator() -> Draft202012Validator:
    return Draft202012Validator(spec_json_schema())


def test_it_publishes_the_schema_without_credentials(db: None) -> None:
    response = Client().get(SCHEMA_URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    schema = response.json()
    assert schema == json.loads(json.dumps(spec_json_schema()))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert (schema["title"], schema["type"], schema["additionalProperties"]) == (
        "Workflow",
        "object",
        False,
    )
    assert set(schema["required"]) == {"name", "tasks"}
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_it_accepts_every_example(path: Path) -> None:
    data = as_json(yaml.safe_load(path.read_text()))
    assert list(validator().iter_errors(data)) == []


def test_it_has_the_examples() -> None:
    assert [p.stem for p in EXAMPLES] == [
        "etl-daily-sales",
        "fan-in-report",
        "hourly-cleanup",
        "parametrised-export",
        "per-file-load",
        "sales-forecast",
    ]


def test_it_accepts_the_canonical_form_of_a_valid_spec() -> None:
    spec = {
        "name": "wf",
        "schedule": {"cron": "@daily", "start": "2026-01-01"},
        "params": {"n": {"type": "integer", "minimum": 1, "default": 5}},
        "defaults": {"retries": 2, "retry_delay": 90},
        "tasks": {
            "a": {"type": "shell", "command": "echo {{ params.n }}", "shell": True},
            "b": {"type": "python", "callable": "jobs.x:run", "depends_on": ["a"]},
        },
    }
    canonical = validate_spec(spec).canonical
    assert canonical["defaults"]["retry_delay"] == "1m30s"
    assert list(validator().iter_errors(spec)) == []
    assert list(validator().iter_errors(canonical)) == []


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"name": "wf", "tasks": {"a": NOOP}, "shedule": {"cron": "@daily"}}, []),
        ({"name": "wf", "tasks": {"a": {"type": "noop", "retires": 1}}}, ["tasks", "a"]),
        ({"name": "wf", "tasks": {"1st": NOOP}}, ["tasks"]),
        ({"name": "wf", "tasks": {"load data": NOOP}}, ["tasks"]),
        ({"name": "Daily Sales", "tasks": {"a": NOOP}}, ["name"]),
        ({"name": "wf", "tasks": {}}, ["tasks"]),
        ({"name": "wf"}, []),
        ({"name": "wf", "tasks": {"a": {"type": "bash"}}}, ["tasks", "a"]),
        ({"name": "wf", "tasks": {"a": {"type": "shell"}}}, ["tasks", "a"]),
        ({"name": "wf", "tasks": {"a": {"type": "noop", "timeout": "1h 30m"}}}, ["tasks", "a"]),
        ({"name": "wf", "tasks": {"a": {"type": "noop", "retries": -1}}}, ["tasks", "a"]),
        (
            {"name": "wf", "tasks": {"a": NOOP}, "schedule": {"cron": "@daily", "catchup": "x"}},
            ["schedule"],
        ),
        (
            {
                "name": "wf",
                "tasks": {"a": {"type": "http", "url": "https://x.test", "json_body": 1}},
            },
            ["tasks", "a"],
        ),
        (
            {"name": "wf", "tasks": {"a": {"type": "shell", "command": ["x"], "env": {"1A": "x"}}}},
            ["tasks", "a"],
        ),
    ],
    ids=[
        "unknown-top-level-field",
        "unknown-task-field",
        "task-id-starting-with-a-digit",
        "task-id-with-a-space",
        "bad-name",
        "empty-tasks",
        "no-tasks",
        "unknown-task-type",
        "shell-without-command",
        "duration-with-a-space",
        "negative-retries",
        "bad-catchup",
        "http-field-by-its-python-name",
        "bad-env-name",
    ],
)
def test_it_refuses_what_validation_refuses(document: dict[str, Any], where: list[str]) -> None:
    errors = list(validator().iter_errors(document))
    assert errors
    assert where in [list(e.absolute_path) for e in errors]
    with pytest.raises(Invalid):
        validate_spec(document)


def test_it_keeps_the_docs_in_step_with_the_schema() -> None:
    out = StringIO()
    call_command("spec_docs", "--check", stdout=out)
    assert out.getvalue().strip() == f"{DOC_PATH} is current"
    text = DOC_PATH.read_text()
    for name in spec_json_schema()["$defs"]:
        assert f"\n### {name}\n" in text
