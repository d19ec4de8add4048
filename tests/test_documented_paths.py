"""What README.md and docs/*.md show works: every API path they name answers (not 404, 405
or 5xx) with and without its trailing slash, and every curl line they show, run with the
real curl against a live server, gets the answer it promises.

Paths and curl lines are read out of the text, never copied here, so a doc that changes is
checked as it is. How the docs write paths (docs/api.md, "Paths"):

- a code span that starts with `/api/`, `/healthz`, `/readyz`, `/metrics` or `/graphql`, or
  with `...`, which stands for `/api/v1/tenants/{tenant}`; an HTTP method may come first;
- `[x]` marks an optional part, `[x, y]` alternatives;
- a span that starts with another `/` (`/retry` after `.../cancel`) replaces the last
  segment of the path before it on the same line;
- `{...}` is an object of the collection named by the segment before it (`runs/{id}`: a
  run), filled here with real objects; a query string documents parameters, so it is
  dropped.

One server and one set of objects serve every line; the curl lines run in the order of
the docs, as a reader would run them (one shell session per document, so its variables
carry over), each run id (`42`) standing for a fresh failed run.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.test import Client
from django.utils import timezone

from notifications.models import Channel, Delivery, SlaMiss
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import Event, WorkflowRun
from runs.tasktypes.package_store import store_wheel
from tests.harness import Team, api, make_team, token_row
from tests.runs.run_states import failed_run
from tests.teamcode_support import wheel_bytes
from workflows.models import CodePackage
from workflows.services import apply_workflow

ROOT = Path(settings.BASE_DIR)
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
ROOTS = ("/api/", "/healthz", "/readyz", "/metrics", "/graphql")
TENANT_PREFIX = "/api/v1/tenants/{tenant}"
# Where the docs name the base of the REST API, not an endpoint.
BASES = frozenset({"/api/", "/api/v1/"})
DEMO_HOST = "http://127.0.0.1:8000"
DOCUMENTED_RUN = re.compile(r"(/runs/)42\b")

FENCE = re.compile(r"^\s*```.*?^\s*```", re.S | re.M)
CODE_SPAN = re.compile(r"`([^`]+)`")
CURL_START = re.compile(r"^\s*curl\s")
ASSIGNMENT = re.compile(r"^[A-Z_]+=")
STATUS_COMMENT = re.compile(r"#\s*(\d{3})\b")


# --- reading the docs ----------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentedPath:
    method: str | None  # None: the docs name no method
    template: str  # e.g. /api/v1/tenants/{tenant}/runs/{id}/
    source: str  # file:line

    def __str__(self) -> str:
        return f"{self.source}: {self.method or ''} {self.template}".replace(":  ", ": ")


@dataclass(frozen=True)
class CurlCommand:
    script: str  # the block's assignments, then the command, as the reader would paste it
    allowed: frozenset[int]  # statuses the docs promise; empty: any 2xx
    source: str

    def __str__(self) -> str:
        return f"{self.source}: {self.script.splitlines()[-1].strip()}"


def _expand(text: str) -> list[str]:
    """Every form of `a[b[c]]` and `a[x, y]`: optional parts and alternatives."""
    start = text.find("[")
    if start < 0:
        return [text]
    depth, end = 0, start
    for end in range(start, len(text)):
        depth += {"[": 1, "]": -1}.get(text[end], 0)
        if depth == 0:
            break
    inner, rest = text[start + 1 : end], _expand(text[end + 1 :])
    alternatives, depth, piece = [], 0, ""
    for char in inner:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            alternatives.append(piece.strip())
            piece = ""
        else:
            piece += char
    alternatives.append(piece.strip())
    middles = [""] + [form for alternative in alternatives for form in _expand(alternative)]
    return [text[:start] + middle + tail for middle in middles for tail in rest]


def _prose_with_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each paragraph line outside fenced blocks, lines of one
    paragraph joined so that a code span may wrap."""
    blanked = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    start, paragraph = 1, list[str]()
    for number, line in enumerate(blanked.split("\n"), 1):
        if line.strip() and not line.lstrip().startswith("|"):
            if not paragraph:
                start = number
            paragraph.append(line.strip())
            continue
        if paragraph:
            yield start, " ".join(paragraph)
            paragraph = []
        if line.strip():  # a table row is a paragraph of its own
            yield number, line
    if paragraph:
        yield start, " ".join(paragraph)


