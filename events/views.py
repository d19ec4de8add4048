"""The public endpoint of inbound webhooks, POST /hooks/<uid>: no session, no token, no
CSRF (the signature is the credential); answers in JSON (problems as problem+json)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from events.webhooks import not_allowed, receive, too_large

__all__ = ["webhook"]


@csrf_exempt
def webhook(request: HttpRequest, uid: str) -> JsonResponse:
    declared = request.headers.get("Content-Length", "")
    if request.method != "POST":
        received = not_allowed(request.method or "")
    elif declared.isdigit() and int(declared) > settings.WEBHOOK_MAX_BYTES:  # not even read
        received = too_large()
    else:
        received = receive(uid=uid, headers=request.headers, body=request.body)
    response = JsonResponse(
        received.body,
        status=received.status,
        content_type="application/json" if received.status < 400 else "application/problem+json",
    )
    for name, value in received.headers.items():
        response[name] = value
    return response
