"""`make demo-distributed` as an operator uses it: the production processes side by side on
PostgreSQL and Redis, and a worker killed by hand (kill -9 of its process group) in the
middle of a task. The run still finishes, with the lost try run again elsewhere; /metrics
shows the runs, the lease that expired and the worker down."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.subprocesses import ROOT, free_port, fresh_shell_env

pytestmark = pytest.mark.slow

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _call(method: str, url: str, token: str, body: Any = None) -> Any:
    assert url.startswith("http://127.0.0.1:")  # loopback only
    request = urllib.request.Request(  # noqa: S310
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        return json.loads(response.read())


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, int], Path]]:
    database = os.environ.get("DATABASE_URL", "")
    if not database.startswith("postgres"):
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    name = f"test_orchestrator_demo_{uuid.uuid4().hex[:8]}"
    prefix = f"orc-demo-test-{uuid.uuid4().hex[:8]}:"
    port = free_port()
    log = tmp_path / "demo.log"
    env = fresh_shell_env(
        DATABASE_URL=f"{database.rsplit('/', 1)[0]}/{name}",
        CELERY_BROKER_URL=REDIS_URL,
        CELERY_KEY_PREFIX=prefix,
        VAR_DIR=str(tmp_path / "var"),
        DEBUG="1",
        TASK_LEASE_SECONDS="3",
        METRICS_HEARTBEAT_SECONDS="1",
        METRICS_FLUSH_SECONDS="1",
    )
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--distributed", "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 90
        while "Serving until" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        token = re.search(r"API token\s+(orc_\S+)", text).group(1)  # type: ignore[union-attr]
        pids = {m[0]: int(m[1]) for m in re.findall(r"^\s+(\w+)\s+pid (\d+)", text, re.M)}
        yield f"http://127.0.0.1:{port}/api/v1/tenants/demo", token, pids, log
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        process.wait(timeout=60)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        admin = psycopg2.connect(f"{database.rsplit('/', 1)[0]}/postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    assert process.returncode == 0, log.read_text()


def test_a_worker_killed_by_hand_leaves_no_run_stuck(
    cluster: tuple[str, str, dict[str, int], Path],
) -> None:
    api, token, pids, log = cluster
    assert set(pids) == {"web", "worker1", "worker2", "housekeeper", "notifier", "beat"}
    text = log.read_text()
    # It waits for the workers before its first run, saying so (not a run queued unsaid).
    assert re.search(r"Waiting for the workers to start\.\.\. ready after \d+\.\ds\.", text)
    assert text.index("ready after") < text.index("Run 1 finished: success")
    _call(
        "PUT",
        f"{api}/workflows/slow/",
        token,
        {
            "name": "slow",
            "tasks": {
                "wait": {"type": "shell", "command": ["sleep", "4"]},
                "after": {"type": "shell", "command": ["echo", "done"], "depends_on": ["wait"]},
            },
        },
    )
    run = _call("POST", f"{api}/workflows/slow/runs/", token, {})
    deadline = time.monotonic() + 30
    while (wait := _call("GET", f"{api}/runs/{run['id']}/tasks/wait/", token))[
        "state"
    ] != "running":
        assert time.monotonic() < deadline, wait
        time.sleep(0.1)
    attempt = wait["attempts"][0]
    victim = next(
        name
        for name in ("worker1", "worker2")
        if Path(f"/proc/{attempt['pid']}/stat").exists()
        and int(Path(f"/proc/{attempt['pid']}/stat").read_text().rsplit(")", 1)[1].split()[1])
        == pids[name]
    )
    os.killpg(pids[victim], signal.SIGKILL)  # kill -9 -<pid>, as the banner suggests

    deadline = time.monotonic() + 60
    while (state := _call("GET", f"{api}/runs/{run['id']}/", token)["state"]) not in {
        "success",
        "failed",
        "cancelled",
    }:
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert state == "success"
    wait = _call("GET", f"{api}/runs/{run['id']}/tasks/wait/", token)
    assert (wait["state"], wait["try_number"], wait["lost_tries"]) == ("success", 2, 1)
    assert [a["state"] for a in wait["attempts"]] == ["failed", "success"]
    assert wait["attempts"][0]["error"].startswith("lease expired")
    after = _call("GET", f"{api}/runs/{run['id']}/tasks/after/", token)
    assert (after["state"], after["try_number"]) == ("success", 1)

    # What a Prometheus on this machine scrapes (the demo lets loopback in).
    metrics_url = api.split("/api/")[0] + "/metrics"

    def scrape() -> dict[str, float]:
        with urllib.request.urlopen(metrics_url, timeout=10) as response:  # noqa: S310
            text = response.read().decode()
        # name{a="x",b="y"} with the labels sorted: one spelling per series
        return {
            sample.name
            + "{"
            + ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            + "}": sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    victim_name = f"{victim}@"
    deadline = time.monotonic() + 30
    while True:
        samples = scrape()
        down = [
            key
            for key, value in samples.items()
            if key.startswith('orc_worker_up{worker="' + victim_name) and value == 0
        ]
        ended = samples.get('orc_runs_finished_total{state="success",tenant="demo"}', 0)
        if down and ended >= 2:
            break
        assert time.monotonic() < deadline, samples
        time.sleep(0.5)
    assert samples['orc_reconciler_actions_total{action="expired_leases"}'] >= 1
    assert samples['orc_task_lost_tries_total{tenant="demo"}'] >= 1
    shell = 'orc_task_duration_seconds_count{task_type="shell",tenant="demo"}'
    assert samples[shell] >= 3
    alive = [k for k, v in samples.items() if k.startswith("orc_worker_up") and v == 1]
    assert len(alive) >= 3  # the other worker, the housekeeper, the notifier
    # No run id is a label (a route's pattern may name <int:run_id>: that is no id).
    assert not any(re.search(r"[{,](run|run_id|attempt|attempt_id)=", key) for key in samples)
