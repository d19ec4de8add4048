"""The Celery app (the standard pattern) and the guards at a worker's or beat's start: no
in-process broker outside `manage.py standalone`, no built-in SECRET_KEY with DEBUG off."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

app = Celery("orchestrator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def queue_task(task_name: str, *args: Any) -> None:
    """Queue the task named `task_name` (its wire name; CELERY_TASK_ROUTES picks its queue)
    with `args`. By name, through this app, as the engine sends its own: a service queues
    its app's task without importing the tasks module, which imports the service."""
    app.send_task(task_name, args, ignore_result=True)


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


def _refuse_to_start_misconfigured() -> None:
    """A worker or beat starts only with a real broker and, with DEBUG off, a SECRET_KEY
    of its own (Celery logs and swallows a signal handler's exception: exit instead)."""
    from django.core.exceptions import ImproperlyConfigured

    from orchestrator.checks import require_secret_key

    require_real_broker()
    try:
        require_secret_key()
    except ImproperlyConfigured as refused:
        os.write(2, f"error: {refused}\n".encode())
        raise SystemExit(2) from None


@signals.worker_init.connect
def _check_worker_configuration(**kwargs: Any) -> None:
    _refuse_to_start_misconfigured()
    from orchestrator import tracing

    tracing.setup()  # traces when an OTLP endpoint is set (a forked child inherits it)


@signals.beat_init.connect
def _check_beat_configuration(**kwargs: Any) -> None:
    _refuse_to_start_misconfigured()


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    """The worker's liveness for /metrics (orc_worker_up): its main process says it is alive
    every METRICS_HEARTBEAT_SECONDS from a daemon thread, which dies with it."""
    from orchestrator import metrics

    hostname = str(getattr(sender, "hostname", None) or f"worker@{os.uname().nodename}")
    # Its task slots and queues, for fair share between tenants (runs.engine.fairshare).
    # The signal's sender is the worker's Consumer (its `controller` the WorkController).
    controller = getattr(sender, "controller", None) or sender
    slots = int(getattr(controller, "concurrency", 0) or 0)
    task_consumer = getattr(sender, "task_consumer", None)
    queues = [str(q.name) for q in getattr(task_consumer, "queues", None) or []]

    def beat() -> None:
        from django.conf import settings

        while True:
            try:
                metrics.heartbeat(hostname, slots=slots, queues=queues)
            except Exception:  # Redis away: the next beat tries again
                logging.getLogger(__name__).warning("metrics: heartbeat failed", exc_info=True)
            time.sleep(float(settings.METRICS_HEARTBEAT_SECONDS))

    threading.Thread(target=beat, name="metrics-heartbeat", daemon=True).start()


@signals.worker_process_shutdown.connect
def _flush_metrics(**kwargs: Any) -> None:
    """A worker child's last counts, before it goes (a killed one loses its last interval)."""
    from orchestrator import metrics

    try:
        metrics.flush()
    except Exception:  # Redis away: nothing to do about it now
        logging.getLogger(__name__).warning("metrics: last flush failed", exc_info=True)


def broker_reachable(celery_app: Celery, timeout: int = 2) -> str | None:
    """None when the broker answers, else why not."""
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # report any failure as not ready
        return f"{type(exc).__name__}: {exc}"
    return None
