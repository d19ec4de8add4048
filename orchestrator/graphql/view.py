"""/graphql: the same authentication as REST (bearer token or session with CSRF)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from strawberry.django.context import StrawberryDjangoContext
from strawberry.django.views import GraphQLView

from orchestrator.actors import Actor
from orchestrator.authentication import TokenRejected, authenticate_bearer
from orchestrator.graphql.schema import schema

__all__ = ["GraphQLContext", "graphql_view"]


@dataclass
class GraphQLContext(StrawberryDjangoContext):
    actor: Actor | None = None


def _no_view(request: HttpRequest) -> HttpResponse:  # CSRF checks need a view; any will do
    return HttpResponse()


def _reject(message: str, status: int) -> JsonResponse:
    code = "UNAUTHENTICATED" if status == 401 else "FORBIDDEN"
    return JsonResponse(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]},
        status=status,
    )


class OrchestratorGraphQLView(GraphQLView[GraphQLContext, None]):
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
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

    def get_context(self, request: HttpRequest, response: HttpResponse) -> GraphQLContext:
        return GraphQLContext(request=request, response=response, actor=request.graphql_actor)  # type: ignore[attr-defined]


graphql_view = csrf_exempt(
    OrchestratorGraphQLView.as_view(
        schema=schema, graphql_ide="graphiql" if settings.DEBUG else None
    )
)
