"""YAML in and out of the REST API, for workflow specs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer

from orchestrator.api.parsers import read_bounded_body
from workflows.services import spec_yaml

__all__ = ["YAML_TYPES", "RawSpecParser", "YAMLRenderer"]

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


class RawSpecParser(BaseParser):
    """Hands the view the raw bytes (JSON or YAML), at most DATA_UPLOAD_MAX_MEMORY_SIZE of
    them (413 beyond): the view parses them within the tenant's size limit, nesting and
    alias expansion (workflows.validation.parse_document) and reports syntax errors with
    their position."""

    media_type = "*/*"

    def parse(  # type: ignore[override]  # raw bytes on purpose: the view parses them
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        return read_bounded_body(stream, parser_context)


class YAMLRenderer(BaseRenderer):
    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        response = (renderer_context or {}).get("response")
        if response is not None and response.exception:
            # Errors stay application/problem+json (JSON), whatever the client accepts.
            return JSONRenderer().render(data, accepted_media_type, renderer_context)
        return spec_yaml(data).encode() if data is not None else b""
