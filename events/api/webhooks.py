"""REST of inbound webhooks: a workflow's declared webhooks with their URLs, secrets
(prefixes and expiry only) and deliveries; a new signing secret (shown once, older ones
expiring after an overlap); revoking one. The POST endpoint itself is events.views."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from events import webhooks
from events.models import WebhookDelivery, WebhookSecret
from orchestrator.api.base import TenantScopedViewSet
from workflows.selectors import get_workflow

__all__ = ["WebhookSecretViewSet", "WebhookViewSet"]


class SigningSecretSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    prefix = serializers.CharField(help_text="the secret's first characters, to tell it apart")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="when it stops being accepted (null: until rotated)"
    )


class WebhookSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    url = serializers.CharField(
        allow_null=True, help_text="where to POST; null until it has a signing secret"
    )
    params = serializers.DictField(help_text="the run params' templates, as the spec has them")
    secrets = SigningSecretSerializer(many=True, help_text="valid and expired ones, newest first")
    deliveries = serializers.IntegerField(help_text="deliveries accepted")
    last_delivery_at = serializers.DateTimeField(allow_null=True)


class NewSigningSecretSerializer(serializers.Serializer[Any]):
    overlap = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=30 * 86400,
        default=webhooks.DEFAULT_OVERLAP,
        help_text="seconds the older secrets stay valid (default one day; 0: stop at once)",
    )


class CreatedSigningSecretSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    url = serializers.CharField()
    id = serializers.IntegerField()
    prefix = serializers.CharField()
    secret = serializers.CharField(help_text="shown this once: keep it in the sender's vault")


class WebhookViewSet(TenantScopedViewSet):
    """A workflow's webhooks (viewer)."""

    model = WebhookDelivery
    serializer_class = WebhookSerializer
    pagination_class = None
    permissions = {"list": "webhook.view"}

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workflow = get_workflow(kwargs["workflow"])
        return Response(WebhookSerializer(webhooks.webhooks_of(workflow), many=True).data)


class WebhookSecretViewSet(TenantScopedViewSet):
    """Signing secrets of one webhook: make one (editor; shown once, the older ones expire
    after `overlap` seconds), revoke one (editor)."""

    model = WebhookSecret
    serializer_class = SigningSecretSerializer
    lookup_url_kwarg = "secret_id"
    permissions = {"create": "webhook.manage", "destroy": "webhook.manage"}

    @extend_schema(
        request=NewSigningSecretSerializer, responses={201: CreatedSigningSecretSerializer}
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        given = NewSigningSecretSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        workflow = get_workflow(kwargs["workflow"])
        webhook, secret, plaintext = webhooks.create_secret(
            actor=self.actor,
            workflow=workflow,
            name=kwargs["webhook"],
            overlap=given.validated_data["overlap"],
        )
        body = {
            "name": webhook.name,
            "url": webhooks.webhook_url(webhook),
            "id": secret.pk,
            "prefix": secret.prefix,
            "secret": plaintext,
        }
        return Response(CreatedSigningSecretSerializer(body).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workflow = get_workflow(kwargs["workflow"])
        secret = webhooks.get_secret(workflow, kwargs["webhook"], kwargs["secret_id"])
        webhooks.delete_secret(actor=self.actor, secret=secret)
        return Response(status=status.HTTP_204_NO_CONTENT)
