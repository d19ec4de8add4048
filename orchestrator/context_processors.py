"""Template context every page of the platform gets (the admin's, later the portal's)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

__all__ = ["platform"]


def platform(request: HttpRequest) -> dict[str, Any]:
    return {"task_sandbox_off": settings.TASK_SANDBOX == "off"}
