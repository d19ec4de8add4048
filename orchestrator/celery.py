"""The Celery app (the standard pattern) and the guard against the in-process broker
outside `manage.py standalone`."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

app = Celery("orchestrator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

EMBEDDED_BROKER_MESSAGE = (
    "CELERY_BROKER_URL is not set, so this process would use the in-process broker, which "
    "only `python manage.py standalone` can use (a separate worker, beat or web server "
    "would send messages nobody receives). Set CELERY_BROKER_URL (e.g. "
    "redis://127.0.0.1:6379/0) for the distributed mode, or run `python manage.py standalone`."
)

# Set by `manage.py standalone`, the one process in which the in-process broker works.
_embedded_allowed = False


def allow_embedded_broker() -> None:
    global _embedded_allowed
    _embedded_allowed = True


def require_real_broker() -> None:
    """Refuse to start a worker, beat or web server that would use the in-process broker."""
    from django.conf import settings

    if settings.EMBEDDED_BROKER and not _embedded_allowed:
        # Straight to fd 2: Celery redirects sys.stderr into its logger, which may be quiet.
        os.write(2, f"error: {EMBEDDED_BROKER_MESSAGE}\n".encode())
        raise SystemExit(2)


@signals.worker_init.connect
def _check_worker_broker(**kwargs: Any) -> None:
    require_real_broker()


@signals.beat_init.connect
def _check_beat_broker(**kwargs: Any) -> None:
    require_real_broker()


def broker_reachable(celery_app: Celery, timeout: int = 2) -> str | None:
    """None when the broker answers, else why not."""
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # report any failure as not ready
        return f"{type(exc).__name__}: {exc}"
    return None
