"""Prometheus metrics (docs/metrics.md): what every process counts, and `/metrics`.

Many processes count (gunicorn's web workers, each Celery worker child, beat) on many
hosts, and one scrape must see them all. So no process serves its own numbers: each adds
to an in-process buffer (a dict update, no I/O on the engine's path) that a daemon thread
flushes every METRICS_FLUSH_SECONDS into Redis hashes, one per metric, with HINCRBYFLOAT:
sums that any number of processes add to at once. The web's `/metrics` reads those hashes
(and asks the apps' collectors for what is read at scrape time: active runs, queue depth,
quotas) and renders them with prometheus-client. In the embedded mode (no Redis) the one
process keeps the sums in memory. A process killed between two flushes loses at most that
interval's counts: metrics, not records (the database has those).

Labels are bounded: tenants by id while counting, by slug when rendered; task types,
states, routes, queues: never a run, task instance or attempt id."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

__all__ = [
    "SPECS",
    "Spec",
    "collect",
    "flush",
    "heartbeat",
    "inc",
    "observe",
    "register_collector",
    "reset",
    "worker_capacity",
]

logger = logging.getLogger(__name__)

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class Spec:
    kind: str  # "counter" or "histogram"
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


# Every metric counted in a process; a name not here is a bug (KeyError), not a new series.
# Names are without the `_total` a counter is rendered with.
SPECS: dict[str, Spec] = {
    "orc_runs_created": Spec(
        "counter", "Runs created, by how they were triggered.", ("tenant", "source")
    ),
    "orc_runs_finished": Spec("counter", "Runs that ended, by final state.", ("tenant", "state")),
    "orc_task_attempts_started": Spec(
        "counter", "Task tries claimed by a worker.", ("tenant", "task_type")
    ),
    "orc_task_attempts_finished": Spec(
        "counter",
        "Task tries that ended, by state (rescheduled: a sensor's check said not yet).",
        ("tenant", "task_type", "state"),
    ),
    "orc_task_duration_seconds": Spec(
        "histogram",
        "How long a task try ran, from its claim to its end.",
        ("tenant", "task_type"),
        DURATION_BUCKETS,
    ),
    "orc_task_queued_seconds": Spec(
        "histogram",
        "How long a task try waited from queued to claimed by a worker.",
        ("tenant", "task_type"),
        LATENCY_BUCKETS,
    ),
    "orc_scheduler_firings": Spec("counter", "Runs the cron scheduler created.", ("tenant",)),
    "orc_scheduler_lag_seconds": Spec(
        "histogram",
        "How late the scheduler's tick fired a due schedule.",
        (),
        LATENCY_BUCKETS,
    ),
    "orc_scheduler_ticks": Spec("counter", "Scheduler ticks run."),
    "orc_reconciler_actions": Spec(
        "counter",
        "What the reconciler did, by action: expired_leases (tries whose worker died), "
        "resent_messages (queued tries whose message was lost), timed_out, ...",
        ("action",),
    ),
    "orc_reconciler_runs": Spec("counter", "Reconciler passes run."),
    "orc_task_lost_tries": Spec(
        "counter", "Tries lost with their worker (lease expired) and run again.", ("tenant",)
    ),
    "orc_notification_deliveries": Spec(
        "counter", "Notification delivery attempts, by outcome.", ("tenant", "kind", "status")
    ),
    "orc_retention_deleted": Spec(
        "counter", "Rows the retention job deleted, by table.", ("table",)
    ),
    "orc_http_request_duration_seconds": Spec(
        "histogram",
        "API and portal request latency, by route pattern, method and status class.",
        ("route", "method", "status"),
        REQUEST_BUCKETS,
    ),
}

# --- counting -------------------------------------------------------------------------------

_lock = threading.Lock()
_counters: dict[tuple[str, tuple[str, ...]], float] = {}
_histograms: dict[tuple[str, tuple[str, ...]], list[float]] = {}  # buckets..., +Inf, sum
_pid = 0
_flusher: threading.Thread | None = None


def _labels(name: str, labels: dict[str, Any]) -> tuple[str, ...]:
    spec = SPECS[name]
    return tuple(str(labels[label]) for label in spec.labels)


def inc(name: str, value: float = 1, **labels: Any) -> None:
    """Add to a counter (after the commit, when called in a transaction: a rolled back
    change counts nothing)."""
    key = (name, _labels(name, labels))
    _after_commit(lambda: _add(key, value))


def observe(name: str, value: float, **labels: Any) -> None:
    """Count an observation in a histogram (after the commit, as `inc`)."""
    key = (name, _labels(name, labels))
    _after_commit(lambda: _observe(key, value))


def _after_commit(do: Callable[[], None]) -> None:
    if not settings.METRICS_ENABLED:
        return
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(do)
    else:
        do()


def _add(key: tuple[str, tuple[str, ...]], value: float) -> None:
    _started()
    with _lock:
        _counters[key] = _counters.get(key, 0.0) + value


def _observe(key: tuple[str, tuple[str, ...]], value: float) -> None:
    buckets = SPECS[key[0]].buckets
    _started()
    with _lock:
        row = _histograms.get(key)
        if row is None:
            row = _histograms[key] = [0.0] * (len(buckets) + 2)
        index = next((i for i, bound in enumerate(buckets) if value <= bound), len(buckets))
        row[index] += 1
        row[-1] += value


def _started() -> None:
    """Start this process's flusher (again in a forked child: the buffer copied from the
    parent is the parent's to flush, not ours)."""
    global _pid, _flusher
    if _pid == os.getpid():
        return
    with _lock:
        if _pid == os.getpid():
            return
        _counters.clear()
        _histograms.clear()
        _pid = os.getpid()
        if _store_url():
            _flusher = threading.Thread(target=_flush_forever, name="metrics-flush", daemon=True)
            _flusher.start()


