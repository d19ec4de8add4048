"""The embedded mode, measured as a user meets it: `manage.py standalone` (SQLite, the
in-process broker and worker, the task sandbox on) started on a directory of its own, and
chains of 30 `noop` and 30 `shell` tasks triggered and followed through its REST API.

A chain's cost per task is its wall (the trigger POST sent -> the run seen ended by GETs
every 5 ms) / 30; the shell chain's over the noop chain's is the figure issue 26 asks to
bring to at most 2x in both modes (chain-100-shell measures the distributed one)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from django.conf import settings

from devtools.bench.scale import SHELL_TRUE, chain_spec

__all__ = ["Embedded"]

LENGTH = 30
# One `manage.py shell` process makes the tenant and prints its owner's token.
SETUP = """
import io
from django.core.management import call_command
out = io.StringIO()
call_command("createtenant", "bench", "--owner", "bench", stdout=io.StringIO())
call_command("createtoken", "--tenant", "bench", "--role", "owner", "--user", "bench", stdout=out)
print(out.getvalue().strip())
"""
# The bench's own process: nothing of the distributed mode's settings reaches it.
DROPPED = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_KEY_PREFIX", "METRICS_REDIS_URL")


SPECS = {
    "embedded-noop": chain_spec("embedded-noop", LENGTH, {"type": "noop"}),
    "embedded-shell": chain_spec("embedded-shell", LENGTH, SHELL_TRUE),
}


class Embedded:
    """One `standalone` process for the whole invocation: `start`, then `chains` per
    repetition, then `stop`."""

    def __init__(self) -> None:
        self.var: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.base = ""
        self.client: httpx.Client | None = None

    def start(self) -> None:
        self.var = Path(tempfile.mkdtemp(prefix="orc-bench-embedded-"))
        os.chmod(self.var, 0o711)  # noqa: S103 (the tasks' uids traverse to their directories)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in DROPPED}
        env.update(
            VAR_DIR=str(self.var),
            DEBUG="0",
            SECRET_KEY=secrets.token_urlsafe(40),
            ALLOWED_HOSTS="127.0.0.1",
            LOG_LEVEL="WARNING",
            TASK_SANDBOX="on",
            TASK_SANDBOX_ROOT=str(self.var / "sandbox"),
        )
        # Polling every 5 ms is far above the per-token read limit.
        env.update({f"RATE_LIMIT_READS_PER_{who}": "100000000" for who in ("TOKEN", "TENANT")})
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True)
        token = (
            subprocess.run(
                [*manage, "shell", "-c", SETUP], env=env, check=True, capture_output=True, text=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        log = (self.var / "standalone.log").open("wb")
        self.process = subprocess.Popen(
            [*manage, "standalone", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{port}/api/v1/tenants/bench"
        self.client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        deadline = time.monotonic() + 120
        while not self._healthy(port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"standalone did not start: see {self.var}/standalone.log")
            time.sleep(0.2)
        for name, spec in SPECS.items():
            answer = self.client.put(f"{self.base}/workflows/{name}/", json=spec)
            if answer.status_code not in (200, 201):
                raise RuntimeError(f"applying {name}: {answer.status_code} {answer.text}")
        for name in SPECS:  # the first run of each: connections, caches, the sandbox's paths
            self._chain(name)

    def chains(self) -> dict[str, float]:
        noop, shell = self._chain("embedded-noop"), self._chain("embedded-shell")
        return {"noop_ms": noop, "shell_ms": shell, "ratio": shell / noop}

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.var is not None:
            shutil.rmtree(self.var, ignore_errors=True)

    def _chain(self, name: str) -> float:
        """ms per task of one run of the chain `name`, through the REST API."""
        assert self.client is not None
        started = time.perf_counter()
        answer = self.client.post(f"{self.base}/workflows/{name}/runs/", json={})
        answer.raise_for_status()
        run = answer.json()["id"]
        while True:
            state = self.client.get(f"{self.base}/runs/{run}/").json()["state"]
            if state not in ("queued", "running"):
                break
            time.sleep(0.005)
        wall = time.perf_counter() - started
        if state != "success":
            raise RuntimeError(f"the {name} run {run} ended {state}")
        return wall / LENGTH * 1000

    @staticmethod
    def _healthy(port: int) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
