"""The service as a user starts it: real processes, real sockets, no test client."""

from __future__ import annotations

import http.cookiejar
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.subprocesses import ROOT, free_port, fresh_shell_env

pytestmark = pytest.mark.slow


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    assert url.startswith("http://127.0.0.1:")  # loopback only
    request = urllib.request.Request(url)  # noqa: S310
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def demo(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, str, Path]]:
    """`manage.py demo` on SQLite with the in-process broker, as `make demo` runs it (with
    more environment from the test's `demo_env` parameter, if any)."""
    extra: dict[str, str] = getattr(request, "param", {})
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=fresh_shell_env(VAR_DIR=str(tmp_path / "var"), DEBUG="1", **extra),
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            match = re.search(r"API token\s+(orc_\S+)", log.read_text())
            try:
                if (
                    match
                    and "Serving until" in log.read_text()
                    and _get(f"{base}/healthz")[0] == 200
                ):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"demo did not come up in 60 s:\n{log.read_text()}")
        yield base, match.group(1), log
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert process.returncode == 0, log.read_text()
    assert (tmp_path / "var" / "orchestrator.sqlite3").exists()


def test_it_serves_health_and_the_api_in_standalone_mode(demo: tuple[str, str, Path]) -> None:
    base, token, _ = demo
    assert _get(f"{base}/healthz") == (200, {"status": "ok"})
    status, ready = _get(f"{base}/readyz")
    assert status == 200
    assert ready["checks"] == {"database": "ok", "broker": "ok"}
    assert ready["task_sandbox"] == "on"
    status, me = _get(f"{base}/api/v1/me", token)
    assert status == 200
    assert me["username"] == "admin"
    assert me["memberships"] == [{"tenant": "demo", "tenant_name": "Demo", "role": "owner"}]
    status, problem = _get(f"{base}/api/v1/me", token[:-2] + "xx")
    assert status == 401
    assert problem["status"] == 401


def test_it_runs_an_example_workflow_to_success_in_the_demo(
    demo: tuple[str, str, Path],
) -> None:
    base, token, log = demo
    text = log.read_text()
    assert "Task sandbox: on (bubblewrap)" in text
    assert "example fan-in-report.yaml: fan-in-report created" in text
    assert "Run 1 finished: success" in text
    # The ETL's load updated warehouse.sales: the dataset-scheduled example ran by itself.
    assert re.search(
        r"sales-forecast run \d+ started by the warehouse.sales update \(schedule: datasets\): "
        "success",
        text,
    ), text
    status, run = _get(f"{base}/api/v1/tenants/demo/runs/1/", token)
    assert status == 200
    assert run["state"] == "success"
    assert run["tasks"] == {"success": 6, "skipped": 1}


def test_the_demo_shows_an_alert_delivered_to_its_receiver(demo: tuple[str, str, Path]) -> None:
    """The failing demo workflow's run.failed reaches the demo's local webhook receiver as
    a signed CloudEvent, and the delivery is recorded as sent."""
    base, token, log = demo
    text = log.read_text()
    assert "Alert delivered to http://127.0.0.1:" in text
    assert "type run.failed" in text
    missing = "['RuntimeError: inventory file missing: /data/inventory.csv']"
    assert f"task check_inventory: {missing}" in text
    assert "verifies: True" in text
    status, page = _get(f"{base}/api/v1/tenants/demo/deliveries/", token)
    assert status == 200
    assert [(d["channel"], d["status"]) for d in page["results"]] == [("demo-alerts", "sent")]


def _portal_session(base: str, username: str, password: str) -> urllib.request.OpenerDirector:
    """Signed in to the portal through its login form, as a browser would: a cookie jar,
    the form's CSRF token, the POST."""
    assert base.startswith("http://127.0.0.1:")  # loopback only
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    form = opener.open(f"{base}/login/", timeout=5).read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert csrf, form
    body = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": csrf.group(1)}
    ).encode()
    request = urllib.request.Request(f"{base}/login/", data=body, headers={"Referer": base})  # noqa: S310
    with opener.open(request, timeout=5) as response:
        assert "/login/" not in response.url, "the sign-in was refused"
    return opener


