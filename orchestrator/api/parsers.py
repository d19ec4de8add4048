"""Request bodies within bounds: at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes (413) and JSON
nested at most MAX_NESTING_DEPTH levels (400), checked before the JSON parser recurses."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser

from orchestrator.integers import ascii_int
from orchestrator.limits import NestingTooDeep, check_json_nesting

__all__ = ["BoundedJSONParser", "RequestTooLarge", "read_bounded_body"]


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"

    def __init__(self, size: int | None = None) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        got = f" ({size} bytes)" if size is not None else ""
        super().__init__(f"the request body{got} is larger than {limit} bytes, the limit")


def read_bounded_body(stream: Any, parser_context: Mapping[str, Any] | None) -> bytes:
    """The body, or RequestTooLarge as soon as its Content-Length or its bytes pass the limit."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    request = (parser_context or {}).get("request")
    if request is not None:
        declared = request.META.get("CONTENT_LENGTH") or ""
        if (size := ascii_int(declared)) is not None and size > limit:
            raise RequestTooLarge(size)
    raw: bytes = stream.read(limit + 1) if stream is not None else b""
    if len(raw) > limit:
        raise RequestTooLarge()
    return raw


class BoundedJSONParser(JSONParser):
    """DRF's JSONParser behind the size and nesting limits."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        raw = read_bounded_body(stream, parser_context)
        try:
            check_json_nesting(raw)
        except NestingTooDeep as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        return super().parse(io.BytesIO(raw), media_type, parser_context)
