"""/graphql: the same authentication as REST (bearer token or session with CSRF)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware, get_token
from django.views.decorators.csrf import csrf_exempt
from strawberry.django.context import StrawberryDjangoContext
from strawberry.django.views import GraphQLView
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from orchestrator.actors import Actor
from orchestrator.authentication import TokenRejected, authenticate_bearer
from orchestrator.graphql.errors import classify_caller_errors
from orchestrator.graphql.schema import schema
from orchestrator.integers import ascii_int
from orchestrator.limits import NestingTooDeep, check_graphql_nesting, check_json_nesting

__all__ = ["GraphQLContext", "graphql_view"]


@dataclass
class GraphQLContext(StrawberryDjangoContext):
    actor: Actor | None = None


def _no_view(request: HttpRequest) -> HttpResponse:  # CSRF checks need a view; any will do
    return HttpResponse()


def _reject(message: str, status: int) -> JsonResponse:
    return _error(message, "UNAUTHENTICATED" if status == 401 else "FORBIDDEN", status)


def _error(message: str, code: str, status: int) -> JsonResponse:
    errors: list[dict[str, Any]] = [{"message": message, "extensions": {"code": code}}]
    classify_caller_errors(errors)
    return JsonResponse({"data": None, "errors": errors}, status=status)


def _too_large(size: int | None = None) -> JsonResponse:
    got = f" ({size} bytes)" if size is not None else ""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    message = f"the request body{got} is larger than {limit} bytes, the limit"
    return _error(message, "REQUEST_TOO_LARGE", 413)


def _check_nesting(request: HttpRequest) -> None:
    """The body's JSON (variables included) and the query document, before the recursive
    parsers see them: raises NestingTooDeep."""
    if request.method == "GET":
        check_json_nesting(request.GET.get("variables", ""))
        check_graphql_nesting(request.GET.get("query", ""))
        return
    if request.content_type != "application/json":
        return  # strawberry refuses it
    check_json_nesting(request.body)
    try:
        data = json.loads(request.body)
    except ValueError:
        return  # strawberry answers malformed JSON
    if isinstance(data, dict) and isinstance(data.get("query"), str):
        check_graphql_nesting(data["query"])


def _refuse_unbounded(request: HttpRequest) -> JsonResponse | None:
    """413 for a body past DATA_UPLOAD_MAX_MEMORY_SIZE, 400 for one nested too deep."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if (size := ascii_int(declared)) is not None and size > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        return _too_large(size)
    try:
        _check_nesting(request)
    except RequestDataTooBig:
        return _too_large()
    except NestingTooDeep as exc:
        return _error(str(exc), "BAD_USER_INPUT", 400)
    return None


class OrchestratorGraphQLView(GraphQLView[GraphQLContext, None]):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Django makes a view instance per request, so the setting is read per request.
        self.graphql_ide = "graphiql" if settings.GRAPHIQL else None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if (refused := _refuse_unbounded(request)) is not None:
            return refused
        token = None
        try:
            resolved = authenticate_bearer(request.headers.get("Authorization", ""))
        except TokenRejected as exc:
            return _reject(str(exc), 401)
        if resolved is not None:
            request.user, token = resolved  # type: ignore[assignment]
        elif request.method == "POST" and request.user.is_authenticated:
            # Browser sessions must prove the request came from our pages (as DRF does).
            reason = CsrfViewMiddleware(_no_view).process_view(request, _no_view, (), {})
            if reason is not None:
                return _reject("CSRF check failed for a session-authenticated request", 403)
        request.graphql_actor = Actor(  # type: ignore[attr-defined]
            user=request.user,
            source="graphql",
            token=token,
            request_id=getattr(request, "request_id", None),
        )
        return super().dispatch(request, *args, **kwargs)

    def render_graphql_ide(self, request: HttpRequest) -> HttpResponse:
        """GraphiQL sends the csrftoken cookie back as its CSRF header: make sure it is set."""
        get_token(request)
        return super().render_graphql_ide(request)

    def process_result(self, request: HttpRequest, result: ExecutionResult) -> GraphQLHTTPResponse:
        response = super().process_result(request, result)
        classify_caller_errors(cast(list[dict[str, Any]], response.get("errors") or []))
        return response

    def get_context(self, request: HttpRequest, response: HttpResponse) -> GraphQLContext:
        return GraphQLContext(request=request, response=response, actor=request.graphql_actor)  # type: ignore[attr-defined]


# GraphiQL (settings.GRAPHIQL) is templates/graphql/graphiql.html, from this service's files.
graphql_view = csrf_exempt(OrchestratorGraphQLView.as_view(schema=schema))