def _page(opener: urllib.request.OpenerDirector, url: str) -> tuple[int, str]:
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_demo_portal_shows_the_run_to_its_team_only(demo: tuple[str, str, Path]) -> None:
    """The portal line the demo prints works: its owner signs in and finds the first run
    with its graph, gantt and task log; the other team's member gets a 404 for the same
    page and sees none of the demo tenant's names."""
    base, _, log = demo
    text = log.read_text()
    owner = re.search(rf"portal\s+{re.escape(base)}/\s+sign in: (\S+) / (\S+)", text)
    other = re.search(r"another team's member: (\S+) / (\S+),", text)
    assert owner, text
    assert other, text
    session = _portal_session(base, owner.group(1), owner.group(2))
    status, run_page = _page(session, f"{base}/t/demo/runs/1/")
    assert status == 200
    assert 'class="node' in run_page
    assert "bar-running" in run_page
    assert "st-success" in run_page
    rows = [row.split("</tr>", 1)[0] for row in run_page.split('<tr data-task="')[1:]]
    ran = next(row.split('"', 1)[0] for row in rows if "st-success" in row)
    status, task_page = _page(session, f"{base}/t/demo/runs/1/tasks/{ran}/")
    assert status == 200
    assert 'id="log"' in task_page
    stranger = _portal_session(base, other.group(1), other.group(2))
    status, refused = _page(stranger, f"{base}/t/demo/runs/1/")
    assert status == 404
    assert "fan-in-report" not in refused
    viewer = re.search(r"a viewer of demo, who may only look: (\S+) / (\S+)\)", text)
    assert viewer, text
    looker = _portal_session(base, viewer.group(1), viewer.group(2))
    status, _ = _page(looker, f"{base}/t/demo/runs/1/")
    assert status == 200
    status, refused = _page(looker, f"{base}/t/demo/runs/1/retry/")
    assert status == 403  # a viewer may look, not operate
    status, own = _page(stranger, f"{base}/")
    assert status == 200
    assert "other-team-report" in own
    assert "fan-in-report" not in own


@pytest.mark.parametrize("demo", [{"TASK_SANDBOX_BWRAP": "/nonexistent/bwrap"}], indirect=True)
def test_the_demo_runs_unsandboxed_where_it_cannot_sandbox_and_says_so(
    demo: tuple[str, str, Path],
) -> None:
    """A machine without bubblewrap: the single-tenant demo still runs its workflows, and
    says plainly that its tasks are not sandboxed, with the command that fixes it."""
    base, _, log = demo
    text = log.read_text()
    assert (
        "Task sandbox: OFF. '/nonexistent/bwrap' (bubblewrap) is not installed on this worker"
    ) in text
    assert "    sudo apt-get install -y bubblewrap\n" in text
    assert "Run 1 finished: success" in text
    status, ready = _get(f"{base}/readyz")
    assert status == 200
    assert ready["task_sandbox"] == (
        "off: tasks run as the worker's own processes (single-tenant installations only)"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "celery", "-A", "orchestrator", "worker", "--loglevel", "ERROR"],
        ["-m", "celery", "-A", "orchestrator", "beat", "--loglevel", "ERROR"],
        ["-c", "import orchestrator.wsgi"],
    ],
    ids=["worker", "beat", "wsgi"],
)
def test_it_refuses_to_start_without_a_broker_outside_standalone(
    argv: list[str], tmp_path: Path, migrated_var: Callable[[Path], Path]
) -> None:
    # A migrated database, as a user who forgot CELERY_BROKER_URL would have.
    env = fresh_shell_env(VAR_DIR=str(migrated_var(tmp_path)))
    result = subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode != 0
    assert "CELERY_BROKER_URL is not set" in result.stdout + result.stderr
