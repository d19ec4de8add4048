"""Cursor pages as DESIGN.md section 7 says: `?limit=&cursor=` in, `{results, next}` out."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, pagination
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrator.integers import ascii_int

__all__ = ["CursorPagination"]


class CursorPagination(pagination.CursorPagination):
    page_size = 50
    max_page_size = 500
    page_size_query_param = "limit"
    ordering = "-id"

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or raw == "":
            return self.page_size
        limit = ascii_int(raw, maximum=self.max_page_size)
        if limit is None or limit < 1:
            raise exceptions.ValidationError(
                {"limit": [f"must be an integer from 1 to {self.max_page_size}"]}
            )
        return limit

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.ValidationError(
                {"cursor": ["invalid cursor: pass the `next` link of a previous page as it is"]}
            ) from None

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"results": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {"type": ["string", "null"], "format": "uri"},
            },
        }