def _paths_in(line: str, source: str) -> Iterator[DocumentedPath]:
    previous: str | None = None
    for span in CODE_SPAN.findall(line):
        first, _, rest = span.strip().partition(" ")
        method = first if first in METHODS and rest else None
        text = re.sub(r",\s+", ",", rest if method else span.strip())  # [x, y]: one word
        if re.search(r"\s", text):
            continue
        if text.startswith("..."):
            text = TENANT_PREFIX + text[3:]
        elif text.startswith("/") and not text.startswith(ROOTS):
            if previous is None:
                continue
            text = previous.rsplit("/", 2 if previous.endswith("/") else 1)[0] + text
        elif not text.startswith(ROOTS):
            continue
        previous = text.split("[", 1)[0]
        for form in _expand(text):
            path = form.split("?", 1)[0]
            if path not in BASES:
                yield DocumentedPath(method, path, source)


def documented_paths() -> list[DocumentedPath]:
    found: dict[tuple[str | None, str], DocumentedPath] = {}
    for document in DOCUMENTS:
        for number, line in _prose_with_lines(document.read_text()):
            for path in _paths_in(line, f"{document.name}:{number}"):
                found.setdefault((path.method, path.template), path)
    return list(found.values())


def _logical_lines(block: list[str]) -> Iterator[tuple[int, str]]:
    """Shell lines with `\\` continuations and multi-line '...' strings joined."""
    current, start = "", 0
    for index, line in enumerate(block):
        if not current:
            start = index
        current += line + "\n"
        if current.count("'") % 2 == 0 and not line.endswith("\\"):
            yield start, current
            current = ""


def curl_commands() -> list[CurlCommand]:
    commands = []
    for document in DOCUMENTS:
        text = document.read_text()
        assignments: list[str] = []  # one shell session per document, as a reader's
        for fence in FENCE.finditer(text):
            first_line = text.count("\n", 0, fence.start()) + 1
            block = fence.group(0).split("\n")[1:-1]
            for offset, line in _logical_lines(block):
                if ASSIGNMENT.match(line) and "$(" not in line:
                    assignments.append(line)
                elif CURL_START.match(line):
                    comment = STATUS_COMMENT.search(line.rsplit("'", 1)[-1])
                    allowed = frozenset({int(comment.group(1))} if comment else ())
                    source = f"{document.name}:{first_line + 1 + offset}"
                    commands.append(CurlCommand("".join([*assignments, line]), allowed, source))
    return commands


# --- the objects the placeholders stand for ----------------------------------------------

DAILY_SALES: dict[str, Any] = {
    "name": "daily-sales",
    "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Berlin", "catchup": "none"},
    "tasks": {"load": {"type": "noop"}},
}


@dataclass
class DocumentedObjects:
    """A `demo` tenant with one object of each collection the docs name, by collection."""

    team: Team
    by_collection: dict[str, str]

    @property
    def token(self) -> str:
        return self.team.tokens["owner"]

    def fill(self, template: str) -> str:
        segments = template.split("/")
        for index, segment in enumerate(segments):
            if segment.startswith("{"):
                collection = segments[index - 1]
                assert collection in self.by_collection, f"no object for {collection}/{segment}"
                segments[index] = self.by_collection[collection]
        return "/".join(segments)

    def fresh_run(self) -> str:
        return str(failed_run(self.team).pk)


