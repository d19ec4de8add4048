"""Every REST error as application/problem+json (RFC 9457), with dotted field paths."""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler

from orchestrator.api.parsers import RequestTooLarge
from orchestrator.errors import Conflict, DomainError, FieldError, Forbidden, Invalid, NotFound
from orchestrator.statement_timeout import is_statement_timeout, timeout_message

__all__ = ["PROBLEM_CONTENT_TYPE", "flatten_errors", "problem", "problem_exception_handler"]

PROBLEM_CONTENT_TYPE = "application/problem+json"


def flatten_errors(detail: Any, path: str = "") -> Iterator[FieldError]:
    """DRF's nested error detail as (path, message) pairs: `a.b[0].c`."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == api_settings.NON_FIELD_ERRORS_KEY:
                sub = path
            elif isinstance(key, int):
                sub = f"{path}[{key}]"
            else:
                sub = f"{path}.{key}" if path else str(key)
            yield from flatten_errors(value, sub)
    elif isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            for item in detail:
                yield path, str(item)
        else:
            for index, item in enumerate(detail):
                if item:
                    yield from flatten_errors(item, f"{path}[{index}]")
    else:
        yield path, str(detail)


def problem(
    status_code: int, detail: str, *, code: str, errors: list[FieldError] | None = None
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:orchestrator:problem:{code.replace('_', '-')}",
        "title": HTTPStatus(status_code).phrase,
        "status": status_code,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = [{"path": p, "message": m} for p, m in errors]
    return Response(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class StatementTimedOut(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "statement_timeout"


def _to_drf(exc: Exception) -> Exception:
    if isinstance(exc, RequestDataTooBig):  # request.body past DATA_UPLOAD_MAX_MEMORY_SIZE
        return RequestTooLarge()
    if is_statement_timeout(exc):
        return StatementTimedOut(timeout_message())
    if isinstance(exc, NotFound):
        return exceptions.NotFound(exc.message)
    if isinstance(exc, Forbidden):
        return exceptions.PermissionDenied(exc.message)
    if isinstance(exc, Conflict):
        return ConflictError(exc.message)
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or "not found")
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    return exc


def _accepted_media(context: dict[str, Any]) -> str:
    """The request bodies the view reads, by Content-Type."""
    view = context.get("view")
    parsers: list[Any] = list(getattr(view, "parser_classes", None) or [])
    return ", ".join(dict.fromkeys(str(p.media_type) for p in parsers)) or "application/json"


def _summary(errors: list[FieldError]) -> str:
    shown = "; ".join(f"{p}: {m}" if p else m for p, m in errors[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return f"{len(errors)} invalid field{'s' if len(errors) != 1 else ''}: {shown}{more}"


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Invalid):
        detail = exc.headline or _summary(exc.errors)
        invalid = problem(400, detail, code=exc.code, errors=exc.errors)
        invalid.data["errors"] = exc.details()
        return invalid
    if isinstance(exc, exceptions.ValidationError):
        errors = list(flatten_errors(exc.detail))
        response = exception_handler(exc, context)  # keeps DRF's headers handling
        result = problem(400, _summary(errors), code="validation_error", errors=errors)
        if response is not None:
            for header, value in response.items():
                if header.lower() != "content-type":
                    result[header] = value
        return result
    exc = _to_drf(exc)
    if isinstance(exc, DomainError):
        return None
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if isinstance(exc, exceptions.UnsupportedMediaType):
        detail = f"{detail.rstrip('.')}; accepted: {_accepted_media(context)}"
    result = problem(response.status_code, detail, code=str(exc.get_codes()))
    for header, value in response.items():
        if header.lower() != "content-type":
            result[header] = value
    return result
