"""The public endpoint of git push webhooks, POST /hooks/git/<uid>: no session, no token,
no CSRF (the signature is the credential); answers in JSON (problems as problem+json)."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from gitsync.services import Received, receive_push

__all__ = ["push_webhook"]


@csrf_exempt
def push_webhook(request: HttpRequest, uid: str) -> JsonResponse:
    if request.method != "POST":
        received = Received(
            405,
            {
                "type": "urn:orchestrator:problem:method-not-allowed",
                "title": "Method Not Allowed",
                "status": 405,
                "detail": f"a git webhook URL takes POST only, not {request.method}",
            },
            {"Allow": "POST"},
        )
    else:
        try:
            body = request.body
        except RequestDataTooBig:
            body = None
        received = (
            receive_push(uid=uid, headers=request.headers, body=body)
            if body is not None
            else Received(
                413,
                {
                    "type": "urn:orchestrator:problem:payload-too-large",
                    "title": "Payload Too Large",
                    "status": 413,
                    "detail": "the push payload is larger than API_MAX_BODY_BYTES",
                },
            )
        )
    response = JsonResponse(
        received.body,
        status=received.status,
        content_type="application/json" if received.status < 400 else "application/problem+json",
    )
    for name, value in received.headers.items():
        response[name] = value
    return response
