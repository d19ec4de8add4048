"""Worker processes' counts reach /metrics with no server in them: each child flushes its
counts into Redis, where the web's /metrics reads them; each worker's heartbeat says it is
alive, and a killed worker shows as down."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.runs.engine.helpers import Engine, run_to_end
from tests.workers import REDIS_URL, Workers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOKEN = "scrape-token-for-the-workers-test"
CHAIN = {
    "name": "metered",
    "tasks": {
        "a": {"type": "python", "callable": "runs.library:echo"},
        "b": {"type": "python", "callable": "runs.library:echo", "depends_on": ["a"]},
        "c": {"type": "noop", "depends_on": ["b"]},
    },
}


def read_from(settings: Any, workers: Workers) -> None:
    """This (web) process reads the counts where the workers add them."""
    settings.METRICS_ENABLED = True
    settings.METRICS_REDIS_URL = REDIS_URL
    settings.METRICS_KEY_PREFIX = f"{workers.prefix}orc:metrics:"
    settings.METRICS_TOKEN = TOKEN


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def count(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_workers_counts_and_heartbeats_reach_metrics(engine: Engine, settings: Any) -> None:
    read_from(settings, engine.workers)
    before = scrape()
    run = run_to_end(engine, CHAIN)
    assert run.state == "success"
    python = {"tenant": "eng", "task_type": "python"}

    def counted() -> bool:
        now = scrape()
        return (
            count(now, "orc_task_duration_seconds_count", **python)
            - count(before, "orc_task_duration_seconds_count", **python)
            >= 2
        )

    wait_for(counted, 30, "the workers' counts in /metrics", engine.workers)
    after = scrape()
    finished = "orc_task_attempts_finished_total"
    assert (
        count(after, finished, state="success", **python)
        - count(before, finished, state="success", **python)
        == 2
    )
    assert (
        count(after, "orc_runs_finished_total", tenant="eng", state="success")
        - count(before, "orc_runs_finished_total", tenant="eng", state="success")
        == 1
    )
    up = {labels[0][1]: v for (name, labels), v in after.items() if name == "orc_worker_up"}
    assert len(up) == 2
    assert set(up.values()) == {1.0}


def test_a_killed_worker_shows_as_down(transactional_db: None, settings: Any) -> None:
    pool = Workers(count=1, concurrency=1, beat=False, env={"METRICS_HEARTBEAT_SECONDS": "1"})
    pool.start()
    try:
        read_from(settings, pool)
        settings.METRICS_HEARTBEAT_SECONDS = 1.0

        def up() -> dict[str, float]:
            return {
                labels[0][1]: v for (name, labels), v in scrape().items() if name == "orc_worker_up"
            }

        wait_for(lambda: list(up().values()) == [1.0], 60, "the worker's heartbeat", pool)
        [worker] = pool.processes
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        wait_for(lambda: list(up().values()) == [0.0], 30, "the worker to show as down", pool)
    finally:
        pool.stop()