def _flush_forever() -> None:
    while True:
        time.sleep(float(settings.METRICS_FLUSH_SECONDS))
        try:
            flush()
        except Exception:  # Redis away: the counts wait in the buffer for the next try
            logger.warning("metrics: flush failed; kept for the next one", exc_info=True)


def _take() -> tuple[dict[Any, float], dict[Any, list[float]]]:
    with _lock:
        counters, histograms = dict(_counters), {k: list(v) for k, v in _histograms.items()}
        _counters.clear()
        _histograms.clear()
    return counters, histograms


def _give_back(counters: dict[Any, float], histograms: dict[Any, list[float]]) -> None:
    with _lock:
        for key, value in counters.items():
            _counters[key] = _counters.get(key, 0.0) + value
        for key, row in histograms.items():
            mine = _histograms.setdefault(key, [0.0] * len(row))
            for i, value in enumerate(row):
                mine[i] += value


# --- where the sums live --------------------------------------------------------------------

_memory: dict[str, dict[str, float]] = {}
_client: Any = None
_client_url = ""


def _store_url() -> str:
    return str(settings.METRICS_REDIS_URL)


def _redis() -> Any:
    global _client, _client_url
    url = _store_url()
    if _client is None or _client_url != url:
        import redis

        _client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        _client_url = url
    return _client


def _key(name: str) -> str:
    return f"{settings.METRICS_KEY_PREFIX}{name}"


def _field(labels: Sequence[str], suffix: str = "") -> str:
    return json.dumps([*labels, suffix] if suffix else list(labels))


def flush() -> None:
    """Add this process's buffered counts to the shared sums."""
    counters, histograms = _take()
    if not counters and not histograms:
        return
    rows: list[tuple[str, str, float]] = [
        (_key(name), _field(labels), value) for (name, labels), value in counters.items()
    ]
    for (name, labels), row in histograms.items():
        for i, value in enumerate(row[:-1]):
            if value:
                rows.append((_key(name), _field(labels, str(i)), value))
        rows.append((_key(name), _field(labels, "sum"), row[-1]))
    if not _store_url():
        for key, field, value in rows:
            sums = _memory.setdefault(key, {})
            sums[field] = sums.get(field, 0.0) + value
        return
    try:
        pipe = _redis().pipeline(transaction=False)
        for key, field, value in rows:
            pipe.hincrbyfloat(key, field, value)
        pipe.execute()
    except Exception:
        _give_back(counters, histograms)
        raise


def _sums(name: str) -> dict[str, float]:
    if not _store_url():
        return dict(_memory.get(_key(name), {}))
    raw = _redis().hgetall(_key(name))
    return {k.decode(): float(v) for k, v in raw.items()}


def reset() -> None:
    """Forget every count, buffered and shared (tests; an operator's fresh start)."""
    _take()
    _memory.clear()
    if _store_url():
        client = _redis()
        keys = list(client.scan_iter(match=f"{settings.METRICS_KEY_PREFIX}*", count=500))
        if keys:
            client.delete(*keys)


# --- worker liveness --------------------------------------------------------------------------

HEARTBEATS = "worker_heartbeats"


CAPACITY = "worker_capacity"
_capacity: dict[str, str] = {}  # the embedded mode's (no Redis)


def heartbeat(
    worker: str, now: float | None = None, *, slots: int = 0, queues: Sequence[str] = ()
) -> None:
    """Record that `worker` (a Celery node name) is alive now, with the task slots it has
    (its concurrency) and the queues it consumes: what fair share divides
    (runs.engine.fairshare)."""
    stamp = time.time() if now is None else now
    capacity = json.dumps({"slots": slots, "queues": sorted(queues)})
    if not _store_url():
        _memory.setdefault(_key(HEARTBEATS), {})[worker] = stamp
        _capacity[worker] = capacity
        return
    with _redis().pipeline() as pipe:
        pipe.hset(_key(HEARTBEATS), worker, stamp)
        pipe.hset(_key(CAPACITY), worker, capacity)
        pipe.execute()


