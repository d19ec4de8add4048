"""Deployment checks (`manage.py check --deploy`) for the platform's own keys."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_platform_keys(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not settings.ENCRYPTION_KEYS:
        messages.append(
            Warning(
                "ENCRYPTION_KEYS is not set: secret values are encrypted with a key derived "
                "from SECRET_KEY.",
                hint="Set ENCRYPTION_KEYS to one or more Fernet keys, newest first.",
                id="orchestrator.W001",
            )
        )
    if not settings.AUDIT_HMAC_KEY_FROM_ENV:
        messages.append(
            Warning(
                "AUDIT_HMAC_KEY is not set: the audit chain is keyed from SECRET_KEY, so "
                "rotating SECRET_KEY would break verification of the existing chain.",
                hint="Set AUDIT_HMAC_KEY to a long random value kept apart from database backups.",
                id="orchestrator.W002",
            )
        )
    if settings.EMBEDDED_BROKER:
        messages.append(
            Warning(
                "CELERY_BROKER_URL is not set: only the embedded mode (manage.py standalone) "
                "works.",
                hint="Set CELERY_BROKER_URL, e.g. redis://redis:6379/0.",
                id="orchestrator.W003",
            )
        )
    return messages
