"""The public endpoint of inbound webhooks, POST /hooks/<uid>: no session, no token, no
CSRF (the signature is the credential); answers in JSON (problems as problem+json)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from events.webhooks import receive, too_large
from orchestrator.hooks import not_allowed, respond

__all__ = ["webhook"]


@csrf_exempt
def webhook(request: HttpRequest, uid: str) -> JsonResponse:
    declared = request.headers.get("Content-Length", "")
    if request.method != "POST":
        received = not_allowed(request.method or "", "a webhook URL")
    elif declared.isdigit() and int(declared) > settings.WEBHOOK_MAX_BYTES:  # not even read
        received = too_large()
    else:
        received = receive(uid=uid, headers=request.headers, body=request.body)
    return respond(received)
