"""/metrics (docs/metrics.md): counts added by any process to Redis and rendered in the
Prometheus format, with the scrape-time gauges; only for the operator's scraper (a bearer
token or an allowed network), never a run id as a label."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from orchestrator import metrics
from runs.models import WorkflowRun
from tests.events.support import drain
from tests.harness import Team
from tests.runs.engine.helpers import Engine
from tests.workers import REDIS_URL

TOKEN = "scrape-" + "x" * 24

# Counts are added after the commit: these tests commit.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def store(settings: Any) -> Iterator[str]:
    """The counts in a Redis key space of this test's own."""
    settings.METRICS_ENABLED = True
    settings.METRICS_REDIS_URL = REDIS_URL
    settings.METRICS_KEY_PREFIX = f"orc-test-{uuid.uuid4().hex[:10]}:metrics:"
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    metrics.reset()
    yield settings.METRICS_KEY_PREFIX
    metrics.reset()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: Client, **headers: str) -> Samples:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    found: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counts_from_any_process_add_up_in_redis(store: str, team: Team, client: Client) -> None:
    tenant = team.tenant.pk
    metrics.inc("orc_runs_created", tenant=tenant, source="api")
    metrics.inc("orc_runs_created", 2, tenant=tenant, source="api")
    for seconds in (0.02, 0.3, 7.0):
        metrics.observe("orc_task_duration_seconds", seconds, tenant=tenant, task_type="shell")
    metrics.flush()
    # Another process's counts, as its flush would have added them.
    shared = redis.Redis.from_url(REDIS_URL)
    shared.hincrbyfloat(f"{store}orc_runs_created", f'["{tenant}", "api"]', 4)
    samples = scrape(client)
    assert value(samples, "orc_runs_created_total", tenant="acme", source="api") == 7
    labels = {"tenant": "acme", "task_type": "shell"}
    assert value(samples, "orc_task_duration_seconds_count", **labels) == 3
    assert value(samples, "orc_task_duration_seconds_sum", **labels) == pytest.approx(7.32)
    assert value(samples, "orc_task_duration_seconds_bucket", le="0.05", **labels) == 1
    assert value(samples, "orc_task_duration_seconds_bucket", le="0.5", **labels) == 2
    assert value(samples, "orc_task_duration_seconds_bucket", le="10.0", **labels) == 3
    assert value(samples, "orc_task_duration_seconds_bucket", le="+Inf", **labels) == 3


def test_a_rolled_back_change_counts_nothing(store: str, team: Team, client: Client) -> None:
    from django.db import transaction

    try:
        with transaction.atomic():
            metrics.inc("orc_runs_created", tenant=team.tenant.pk, source="api")
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    with transaction.atomic():
        metrics.inc("orc_runs_created", tenant=team.tenant.pk, source="schedule")
    samples = scrape(client)
    assert value(samples, "orc_runs_created_total", tenant="acme", source="api") == 0
    assert value(samples, "orc_runs_created_total", tenant="acme", source="schedule") == 1


