"""The OpenAPI document, decided once for every endpoint: a tag per resource, operation ids
that read as method names (`list_runs`, `cancel_run`), and the error answers each
operation can give, as RFC 9457 problems (docs/api.md, "The OpenAPI document")."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from drf_spectacular import openapi
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from orchestrator.api.errors import PROBLEM_CONTENT_TYPE

__all__ = [
    "AutoSchema",
    "DocsVisibility",
    "Resource",
    "add_json_schema_components",
    "error_statuses",
]


@dataclass(frozen=True)
class Resource:
    """How a viewset's operations are named: its tag, and the nouns of its ids."""

    tag: str
    singular: str
    plural: str


# Router basename -> resource. A viewset missing here fails the document's generation.
RESOURCES: dict[str, Resource] = {
    "tenant": Resource("tenants", "tenant", "tenants"),
    "member": Resource("members", "member", "members"),
    "service-account": Resource("service-accounts", "service_account", "service_accounts"),
    "token": Resource("tokens", "token", "tokens"),
    "audit-event": Resource("audit-events", "audit_event", "audit_events"),
    "workflow": Resource("workflows", "workflow", "workflows"),
    "workflow-version": Resource("versions", "version", "versions"),
    "run": Resource("runs", "run", "runs"),
    "workflow-run": Resource("runs", "workflow_run", "workflow_runs"),
    "task-instance": Resource("task-instances", "task_instance", "task_instances"),
    "backfill": Resource("backfills", "backfill", "backfills"),
    "workflow-backfill": Resource("backfills", "workflow_backfill", "workflow_backfills"),
    "connection": Resource("connections", "connection", "connections"),
    "variable": Resource("variables", "variable", "variables"),
    "secret": Resource("secrets", "secret", "secrets"),
    "event": Resource("events", "event", "events"),
    "package": Resource("packages", "package", "packages"),
    "pool": Resource("pools", "pool", "pools"),
    "notification-channel": Resource(
        "notification-channels", "notification_channel", "notification_channels"
    ),
    "notification-rule": Resource("notification-rules", "notification_rule", "notification_rules"),
    "delivery": Resource("deliveries", "delivery", "deliveries"),
    "sla-miss": Resource("sla-misses", "sla_miss", "sla_misses"),
    "grant": Resource("grants", "grant", "grants"),
    "webhook": Resource("webhooks", "webhook", "webhooks"),
    "webhook-secret": Resource("webhooks", "webhook_secret", "webhook_secrets"),
    "dataset": Resource("datasets", "dataset", "datasets"),
    "dataset-update": Resource("datasets", "dataset_update", "dataset_updates"),
    "lineage": Resource("lineage", "lineage", "lineage"),
    "git-source": Resource("git-sources", "git_source", "git_sources"),
}

# Where the usual `<verb>_<noun>` would not say what the operation does.
OPERATION_IDS: dict[tuple[str, str], str] = {
    ("tenant", "destroy"): "archive_tenant",
    ("member", "create"): "add_member",
    ("member", "destroy"): "remove_member",
    ("token", "destroy"): "revoke_token",
    ("workflow", "update"): "apply_workflow",
    ("workflow", "schedule"): "get_workflow_schedule",
    ("workflow-version", "diff"): "diff_versions",
    ("workflow-run", "create"): "trigger_run",
    ("workflow-backfill", "create"): "create_backfill",
    ("task-instance", "logs"): "get_task_instance_logs",
    ("package", "create"): "upload_package",
    ("package", "download"): "download_package",
    ("dataset", "by_name"): "get_dataset",
    ("lineage", "graph"): "get_lineage_graph",
    ("lineage", "workflow"): "get_workflow_lineage",
    ("lineage", "run"): "get_run_lineage",
}

CRUD_VERBS = {
    "list": "list",
    "retrieve": "get",
    "create": "create",
    "update": "replace",
    "partial_update": "update",
    "destroy": "delete",
}

# Views' actions whose service can refuse with 409 Conflict (a name taken, a state that
# does not allow it, the last owner, a quota, an Idempotency-Key reused with another body).
CONFLICTS: dict[str, frozenset[str]] = {
    "tenant": frozenset({"create"}),
    "member": frozenset({"create", "partial_update", "destroy"}),
    "service-account": frozenset({"create"}),
    "token": frozenset({"create", "destroy"}),
    "workflow": frozenset({"create", "update", "destroy", "apply_files"}),
    "workflow-run": frozenset({"create"}),
    "run": frozenset({"cancel", "retry"}),
    "task-instance": frozenset({"clear", "mark_success", "mark_failed"}),
    "workflow-backfill": frozenset({"create"}),
    "backfill": frozenset({"pause", "resume", "cancel"}),
    "connection": frozenset({"create"}),
    "variable": frozenset({"create"}),
    "secret": frozenset({"create"}),
    "notification-channel": frozenset({"create", "partial_update", "destroy", "rotate_secret"}),
    "notification-rule": frozenset({"create", "partial_update"}),
    "delivery": frozenset({"retry"}),
    "package": frozenset({"create"}),
    "pool": frozenset({"create", "destroy"}),
    "git-source": frozenset({"create"}),
}

