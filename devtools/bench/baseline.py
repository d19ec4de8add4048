"""The raw-Celery floor: the same broker, the same number of worker processes, the same
delivery settings as the engine (late acks, prefetch 1, JSON), no database. Its own
Celery app, so its workers load nothing of Django. Besides the no-op, `baseline.step` calls
the python benchmarks' trivial function (devtools/bench/team_function.py, the same text as
the module of the package the engine's python tasks call) in the worker itself.

    celery -A devtools.bench.baseline worker -c 1

reads BENCH_BROKER_URL and BENCH_KEY_PREFIX from the environment."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery, chain, chord

from devtools.bench import team_function

__all__ = [
    "app",
    "chain_seconds",
    "chord_seconds",
    "configure",
    "noop",
    "step",
    "step_chain_seconds",
    "step_chord_seconds",
]

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


@app.task(name="baseline.step")
def step(n: int = 0) -> dict[str, int]:
    return team_function.step(n)


def chain_seconds(length: int) -> float:
    """Wall time of a chain of `length` no-op tasks, from send to the last result."""
    return _chain_seconds([noop.si() for _ in range(length)])


def chord_seconds(width: int) -> float:
    """Wall time of a chord: `width` parallel no-op tasks, then one callback."""
    return _chord_seconds([noop.si() for _ in range(width)], noop.si())


def step_chain_seconds(length: int) -> float:
    """As `chain_seconds`, each task calling the trivial function (with n = its index)."""
    return _chain_seconds([step.si(n=i) for i in range(length)])


def step_chord_seconds(width: int) -> float:
    """As `chord_seconds`, each task (the callback too) calling the trivial function."""
    return _chord_seconds([step.si(n=i) for i in range(width)], step.si(n=width))


def _chain_seconds(signatures: list[Any]) -> float:
    started = time.perf_counter()
    result = chain(*signatures).apply_async()
    result.get(timeout=300, interval=0.001)
    return time.perf_counter() - started


def _chord_seconds(header: list[Any], callback: Any) -> float:
    started = time.perf_counter()
    result = chord(header)(callback)
    result.get(timeout=300, interval=0.001)
    return time.perf_counter() - started
