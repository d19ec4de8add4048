"""What the `orc` tests share: one real server for the whole session (`manage.py
standalone`: SQLite in a temporary folder, the in-process broker and worker), tenants and
tokens made with the management commands, and `orc` run as a user runs it, the console
script in a subprocess with an environment of its own.

Tenants: `dev` (the tests' own), `gitops` (apply and prune, which deletes what no file
defines), `ci` (examples/ci/orc-apply.sh), `acme` (docs/cli.md's transcripts), `globex`
(another tenant: its objects are 404s to the others)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.subprocesses import ROOT

__all__ = [
    "DEV_SPECS",
    "ORC",
    "SETUP",
    "UNTHROTTLED",
    "Answer",
    "Done",
    "OrcServer",
    "ScriptedServer",
    "Seen",
    "orc",
    "write_specs",
]

ORC = Path(sys.executable).parent / "orc"
# High enough that nothing here is throttled (docs/api.md, "Rate limits").
UNTHROTTLED = {
    f"RATE_LIMIT_{scope}_PER_{who}": "1000000"
    for scope in ("READS", "TRIGGERS")
    for who in ("TOKEN", "TENANT")
}

# Made in one `manage.py shell` process (each manage.py start costs seconds): the
# management commands, called as a script would call them; the tokens as JSON on stdout.
SETUP = """
import io, json
from django.core.management import call_command

def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()

tokens = {}
for slug, owner in (
    ("dev", "dana"), ("gitops", "gil"), ("ci", "cid"), ("acme", "alice"), ("globex", "gary")
):
    run("createtenant", slug, "--owner", owner)
    owner_token = ("createtoken", "--tenant", slug, "--role", "owner", "--user", owner)
    tokens[f"{slug}:owner"] = run(*owner_token)
for role in ("viewer", "operator", "editor"):
    tokens[f"dev:{role}"] = run("createtoken", "--tenant", "dev", "--role", role)
print(json.dumps(tokens))
"""


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}--- stderr\n{self.err}"


@dataclass
class OrcServer:
    base: str
    env: dict[str, str]  # the server's: manage.py commands on its database use it too
    tokens: dict[str, str]  # "tenant:role" -> token

    def manage(self, *args: str, cwd: Path = ROOT) -> Done:
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Done(done.returncode, done.stdout, done.stderr)

    def get(self, path: str, tenant: str = "dev") -> Any:
        """What the API answers an owner of `tenant` (to check what orc did, without orc):
        `path` under /api/v1/tenants/<tenant>/, a list's results."""
        answer = httpx.get(
            f"{self.base}/api/v1/tenants/{tenant}/{path}",
            headers={"Authorization": f"Bearer {self.tokens[f'{tenant}:owner']}"},
            timeout=30,
        )
        answer.raise_for_status()
        body = answer.json()
        return body["results"] if isinstance(body, dict) and "results" in body else body

    def orc_env(self, home: Path, tenant: str = "dev", role: str = "owner") -> dict[str, str]:
        """A user's shell: orc on the PATH, a home of its own, and the server, tenant and
        token in ORC_SERVER, ORC_TENANT and ORC_TOKEN."""
        return {
            "PATH": f"{ORC.parent}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(home),
            "LC_ALL": "C.UTF-8",
            "ORC_SERVER": self.base,
            "ORC_TENANT": tenant,
            "ORC_TOKEN": self.tokens[f"{tenant}:{role}"],
        }


def orc(
    *args: str,
    env: Mapping[str, str],
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 60,
) -> Done:
    """`orc ARGS...` as a user runs it; its exit code and output."""
    assert ORC.exists(), f"{ORC} is missing: `make install` installs the orc console script"
    done = subprocess.run(
        [str(ORC), *args],
        env=dict(env),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def write_specs(folder: Path, specs: Mapping[str, str]) -> Path:
    """Spec files `folder/<name>` with the given texts; the folder."""
    for name, text in specs.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


@dataclass
class Answer:
    """What the scripted server says to one request; `drop`: close the connection
    without a word."""

    status: int = 200
    body: object = None
    headers: Mapping[str, str] = field(default_factory=dict)
    drop: bool = False


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    """A real HTTP server on 127.0.0.1 (http.server, in a thread) that gives the scripted
    answers in order, then the last one again, and records every request it got."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers, self.seen = list(answers), list[Seen]()
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                scripted.seen.append(Seen(self.command, self.path, dict(self.headers), body))
                answer = (
                    scripted.answers.pop(0) if len(scripted.answers) > 1 else scripted.answers[0]
                )
                if answer.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                data = (
                    b""
                    if answer.body is None
                    else (
                        answer.body.encode()
                        if isinstance(answer.body, str)
                        else json.dumps(answer.body).encode()
                    )
                )
                self.send_response(answer.status)
                kind = "text/html" if isinstance(answer.body, str) else "application/json"
                if answer.status >= 400 and not isinstance(answer.body, str):
                    kind = "application/problem+json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# The `dev` tenant's workflows (the `dev_workflows` fixture applies them).
DEV_SPECS = {
    "hello": """\
name: hello
description: Say hello, slowly
tags: [demo]
params:
  who: {type: string, default: world}
tasks:
  greet:
    type: shell
    command:
      - sh
      - -c
      - for i in 1 2 3 4; do echo "hello {{ params.who }} $i"; sleep 0.3; done
  done: {type: noop, depends_on: [greet]}
""",
    "failing": """\
name: failing
tasks:
  fail:
    type: shell
    command: ["sh", "-c", "echo about to fail; exit 3"]
""",
    "flaky": """\
name: flaky
tasks:
  flap:
    type: shell
    # The first try lasts a while: `orc logs --follow` starts while it runs, however slow
    # the machine, and must go on to the second.
    command:
      - sh
      - -c
      - echo try {{ try_number }}; test {{ try_number }} -ge 2 || { sleep 3; exit 1; }
    retries: 1
    retry_delay: 0s
""",
    "sleeper": """\
name: sleeper
tasks:
  nap: {type: shell, command: ["sleep", "60"]}
""",
    "fanout": """\
name: fanout
tasks:
  each:
    type: shell
    command: ["echo", "item {{ item }}"]
    map: {over: [a, b]}
  after: {type: noop, depends_on: [each]}
""",
    "daily": """\
name: daily
schedule: {cron: "0 6 * * *", timezone: UTC, catchup: none}
tasks:
  load: {type: noop}
""",
}