# One name and type per path parameter across the API.
PATH_PARAMETERS: dict[str, tuple[dict[str, Any], str]] = {
    "tenant": ({"type": "string"}, "the tenant's slug"),
    "username": ({"type": "string"}, "the member's user name"),
    "service_account": ({"type": "string"}, "the service account's name"),
    "token_prefix": ({"type": "string"}, "the token's prefix (`orc_<prefix>_...`)"),
    "event_id": ({"type": "integer"}, "the audit event's id"),
    "workflow": ({"type": "string"}, "the workflow's name"),
    "version": ({"type": "integer"}, "the version's number"),
    "run_id": ({"type": "integer"}, "the run's id"),
    "task_id": ({"type": "string"}, "the task's id in the spec"),
    "backfill_id": ({"type": "integer"}, "the backfill's id"),
    "connection": ({"type": "string"}, "the connection's name"),
    "variable": ({"type": "string"}, "the variable's name"),
    "secret": ({"type": "string"}, "the secret's name"),
    "event": ({"type": "string", "format": "uuid"}, "the event's id (its CloudEvent id)"),
    "channel": ({"type": "string"}, "the notification channel's name"),
    "rule": ({"type": "string"}, "the notification rule's name"),
    "delivery_id": ({"type": "integer"}, "the delivery's id"),
    "sla_miss_id": ({"type": "integer"}, "the SLA miss's id"),
    "package_id": ({"type": "integer"}, "the package version's id"),
    "pool": ({"type": "string"}, "the pool's name"),
    "webhook": ({"type": "string"}, "the webhook's name in the workflow's triggers"),
    "secret_id": ({"type": "integer"}, "the webhook signing secret's id"),
    "grant_id": ({"type": "integer"}, "the grant's id"),
    "git_source": ({"type": "string"}, "the git source's name"),
}

ERROR_DESCRIPTIONS = {
    400: "The request is invalid: `errors` lists each field path and what it accepts.",
    401: "No credentials, or credentials that are malformed, unknown, expired or revoked.",
    403: "Your role in the tenant does not allow this.",
    404: "No such object in this tenant (another tenant's objects are 404 too).",
    409: "The object's state does not allow this, or the name is taken.",
    413: "The request body is larger, or nested deeper, than the API accepts.",
    415: "The request body's Content-Type is not one the operation accepts.",
    429: "Too many requests: wait `Retry-After` seconds.",
}

RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before the next request.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def error_statuses(
    *, has_input: bool, has_body: bool, authenticated: bool, has_target: bool, conflicts: bool
) -> list[int]:
    """The error statuses an operation answers with, from what it takes and does."""
    statuses = [400] if has_input else []
    statuses += [401, 403] if authenticated else []
    statuses += [404] if has_target else []
    statuses += [409] if conflicts else []
    statuses += [413, 415] if has_body else []
    return [*statuses, 429]


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema with this API's names and error answers."""

    def _basename(self) -> str | None:
        return getattr(self.view, "basename", None)

    def _action(self) -> str:
        return str(getattr(self.view, "action", None) or self.method_mapping[self.method.lower()])

    def _resource(self) -> Resource | None:
        basename = self._basename()
        if basename is None:
            return None
        if basename not in RESOURCES:
            raise KeyError(f"orchestrator.api.schema.RESOURCES has no entry for {basename!r}")
        return RESOURCES[basename]

    def get_tags(self) -> list[str]:
        resource = self._resource()
        return [resource.tag] if resource is not None else super().get_tags()

    def get_operation_id(self) -> str:
        resource, basename, action = self._resource(), self._basename(), self._action()
        if resource is None or basename is None:
            return super().get_operation_id()
        if (basename, action) in OPERATION_IDS:
            return OPERATION_IDS[(basename, action)]
        if action == "list":
            return f"list_{resource.plural}"
        if action in CRUD_VERBS:
            return f"{CRUD_VERBS[action]}_{resource.singular}"
        verb, _, rest = action.partition("_")  # mark_success -> mark_task_instance_success
        return "_".join(part for part in (verb, resource.singular, rest) if part)

    def _is_authenticated(self) -> bool:
        if not self.view.get_authenticators():
            return False
        return not all(isinstance(p, AllowAny) for p in self.view.get_permissions())

    def get_operation(
        self,
        path: str,
        path_regex: str,
        path_prefix: str,
        method: str,
        registry: Any,
    ) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = super().get_operation(
            path, path_regex, path_prefix, method, registry
        )
        if operation is None:
            return None
        parameters = operation.get("parameters", [])
        for parameter in parameters:
            if parameter["in"] == "path":
                self._name_path_parameter(parameter)
        if len(self._success_content_types(operation)) <= 1:
            # DRF's `?format=` only matters where an answer comes in more than one type.
            parameters[:] = [p for p in parameters if (p["name"], p["in"]) != ("format", "query")]
            if not parameters:
                operation.pop("parameters", None)
        has_body = "requestBody" in operation
        conflicts = self._action() in CONFLICTS.get(self._basename() or "", frozenset())
        statuses = error_statuses(
            has_input=has_body or any(p["in"] in ("query", "header") for p in parameters),
            has_body=has_body,
            authenticated=self._is_authenticated(),
            has_target=any(p["in"] == "path" for p in parameters),
            conflicts=conflicts,
        )
        # Imported here: the serializers' module imports the views' base, whose
        # @extend_schema asks DRF for this module's AutoSchema while it is being imported.
        from orchestrator.api.serializers import ProblemSerializer

        problem = self.resolve_serializer(ProblemSerializer, "response").ref
        responses = operation["responses"]
        for status in statuses:
            response: dict[str, Any] = {
                "description": ERROR_DESCRIPTIONS[status],
                "content": {PROBLEM_CONTENT_TYPE: {"schema": problem}},
            }
            if status == 429:
                response["headers"] = RETRY_AFTER_HEADER
            responses.setdefault(str(status), response)
        return operation

    def _name_path_parameter(self, parameter: dict[str, Any]) -> None:
        name = parameter["name"]
        if name not in PATH_PARAMETERS:
            raise KeyError(f"path parameter {{{name}}} of {self.path}: add it to PATH_PARAMETERS")
        schema, description = PATH_PARAMETERS[name]
        parameter["schema"] = dict(schema)
        parameter["description"] = description

    @staticmethod
    def _success_content_types(operation: dict[str, Any]) -> set[str]:
        return {
            content_type
            for status, response in operation["responses"].items()
            if status.startswith("2")
            for content_type in response.get("content", {})
        }

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        """In answers, every field is there (null when it has no value), except those a
        serializer names in `optional_output_fields`: clients need not test for absence."""
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)  # type: ignore[no-untyped-call]
        if direction == "response":
            optional = set(getattr(serializer, "optional_output_fields", ()))
            required = [name for name in schema.get("properties", {}) if name not in optional]
            if required:
                schema["required"] = sorted(required)
        return schema


class DocsVisibility(BasePermission):
    """Who may read /api/schema/ and /api/docs/: anyone when API_DOCS_PUBLIC is on (the
    default with DEBUG=1), signed-in users and token holders otherwise."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if settings.API_DOCS_PUBLIC:
            return True
        return bool(request.user and request.user.is_authenticated)


# --- JSON Schema documents as components ---------------------------------------------


def _rewrite(node: Any, refs: dict[str, str]) -> Any:
    """A JSON Schema node with `#/$defs/X` refs pointed at components, `$schema` and titles
    dropped, and discriminators OpenAPI cannot express (a mapping to a nested discriminator,
    which pydantic writes for nested tagged unions) left out: `oneOf` still decides."""
    if isinstance(node, list):
        return [_rewrite(item, refs) for item in node]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("$schema", "$defs", "title"):
            continue  # titles would name generated classes, clashing with the API's own
        if key == "$ref" and isinstance(value, str) and value in refs:
            result[key] = refs[value]
        elif key == "discriminator":
            mapping = value.get("mapping", {})
            if all(isinstance(target, str) for target in mapping.values()):
                result[key] = {
                    **value,
                    "mapping": {name: refs.get(ref, ref) for name, ref in mapping.items()},
                }
        else:
            result[key] = _rewrite(value, refs)
    return result


def add_json_schema_components(
    document: dict[str, Any], name: str, json_schema: dict[str, Any]
) -> dict[str, Any]:
    """Put a JSON Schema (2020-12, as pydantic writes it) into the document's components as
    `name`, its `$defs` as `name` + def name; returns the document."""
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    definitions: dict[str, Any] = json_schema.get("$defs", {})
    refs = {f"#/$defs/{d}": f"#/components/schemas/{name}{d}" for d in definitions}
    for definition, schema in definitions.items():
        schemas[f"{name}{definition}"] = _rewrite(copy.deepcopy(schema), refs)
    schemas[name] = _rewrite(copy.deepcopy(json_schema), refs)
    document["components"]["schemas"] = dict(sorted(schemas.items()))
    return document
