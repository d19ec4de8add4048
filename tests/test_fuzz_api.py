"""Schemathesis over the REST and GraphQL schemas of a live server, as docs/api.md
("Fuzzing") tells anyone to run it: the documented block of commands, run as written,
against a fresh server in the embedded mode (SQLite, as `make demo` serves) that this
module starts once. Any failure fails the test, with schemathesis' report (a `curl` line
per failure that reproduces it)."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.subprocesses import ROOT, die_with_parent, free_port, fresh_shell_env

pytestmark = pytest.mark.slow

DOCS = ROOT / "docs" / "api.md"
# High enough that the fuzzing is never throttled (docs/api.md, "Rate limits").
UNTHROTTLED = {
    f"RATE_LIMIT_{scope}_PER_{who}": "1000000"
    for scope in ("READS", "TRIGGERS")
    for who in ("TOKEN", "TENANT")
}


@dataclass
class Server:
    base: str
    env: dict[str, str]
    log: Path


def documented_block() -> str:
    """The shell block of docs/api.md's "Fuzzing" section."""
    section = DOCS.read_text().split("\n## Fuzzing\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "docs/api.md's Fuzzing section should have one sh block"
    return str(blocks[0])


def _get(url: str, token: str = "") -> tuple[int, bytes]:
    assert url.startswith("http://127.0.0.1:")  # loopback only
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_until_up(server: Server, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if _get(f"{server.base}/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the server did not come up:\n{server.log.read_text()[-5000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A fresh server in the embedded mode (`manage.py standalone`: SQLite, in-process
    worker and beat), in production settings (DEBUG off), started once for the module."""
    var = tmp_path_factory.mktemp("fuzz-server")
    port = free_port()
    env = fresh_shell_env(
        VAR_DIR=str(var),
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(40),
        ALLOWED_HOSTS="127.0.0.1",
        LOG_LEVEL="WARNING",
        **UNTHROTTLED,
    )
    env.pop("CELERY_KEY_PREFIX", None)
    server = Server(base=f"http://127.0.0.1:{port}", env=env, log=var / "server.log")
    with server.log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "standalone", "--port", str(port), "--concurrency", "1"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    try:
        _wait_until_up(server, process)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def fuzz_run(server: Server) -> subprocess.CompletedProcess[str]:
    """The documented block, run as written: the set-up commands, then schemathesis over
    REST and over GraphQL. `python` and `schemathesis` are this venv's."""
    env = {
        **server.env,
        "BASE": server.base,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{server.env.get('PATH', '')}",
        "NO_COLOR": "1",
    }
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", documented_block()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_tag_filter_works_on_sqlite(server: Server) -> None:
    """`?tag=` on the embedded mode's SQLite (which has no JSON containment): the workflows
    carrying the tag, not a 500."""
    for command in (
        ["createtenant", "tags", "--owner", "tagger"],
        ["apply", "examples/", "--tenant", "tags"],
    ):
        _manage(server, *command)
    token = _manage(server, "createtoken", "--tenant", "tags", "--role", "viewer")
    url = f"{server.base}/api/v1/tenants/tags/workflows/"
    tagged = {w["name"]: w["tags"] for w in json.loads(_get(url, token)[1])["results"]}
    tag = next(t for tags in tagged.values() for t in tags)
    status, body = _get(f"{url}?tag={tag}", token)
    assert status == 200
    assert {w["name"] for w in json.loads(body)["results"]} == {
        name for name, tags in tagged.items() if tag in tags
    }
    status, body = _get(f"{url}?tag=no-such-tag", token)
    assert (status, json.loads(body)["results"]) == (200, [])


def test_schemathesis_finds_no_failure(fuzz_run: subprocess.CompletedProcess[str]) -> None:
    assert fuzz_run.returncode == 0, (
        f"schemathesis found failures (exit {fuzz_run.returncode}); reproduce each with its "
        f"curl line:\n{fuzz_run.stdout[-60000:]}\n{fuzz_run.stderr[-5000:]}"
    )
    # Both runs happened (REST, then GraphQL), each ending on a summary without failures.
    assert fuzz_run.stdout.count("Seed: 19") == 2, fuzz_run.stdout[-3000:]
    summaries = [line for line in fuzz_run.stdout.splitlines() if line.startswith("=====")]
    assert not [line for line in summaries if "failure" in line or "error" in line], summaries


def test_the_server_logged_no_error(
    server: Server, fuzz_run: subprocess.CompletedProcess[str]
) -> None:
    """Nothing the fuzzing sent made the server log an error (a 500 it hid in a 4xx)."""
    log = server.log.read_text(errors="replace")
    errors = [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line]
    assert not errors, "\n".join(errors[:20]) + "\n...\n" + log[-3000:]


def _manage(server: Server, *args: str) -> str:
    """`python manage.py ...` on the server's database: its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()
