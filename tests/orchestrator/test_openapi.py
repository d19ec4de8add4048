"""The OpenAPI document (docs/api.md, "The OpenAPI document"): the committed docs/openapi.yaml
is what the code generates, a client generates from it without a warning, every operation
lists its error answers, and fields are typed as the server really answers them."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.test import Client, override_settings
from jsonschema import Draft202012Validator

from tests.harness import Team, api, make_token, send

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "openapi.yaml"
CLIENT_CONFIG = ROOT / "docs" / "openapi-python-client.yaml"
BIN = Path(sys.executable).parent
METHODS = ("get", "post", "put", "patch", "delete")
PATH_PARAMETERS = {
    "tenant",
    "username",
    "service_account",
    "token_prefix",
    "event_id",
    "workflow",
    "version",
    "run_id",
    "task_id",
    "backfill_id",
    "connection",
    "variable",
    "secret",
    "event",
    "channel",
    "rule",
    "delivery_id",
    "sla_miss_id",
    "package_id",
    "pool",
    "grant_id",
    "webhook",
    "secret_id",
    "git_source",
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return loaded


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def conforms(document: dict[str, Any], component: str, body: Any) -> list[str]:
    """Where `body` departs from the document's schema `component` (empty: it conforms)."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return [
        f"{list(e.absolute_path)}: {e.message}"
        for e in Draft202012Validator(schema).iter_errors(body)
    ]


# --- the committed document ------------------------------------------------------------


def test_the_committed_document_is_the_one_the_code_generates(tmp_path: Path) -> None:
    generated = tmp_path / "openapi.yaml"
    call_command("spectacular", file=str(generated), validate=True, fail_on_warn=True)
    assert generated.read_text() == DOCUMENT.read_text(), (
        "docs/openapi.yaml is not what the code generates: run `make openapi` and review "
        "the diff of docs/openapi.yaml as a change of the API contract"
    )


def test_a_generated_python_client_has_no_warnings(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(DOCUMENT),
            "--config",
            str(CLIENT_CONFIG),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / "orchestrator_api_client"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(tmp_path))
    try:
        runs = importlib.import_module("orchestrator_api_client.api.runs.cancel_run")
        workflows = importlib.import_module("orchestrator_api_client.api.workflows.apply_workflow")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("orchestrator_api_client")]:
            del sys.modules[name]
    assert callable(runs.sync)
    assert callable(workflows.sync)


# --- errors ----------------------------------------------------------------------------


def test_every_operation_lists_its_error_answers_as_problems(document: dict[str, Any]) -> None:
    problem = {"$ref": "#/components/schemas/Problem"}
    for method, path, operation in operations(document):
        where = f"{method.upper()} {path}"
        parameters = operation.get("parameters", [])
        has_body = "requestBody" in operation
        expected = {"429"}
        if path != "/api/v1/workflow-spec.schema.json":
            expected |= {"401", "403"}
        if has_body or any(p["in"] in ("query", "header") for p in parameters):
            expected.add("400")
        if any(p["in"] == "path" for p in parameters):
            expected.add("404")
        if has_body:
            expected |= {"413", "415"}
        errors = {code for code in operation["responses"] if code >= "400"}
        assert expected <= errors, f"{where}: {sorted(expected - errors)} missing"
        for code in errors:
            content = operation["responses"][code]["content"]
            assert content == {"application/problem+json": {"schema": problem}}, where
    assert "Retry-After" in document["paths"]["/api/v1/me"]["get"]["responses"]["429"]["headers"]


def test_operations_that_can_conflict_list_409(document: dict[str, Any]) -> None:
    by_id = {op["operationId"]: op for _, _, op in operations(document)}
    for operation_id in (
        "create_tenant",
        "add_member",
        "remove_member",
        "create_token",
        "create_workflow",
        "apply_workflow",
        "delete_workflow",
        "trigger_run",
        "cancel_run",
        "retry_run",
        "clear_task_instance",
        "create_backfill",
        "pause_backfill",
        "create_connection",
    ):
        assert "409" in by_id[operation_id]["responses"], operation_id
    assert "409" not in by_id["get_run"]["responses"]