def worker_capacity() -> dict[str, tuple[int, list[str]]]:
    """The slots and queues of each worker whose last heartbeat is younger than three
    heartbeat intervals."""
    alive_after = time.time() - 3 * float(settings.METRICS_HEARTBEAT_SECONDS)
    alive = {w for w, stamp in heartbeats().items() if stamp >= alive_after}
    if not _store_url():
        raw: dict[str, Any] = dict(_capacity)
    else:
        raw = {k.decode(): v for k, v in _redis().hgetall(_key(CAPACITY)).items()}
    capacity = {}
    for worker, value in raw.items():
        if worker in alive:
            data = json.loads(value)
            capacity[worker] = (int(data.get("slots", 0)), list(data.get("queues", [])))
    return capacity


def heartbeats() -> dict[str, float]:
    """The last heartbeat of each worker seen in the last day (older ones are forgotten)."""
    beats = _sums(HEARTBEATS)
    old = [w for w, stamp in beats.items() if stamp < time.time() - 86400]
    if old and _store_url():
        _redis().hdel(_key(HEARTBEATS), *old)
    return {w: stamp for w, stamp in beats.items() if w not in old}


# --- rendering ----------------------------------------------------------------------------

_collectors: list[Callable[[], Iterable[Any]]] = []


def register_collector(collect_: Callable[[], Iterable[Any]]) -> None:
    """Add what an app reads at scrape time: a callable yielding prometheus-client metric
    families (GaugeMetricFamily, ...)."""
    _collectors.append(collect_)


def collect(tenant_slugs: Callable[[Iterable[int]], dict[int, str]]) -> Iterator[Any]:
    """Every metric family: the shared sums (tenant ids turned into slugs), the workers'
    liveness, then the apps' collectors."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    flush()  # this process's own counts, so a scrape of the embedded mode is up to date
    loaded = {name: _parsed(name) for name in SPECS}
    ids = {
        int(labels[spec.labels.index("tenant")])
        for name, spec in SPECS.items()
        if "tenant" in spec.labels
        for labels in loaded[name]
        if labels[spec.labels.index("tenant")].isdigit()
    }
    slugs = tenant_slugs(ids) if ids else {}

    def shown(name: str, labels: tuple[str, ...]) -> list[str]:
        spec = SPECS[name]
        return [
            slugs.get(int(value), value) if label == "tenant" and value.isdigit() else value
            for label, value in zip(spec.labels, labels, strict=True)
        ]

    for name, spec in SPECS.items():
        series = loaded[name]
        if spec.kind == "counter":
            counter = CounterMetricFamily(name, spec.help, labels=spec.labels)
            for labels, values in sorted(series.items()):
                counter.add_metric(shown(name, labels), values.get("", 0.0))
            yield counter
            continue
        histogram = HistogramMetricFamily(name, spec.help, labels=spec.labels)
        for labels, values in sorted(series.items()):
            running, buckets = 0.0, []
            for i, bound in enumerate([*spec.buckets, float("inf")]):
                running += values.get(str(i), 0.0)
                buckets.append((_bound(bound), running))
            histogram.add_metric(shown(name, labels), buckets, values.get("sum", 0.0))
        yield histogram

    beats = heartbeats()
    now = time.time()
    last = GaugeMetricFamily(
        "orc_worker_last_heartbeat_timestamp_seconds",
        "When each Celery worker last said it was alive (Unix time).",
        labels=("worker",),
    )
    up = GaugeMetricFamily(
        "orc_worker_up",
        "1 while a worker's last heartbeat is younger than three heartbeat intervals.",
        labels=("worker",),
    )
    for worker, stamp in sorted(beats.items()):
        last.add_metric([worker], stamp)
        alive = now - stamp < 3 * float(settings.METRICS_HEARTBEAT_SECONDS)
        up.add_metric([worker], 1.0 if alive else 0.0)
    yield last
    yield up
    for collect_ in _collectors:
        yield from collect_()


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _parsed(name: str) -> dict[tuple[str, ...], dict[str, float]]:
    """{labels: {suffix: value}} of a metric's sums ("" for a counter's value)."""
    width = len(SPECS[name].labels)
    found: dict[tuple[str, ...], dict[str, float]] = {}
    for field, value in _sums(name).items():
        parts = json.loads(field)
        labels, suffix = tuple(parts[:width]), (parts[width] if len(parts) > width else "")
        found.setdefault(labels, {})[suffix] = value
    return found
