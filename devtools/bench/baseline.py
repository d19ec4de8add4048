"""The raw-Celery floor: the same broker, the same number of worker processes, the same
delivery settings as the engine (late acks, prefetch 1, JSON), no database. Its own
Celery app, so its workers load nothing of Django.

    celery -A devtools.bench.baseline worker -c 1

reads BENCH_BROKER_URL and BENCH_KEY_PREFIX from the environment."""

from __future__ import annotations

import os
import time

from celery import Celery, chain, chord

__all__ = ["app", "chain_seconds", "chord_seconds", "configure", "noop"]

app = Celery("baseline", set_as_current=False)  # the engine keeps its own app


def configure(broker: str, prefix: str) -> None:
    """Point the app at the broker (as the workers' environment does for them)."""
    options = {"global_keyprefix": prefix}
    app.conf.update(
        broker_url=broker,
        result_backend=broker,  # a chord needs results; so does waiting for a chain's end
        broker_transport_options=options,
        result_backend_transport_options=options,
    )


configure(
    os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/2"),
    os.environ.get("BENCH_KEY_PREFIX", "orc-bench-baseline:"),
)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="baseline.noop")
def noop(*args: object) -> None:
    return None


def chain_seconds(length: int) -> float:
    """Wall time of a chain of `length` no-op tasks, from send to the last result."""
    started = time.perf_counter()
    result = chain(*(noop.si() for _ in range(length))).apply_async()
    result.get(timeout=300, interval=0.001)
    return time.perf_counter() - started


def chord_seconds(width: int) -> float:
    """Wall time of a chord: `width` parallel no-op tasks, then one callback."""
    started = time.perf_counter()
    result = chord(noop.si() for _ in range(width))(noop.si())
    result.get(timeout=300, interval=0.001)
    return time.perf_counter() - started