def test_only_the_scraper_sees_them(store: str, client: Client, settings: Any) -> None:
    metrics.inc("orc_scheduler_ticks")
    assert client.get("/metrics").status_code == 403
    refused = client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong")
    assert refused.status_code == 403
    assert b"orc_" not in refused.content
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405
    assert value(scrape(client), "orc_scheduler_ticks_total") == 1
    # From an allowed network, no token needed; from another, refused.
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["10.1.0.0/16"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1").status_code == 403
    # Neither set: off.
    settings.METRICS_ALLOWED_NETWORKS = []
    off = client.get("/metrics")
    assert off.status_code == 404


def test_a_worker_whose_heartbeat_stopped_is_down(store: str, client: Client) -> None:
    metrics.heartbeat("w1@host", now=time.time() - 600)
    metrics.heartbeat("w2@host")
    samples = scrape(client)
    assert value(samples, "orc_worker_up", worker="w1@host") == 0
    assert value(samples, "orc_worker_up", worker="w2@host") == 1
    assert value(samples, "orc_worker_last_heartbeat_timestamp_seconds", worker="w2@host") > (
        time.time() - 60
    )


CHAIN = {
    "name": "nightly",
    "tasks": {
        "extract": {"type": "noop"},
        "load": {"type": "python", "callable": "runs.library:echo", "depends_on": ["extract"]},
        "check": {"type": "python", "callable": "runs.library:fail", "depends_on": ["load"]},
    },
}


def test_runs_move_the_counters_and_no_run_id_is_a_label(
    store: str, client: Client, settings: Any
) -> None:
    settings.TASK_CONTINUE_SECONDS = 0
    engine = Engine(workers=None)
    workflow = engine.apply(CHAIN)
    for _ in range(2):
        with engine.scope():
            from runs.services import trigger_run

            run = trigger_run(actor=engine.actor, workflow=workflow).run
        assert drain(engine, run).state == WorkflowRun.State.FAILED
    samples = scrape(client)
    assert value(samples, "orc_runs_created_total", tenant="eng", source="api") == 2
    assert value(samples, "orc_runs_finished_total", tenant="eng", state="failed") == 2
    started = {
        task_type: value(
            samples, "orc_task_attempts_started_total", tenant="eng", task_type=task_type
        )
        for task_type in ("noop", "python")
    }
    assert started == {"noop": 2, "python": 4}
    finished = value(
        samples,
        "orc_task_attempts_finished_total",
        tenant="eng",
        task_type="python",
        state="failed",
    )
    assert finished == 2
    assert (
        value(
            samples,
            "orc_task_attempts_finished_total",
            tenant="eng",
            task_type="python",
            state="success",
        )
        == 2
    )
    assert value(samples, "orc_task_duration_seconds_count", tenant="eng", task_type="python") == 4
    assert value(samples, "orc_task_queued_seconds_count", tenant="eng", task_type="noop") == 2
    assert value(samples, "orc_reconciler_runs_total") >= 1  # drain() reconciles
    # The scrape-time gauges: nothing in flight now, the tenant's quota.
    assert value(samples, "orc_tenant_concurrent_runs_limit", tenant="eng") == 500
    assert value(samples, "orc_runs_active", tenant="eng", state="running") == 0
    assert any(name == "orc_queue_depth" for name, _ in samples)
    # The scrape itself was a request: its route, not its path.
    second = scrape(client)
    assert (
        value(
            second,
            "orc_http_request_duration_seconds_count",
            route="metrics",
            method="GET",
            status="2xx",
        )
        >= 1
    )
    # Bounded labels: no run, instance or attempt id anywhere.
    with engine.scope():
        ids = {str(pk) for pk in WorkflowRun.objects.values_list("pk", flat=True)}
    names = {label for _, labels in second for label, _ in labels}
    assert names <= {
        "tenant",
        "source",
        "state",
        "task_type",
        "route",
        "method",
        "status",
        "le",
        "worker",
        "queue",
        "action",
        "kind",
    }
    values = {v for _, labels in second for label, v in labels if label != "le"}
    assert not values & ids


def test_a_try_stopped_by_a_cancel_counts_as_cancelled(store: str, client: Client) -> None:
    from runs import engine as run_engine
    from runs.models import TaskInstance
    from runs.services import cancel_run, trigger_run

    engine = Engine(workers=None)
    workflow = engine.apply(
        {"name": "long", "tasks": {"wait": {"type": "shell", "command": ["sleep", "60"]}}}
    )
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
        ti = TaskInstance.objects.get(run=run, task_id="wait")
    claimed = run_engine.claim(ti.pk, ti.try_number, worker="w", pid=1, token="t")
    assert claimed is not None  # running now, on a worker that will see its lease gone
    with engine.scope():
        cancel_run(actor=engine.actor, run=run)
    samples = scrape(client)
    labels = {"tenant": "eng", "task_type": "shell"}
    assert value(samples, "orc_task_attempts_started_total", **labels) == 1
    assert value(samples, "orc_task_attempts_finished_total", state="cancelled", **labels) == 1
    assert value(samples, "orc_task_duration_seconds_count", **labels) == 1
    assert value(samples, "orc_runs_finished_total", tenant="eng", state="cancelled") == 1
