"""DRF authentication classes: bearer API tokens and browser sessions."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from orchestrator.authentication import TokenRejected, authenticate_bearer

__all__ = ["BearerTokenAuthentication", "SessionAuthentication"]

SessionAuthentication = authentication.SessionAuthentication


class BearerTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        try:
            return authenticate_bearer(header)
        except TokenRejected as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="orchestrator"'


class BearerTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[misc,no-untyped-call]
    """Describes the bearer token in the OpenAPI schema."""

    target_class = BearerTokenAuthentication
    name = "bearerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "orc_<prefix>_<secret>"}
