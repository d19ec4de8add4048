"""The public endpoint of git push webhooks, POST /hooks/git/<uid>: no session, no token,
no CSRF (the signature is the credential); answers in JSON (problems as problem+json)."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from gitsync.services import receive_push
from orchestrator.hooks import not_allowed, respond, too_large

__all__ = ["push_webhook"]


@csrf_exempt
def push_webhook(request: HttpRequest, uid: str) -> JsonResponse:
    if request.method != "POST":
        return respond(not_allowed(request.method or "", "a git webhook URL"))
    try:
        body = request.body
    except RequestDataTooBig:
        return respond(too_large("the push payload is larger than API_MAX_BODY_BYTES"))
    return respond(receive_push(uid=uid, headers=request.headers, body=body))
