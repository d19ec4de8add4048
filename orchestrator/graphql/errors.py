"""Domain errors as GraphQL errors with `extensions.code` (DESIGN.md section 7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import OperationalError
from graphql import GraphQLError, GraphQLResolveInfo
from rest_framework import serializers
from strawberry.extensions import SchemaExtension

from orchestrator.api.errors import flatten_errors
from orchestrator.errors import Conflict, DomainError, FieldError, Forbidden, Invalid, NotFound
from orchestrator.statement_timeout import is_statement_timeout, timeout_message

__all__ = [
    "CALLER_ERROR_CODES",
    "DomainErrorExtension",
    "bad_input",
    "classify_caller_errors",
    "unauthenticated",
    "validate",
]

CODES: dict[type[DomainError], str] = {
    NotFound: "NOT_FOUND",
    Forbidden: "FORBIDDEN",
    Invalid: "BAD_USER_INPUT",
    Conflict: "CONFLICT",
}


# The `extensions.code`s of errors the caller caused (not INTERNAL_SERVER_ERROR, TIMEOUT).
CALLER_ERROR_CODES = frozenset(
    {
        "BAD_USER_INPUT",
        "CONFLICT",
        "FORBIDDEN",
        "NOT_FOUND",
        "QUERY_TOO_COSTLY",
        "RATE_LIMITED",
        "REQUEST_TOO_LARGE",
        "UNAUTHENTICATED",
    }
)
CALLER_ERROR_CLASSIFICATION = "BAD_REQUEST"


def classify_caller_errors(errors: list[dict[str, Any]]) -> None:
    """Mark each formatted error the caller caused with `extensions.classification`
    BAD_REQUEST, the word generic GraphQL clients and fuzzers read (Spring GraphQL's
    ErrorType, schemathesis): a resolver's NOT_FOUND is the caller's mistake, not a failure
    of the server. Errors without one of those codes stay unmarked."""
    for error in errors:
        extensions = error.get("extensions")
        if isinstance(extensions, dict) and extensions.get("code") in CALLER_ERROR_CODES:
            extensions.setdefault("classification", CALLER_ERROR_CLASSIFICATION)


def unauthenticated(message: str = "sign in or send Authorization: Bearer <token>") -> GraphQLError:
    return GraphQLError(message, extensions={"code": "UNAUTHENTICATED"})


def bad_input(errors: list[FieldError]) -> GraphQLError:
    message = "; ".join(f"{p}: {m}" if p else m for p, m in errors)
    return GraphQLError(
        message,
        extensions={
            "code": "BAD_USER_INPUT",
            "errors": [{"path": p, "message": m} for p, m in errors],
        },
    )


def validate(
    serializer_class: type[serializers.Serializer[Any]], data: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """Validate mutation input with the REST serializer, so both check the same rules."""
    serializer = serializer_class(data={k: v for k, v in data.items() if v is not None}, **kwargs)
    if not serializer.is_valid():
        raise bad_input(list(flatten_errors(serializer.errors)))
    return dict(serializer.validated_data)


class DomainErrorExtension(SchemaExtension):
    def resolve(
        self,
        _next: Callable[..., Any],
        root: Any,
        info: GraphQLResolveInfo[Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        try:
            return _next(root, info, *args, **kwargs)
        except DomainError as exc:
            code = next((c for kind, c in CODES.items() if isinstance(exc, kind)), None)
            extensions: dict[str, Any] = {"code": code or "INTERNAL_SERVER_ERROR"}
            if isinstance(exc, Invalid):
                extensions["errors"] = exc.details()
            raise GraphQLError(exc.message, extensions=extensions) from exc
        except OperationalError as exc:
            if not is_statement_timeout(exc):
                raise
            raise GraphQLError(timeout_message(), extensions={"code": "TIMEOUT"}) from exc