def test_the_problem_schema_is_rfc_9457_with_field_paths(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail"}
    assert schemas["Problem"]["properties"]["errors"]["items"] == {
        "$ref": "#/components/schemas/FieldError"
    }
    assert set(schemas["FieldError"]["required"]) == {"path", "message"}


def test_real_error_answers_conform_to_the_problem_schema(
    team: Team, document: dict[str, Any]
) -> None:
    token, base = team.tokens["admin"], f"/api/v1/tenants/{team.slug}"
    invalid = send(token, "POST", f"{base}/tokens/", {})
    unreadable = api(token).post(f"{base}/tokens/", "name: ci", content_type="text/plain")
    spec = "name: x\ntasks:\n  load: {type: noop, depends_on: [extract]}\n"
    bad_spec = api(token).post(f"{base}/workflows/", spec, content_type="application/yaml")
    for response, status in ((invalid, 400), (unreadable, 415), (bad_spec, 400)):
        assert response.status_code == status
        assert response["Content-Type"] == "application/problem+json"
        assert conforms(document, "Problem", response.json()) == []
    assert bad_spec.json()["errors"] == [
        {"path": "tasks.load.depends_on[0]", "message": "unknown task 'extract'; tasks: load"}
    ]


# --- bodies and fields -----------------------------------------------------------------


def test_the_workflow_spec_body_is_the_spec_json_schema(document: dict[str, Any]) -> None:
    served = Client().get("/api/v1/workflow-spec.schema.json").json()
    component = document["components"]["schemas"]["WorkflowSpec"]
    assert component["required"] == served["required"]
    assert set(component["properties"]) == set(served["properties"])
    for definition in served["$defs"]:
        assert f"WorkflowSpec{definition}" in document["components"]["schemas"]
    spec_paths = (
        "/api/v1/tenants/{tenant}/workflows/",
        "/api/v1/tenants/{tenant}/workflows/{workflow}/",
    )
    for path, method in zip(spec_paths, ("post", "put"), strict=True):
        content = document["paths"][path][method]["requestBody"]["content"]
        assert content["application/json"]["schema"] == {
            "$ref": "#/components/schemas/WorkflowSpec"
        }
        assert content["application/yaml"]["schema"]["type"] == "string"
    version = document["paths"]["/api/v1/tenants/{tenant}/workflows/{workflow}/versions/{version}/"]
    assert set(version["get"]["responses"]["200"]["content"]) == {
        "application/json",
        "application/yaml",
    }


def test_no_request_body_is_an_untyped_object(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for content_type, media in operation.get("requestBody", {}).get("content", {}).items():
            schema = media["schema"]
            typed = "$ref" in schema or schema.get("type") == "string" or "properties" in schema
            assert typed, f"{method.upper()} {path} ({content_type}): untyped body {schema}"


def test_fields_are_typed_as_answered(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for field in ("last_used_at", "revoked_at", "expires_at"):
        assert "null" in schemas["Token"]["properties"][field]["type"], field
    assert "format" not in schemas["Me"]["properties"]["email"]
    assert "spec" not in schemas["VersionSummary"]["properties"]
    assert "spec" in schemas["Version"]["required"]
    assert "cleared" in schemas["RunRetried"]["required"]
    assert {"created", "changed"} <= set(schemas["WorkflowApplied"]["required"])
    assert "null" in schemas["PaginatedRunList"]["properties"]["next"]["type"]
    versions = document["paths"]["/api/v1/tenants/{tenant}/workflows/{workflow}/versions/"]
    assert versions["get"]["responses"]["200"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/PaginatedVersionSummaryList"}}
    }


def test_answers_conform_to_their_schemas(team: Team, document: dict[str, Any]) -> None:
    base = f"/api/v1/tenants/{team.slug}"
    make_token(team.tenant, team.owner, "viewer", name="never used")
    token = team.tokens["admin"]
    me = api(token).get("/api/v1/me")
    assert me.json()["email"] == ""
    assert conforms(document, "Me", me.json()) == []
    tokens = api(token).get(f"{base}/tokens/").json()
    assert None in [t["last_used_at"] for t in tokens["results"]]
    assert conforms(document, "PaginatedTokenList", tokens) == []
    spec = "name: nightly\ntasks:\n  hello: {type: noop}\n"
    applied = api(token).post(f"{base}/workflows/", spec, content_type="application/yaml")
    assert applied.status_code == 201, applied.content
    assert conforms(document, "WorkflowApplied", applied.json()) == []
    versions = api(token).get(f"{base}/workflows/nightly/versions/").json()
    assert conforms(document, "PaginatedVersionSummaryList", versions) == []
    version = api(token).get(f"{base}/workflows/nightly/versions/1/").json()
    assert conforms(document, "Version", version) == []
    as_yaml = api(token, Accept="application/yaml").get(f"{base}/workflows/nightly/versions/1/")
    assert as_yaml["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.content)["name"] == "nightly"


# --- names -----------------------------------------------------------------------------


def test_one_name_and_type_per_path_parameter(document: dict[str, Any]) -> None:
    seen: dict[str, Any] = {}
    for _, path, operation in operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                name = parameter["name"]
                assert name in PATH_PARAMETERS, f"{path}: {{{name}}}"
                assert seen.setdefault(name, parameter["schema"]) == parameter["schema"], name
    assert seen["run_id"] == {"type": "integer"}


def test_operation_ids_read_as_method_names_and_tags_name_resources(
    document: dict[str, Any],
) -> None:
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids))
    for operation_id in ids:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)+|get_me", operation_id), operation_id
        assert "api_v1" not in operation_id
        assert not operation_id.startswith("tenants_")
    assert {"list_runs", "cancel_run", "trigger_run", "apply_workflow"} <= set(ids)
    tags = {tag for _, _, op in operations(document) for tag in op["tags"]}
    assert {
        "tenants",
        "members",
        "service-accounts",
        "tokens",
        "audit-events",
        "workflows",
        "versions",
        "runs",
        "task-instances",
        "backfills",
        "connections",
        "variables",
        "secrets",
    } <= tags


def test_only_lists_take_list_query_parameters(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        if method != "get":
            # `map_index` names the instance (of a mapped task) the write is about, as a
            # path parameter would; every other input of a write travels in its body.
            assert query <= {"force", "map_index"}, f"{method.upper()} {path}: {sorted(query)}"
        if not operation["operationId"].startswith("list_"):
            assert not query & {"cursor", "state", "tag", "since"}, path


# --- who may read the document ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_docs_are_for_signed_in_callers_unless_public(team: Team, path: str) -> None:
    with override_settings(API_DOCS_PUBLIC=False):
        assert Client().get(path).status_code == 401
        assert api(team.tokens["viewer"]).get(path).status_code == 200
        session = Client()
        session.force_login(team.users["viewer"])
        assert session.get(path).status_code == 200
    with override_settings(API_DOCS_PUBLIC=True):
        assert Client().get(path).status_code == 200


def test_the_served_document_is_the_committed_one_as_yaml_or_json(team: Team) -> None:
    served = api(team.tokens["viewer"]).get("/api/schema/")
    assert yaml.safe_load(served.content) == yaml.safe_load(DOCUMENT.read_text())
    as_json = api(team.tokens["viewer"]).get("/api/schema/?format=json")
    assert as_json.json() == yaml.safe_load(DOCUMENT.read_text())


@pytest.mark.parametrize(
    ("environment", "public"),
    [
        ({"DEBUG": "1"}, True),
        ({"DEBUG": "0"}, False),
        ({"DEBUG": "0", "API_DOCS_PUBLIC": "1"}, True),
    ],
)
def test_docs_are_public_by_default_only_with_debug(
    environment: dict[str, str], public: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "API_DOCS_PUBLIC")}
    env.update(environment, SECRET_KEY="a-test-key-" + "x" * 50)
    code = "from django.conf import settings; print(settings.API_DOCS_PUBLIC)"
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        env={**env, "DJANGO_SETTINGS_MODULE": "orchestrator.settings"},
    )
    assert result.stdout.strip() == str(public)


def _listed(text: str, opening: str) -> set[str]:
    """The names in backquotes of the docs/api.md bullet that begins with `opening`."""
    bullet = text.split(f"- {opening}", 1)[1].split("\n- ", 1)[0]
    return set(re.findall(r"`\{?([a-z_-]+)\}?`", bullet))


def test_docs_api_lists_every_tag_and_path_parameter(document: dict[str, Any]) -> None:
    """docs/api.md names every resource tag and path parameter the document has."""
    text = (ROOT / "docs" / "api.md").read_text()
    tags = {t for ops in document["paths"].values() for op in ops.values() for t in op["tags"]}
    parameters = {p for path in document["paths"] for p in re.findall(r"\{(\w+)\}", path)}
    assert _listed(text, "One tag per resource") >= tags
    assert _listed(text, "One name per path parameter") >= parameters