def _created(client: Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(url, body, content_type="application/json")
    assert response.status_code in (200, 201), response.content
    result: dict[str, Any] = response.json()
    return result


def _notification_rows(team: Team, run: WorkflowRun) -> tuple[Event, Delivery, SlaMiss]:
    """The run's failure as the engine records it, a failed delivery of it to the docs'
    channel, and a missed SLA: rows the engine, the notifier and the SLA checks write."""
    event = Event.objects.dangerously_unscoped().create(
        tenant=team.tenant, type="run.failed", workflow=run.workflow, run=run, data={}
    )
    channel = Channel.objects.dangerously_unscoped().get(tenant=team.tenant, name="ops-email")
    delivery = Delivery.objects.dangerously_unscoped().create(
        tenant=team.tenant,
        key=f"e{event.pk}:c{channel.pk}",
        event=event,
        channel=channel,
        status=Delivery.Status.FAILED,
    )
    miss = SlaMiss.objects.dangerously_unscoped().create(
        tenant=team.tenant,
        key=f"run_duration:{run.pk}",
        kind=SlaMiss.Kind.RUN_DURATION,
        workflow=run.workflow,
        run=run,
        sla="run_duration: 1h",
        due_at=timezone.now(),
    )
    return event, delivery, miss


def _package_row(team: Team) -> CodePackage:
    """An uploaded package as the upload leaves it (the upload itself is tested in
    tests/runs/test_package_upload.py): a row and its stored wheel."""
    source = {"acme_etl/__init__.py": "def clean(x):\n    return x\n"}
    filename, wheel = wheel_bytes("acme-etl", "1.4.2", source)
    digest = hashlib.sha256(wheel).hexdigest()
    store_wheel(digest, filename, wheel)
    return CodePackage.objects.dangerously_unscoped().create(
        tenant=team.tenant,
        name="acme-etl",
        version="1.4.2",
        digest=digest,
        filename=filename,
        size=len(wheel),
        source_kind="wheel",
        source_digest=digest,
        index={"acme_etl": ["clean"]},
    )


def make_documented_objects() -> DocumentedObjects:
    team = make_team("demo", roles=["owner"])
    with tenant_scope([team.tenant]):
        for spec in [
            yaml.safe_load((ROOT / "examples" / "parametrised-export.yaml").read_text()),
            DAILY_SALES,
        ]:
            apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec)
    run = failed_run(team)  # applies the `etl` workflow
    client, base = api(team.tokens["owner"]), f"/api/v1/tenants/{team.slug}"
    account = _created(client, f"{base}/service-accounts/", {"name": "ci", "role": "viewer"})
    connection = {"name": "warehouse", "kind": "sqlite", "database": "/nonexistent.sqlite3"}
    _created(client, f"{base}/connections/", connection)
    _created(client, f"{base}/variables/", {"name": "threshold", "value": "3"})
    _created(client, f"{base}/secrets/", {"name": "api_key", "value": "k-1"})
    email = {"name": "ops-email", "kind": "email", "recipients": ["ops@example.com"]}
    _created(client, f"{base}/notification-channels/", email)
    _created(
        client, f"{base}/notification-rules/", {"name": "ops-failures", "channels": ["ops-email"]}
    )
    event, delivery, miss = _notification_rows(team, run)
    package = _package_row(team)
    make_team("demo-partner", roles=["owner"])
    grant = _created(
        client, f"{base}/grants/", {"grantee": "demo-partner", "kind": "events", "name": "*"}
    )
    # Never synced in these tests: its address is a documentation one (192.0.2.0/24) that
    # the network guard refuses before anything is resolved or connected to.
    source = {"name": "lake-flows", "url": "https://192.0.2.10/acme/flows.git"}
    _created(client, f"{base}/git-sources/", source)
    _created(client, f"{base}/pools/", {"name": "shared-db", "slots": 4})
    backfill = _created(
        client,
        f"{base}/workflows/daily-sales/backfills/",
        {"start": "2026-01-01", "end": "2026-01-02", "max_active_runs": 1},
    )
    by_collection = {
        "tenants": team.slug,
        "members": team.owner.username,
        "service-accounts": str(account["name"]),
        "tokens": token_row(team.tokens["owner"]).prefix,
        "connections": "warehouse",
        "variables": "threshold",
        "secrets": "api_key",
        "workflows": "daily-sales",
        "versions": "1",
        "runs": str(run.pk),
        "tasks": "load",
        "backfills": str(backfill["id"]),
        "events": str(event.uid),
        "grants": str(grant["id"]),
        "notification-channels": "ops-email",
        "notification-rules": "ops-failures",
        "deliveries": str(delivery.pk),
        "sla-misses": str(miss.pk),
        "packages": str(package.pk),
        "git-sources": "lake-flows",
        "pools": "shared-db",
    }
    return DocumentedObjects(team, by_collection)


