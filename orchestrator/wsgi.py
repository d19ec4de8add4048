"""WSGI entry point for gunicorn (distributed mode)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

application = get_wsgi_application()

from orchestrator.celery import require_real_broker  # noqa: E402  (needs settings)

require_real_broker()
