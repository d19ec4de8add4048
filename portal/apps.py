from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The team-facing web pages (DESIGN.md section 10): server-rendered, htmx for the live
    parts, every asset served by the project itself."""

    name = "portal"
    verbose_name = "Portal"