# --- the checks ------------------------------------------------------------------------------


def _answer(client: Client, path: DocumentedPath, url: str) -> tuple[str, int]:
    """The documented method's status; with no method documented, GET's, or when GET is not
    allowed, that of the first method the path allows."""
    method = path.method or "GET"
    response = client.generic(method, url, "", content_type="application/json")
    if path.method is None and response.status_code == 405 and response.get("Allow"):
        method = response["Allow"].split(",")[0].strip()
        response = client.generic(method, url, "", content_type="application/json")
    return method, response.status_code


def _promised(status: int, allowed: frozenset[int]) -> bool:
    """A comment `# 204` pins the status; `# 409 once the run has ended` adds one."""
    if any(200 <= s < 300 for s in allowed):
        return status in allowed
    return 200 <= status < 300 or status in allowed


def test_the_docs_name_the_paths_and_curl_lines_this_test_reads() -> None:
    templates = {p.template for p in documented_paths()}
    assert "/api/v1/tenants/{tenant}/runs/{id}/tasks/{task_id}/logs/" in templates
    assert "/api/v1/tenants/{t}/runs/{id}/retry" in templates
    assert "/api/v1/tenants/{t}/backfills/{id}/resume/" in templates
    assert "/healthz" in templates
    shown = sum(
        1
        for document in DOCUMENTS
        for fence in FENCE.finditer(document.read_text())
        for line in fence.group(0).split("\n")
        if CURL_START.match(line)
    )
    assert len(curl_commands()) == shown


@pytest.fixture
def _package_storage(settings: Any, tmp_path: Path) -> None:
    storages = dict(settings.STORAGES)
    storages["packages"] = {**storages["packages"], "OPTIONS": {"location": str(tmp_path)}}
    settings.STORAGES = storages


@pytest.mark.usefixtures("_package_storage")
def test_every_documented_path_answers_with_and_without_its_slash(db: None, settings: Any) -> None:
    settings.METRICS_TOKEN = "a-scrapers-token"  # /metrics on (a tenant's token gets a 403)
    objects = make_documented_objects()
    client = api(objects.token)
    failures = []
    for path in documented_paths():
        url = objects.fill(path.template)
        for form in {url, url.rstrip("/") if url.endswith("/") else f"{url}/"}:
            method, status = _answer(client, path, form)
            if status in (404, 405) or status >= 500:
                failures.append(f"{path}: {method} {form} answered {status}")
    assert not failures, "\n".join(failures)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")
@pytest.mark.usefixtures("_package_storage")
def test_every_documented_curl_line_gets_the_answer_it_promises(
    transactional_db: None, live_server: Any, tmp_path: Path
) -> None:
    objects = make_documented_objects()
    body = tmp_path / "body"
    # Each call prints its status; the body is kept for the failure message.
    wrapper = f"curl() {{ command curl -sS -o '{body}' -w '%{{http_code}}\\n' \"$@\"; }}\n"
    failures = []
    for command in curl_commands():
        script = command.script.replace(DEMO_HOST, live_server.url).replace("orc_…", "$TOKEN")
        script = DOCUMENTED_RUN.sub(lambda m: m.group(1) + objects.fresh_run(), script)
        done = subprocess.run(
            ["bash", "-c", wrapper + script],
            env={"PATH": "/usr/bin:/bin", "TOKEN": objects.token},
            capture_output=True,
            text=True,
            timeout=30,
        )
        status = int(done.stdout.split()[-1]) if done.stdout.split() else 0
        promised = _promised(status, command.allowed)
        if not promised:
            answer = done.stderr if status == 0 or not body.exists() else body.read_text()
            failures.append(f"{command}\n  -> {status}: {answer[:300]}")
    assert not failures, "\n".join(failures)
