"""A fake Kubernetes API server for the container task's tests (Kubernetes cannot run
here). It serves, on 127.0.0.1 only, just what runs.tasktypes.container calls through the
official client: create/read/delete a Job, list a Job's pods, follow a pod's log, and
create/read/patch/delete a Secret. What a Job's pod does is a scripted `Scenario`, played
against the clock. There is no garbage collector: a Secret goes only when deleted."""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeJob", "FakeKube", "Scenario", "fake_kube"]

TOKEN = "fake-token"
MERGE_PATCHES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
STAMP = "2026-01-01T00:00:00Z"


@dataclass
class Scenario:
    """What the Job's pod does: after `start_after` seconds pending it runs, prints
    `lines` one every `line_delay` seconds, then exits with `exit_code` (None: runs until
    deleted). With `waiting_reason` it never starts (e.g. ImagePullBackOff); with
    `deadline_after` Kubernetes stops it (DeadlineExceeded) that long after it started."""

    lines: list[str] = field(default_factory=list)
    exit_code: int | None = 0
    line_delay: float = 0.05
    start_after: float = 0.1
    waiting_reason: str = ""
    waiting_message: str = ""
    deadline_after: float | None = None
    terminated_reason: str = ""


@dataclass
class FakeJob:
    manifest: dict[str, Any]
    scenario: Scenario
    created: float = field(default_factory=time.monotonic)
    deleted: bool = False
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))  # as the API server assigns

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def pod_name(self) -> str:
        return f"{self.name}-x7k2q"

    @property
    def started(self) -> float:
        return self.created + self.scenario.start_after

    def line_at(self, index: int) -> float:
        return self.started + index * self.scenario.line_delay

    def phase(self) -> str:
        """pending | running | done | deadline, as of now."""
        s, now = self.scenario, time.monotonic()
        if s.waiting_reason or now < self.started:
            return "pending"
        if s.deadline_after is not None and now >= self.started + s.deadline_after:
            return "deadline"
        if s.exit_code is not None and now >= self.line_at(len(s.lines)):
            return "done"
        return "running"


class FakeKube(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.jobs: dict[tuple[str, str], FakeJob] = {}
        self.next_scenario = Scenario()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.create_statuses: list[int] = []
        self.deletes: list[tuple[str, str, str]] = []  # namespace, name, propagationPolicy
        # (status, reason, message) to answer the next Job creations with, e.g. a 403
        self.job_create_error: tuple[int, str, str] | None = None
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}  # as stored: `data` only
        self.secret_creates: list[int] = []
        self.secret_patches: list[tuple[str, str, Any]] = []  # name, Content-Type, body
        self.secret_patch_error: tuple[int, str, str] | None = None  # as job_create_error
        self.secret_deletes: list[tuple[str, str]] = []  # namespace, name
        self.tokens: set[str] = set()
        self.failing_reads = 0  # the next this many reads of a Job answer 500
        self.closing = False
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add_job(self, manifest: dict[str, Any], scenario: Scenario) -> FakeJob:
        """A Job that exists before the test's attempt (a repeated delivery's)."""
        job = FakeJob(manifest, scenario)
        self.jobs[(manifest["metadata"]["namespace"], job.name)] = job
        return job

    def add_secret(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """A Secret that exists before the test's attempt."""
        secret = _stored_secret(copy.deepcopy(manifest))
        self.secrets[(secret["metadata"]["namespace"], secret["metadata"]["name"])] = secret
        return secret

    def secret_env(self, namespace: str, name: str) -> dict[str, str]:
        """A stored Secret's data, decoded."""
        data = self.secrets[(namespace, name)].get("data") or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    def write_kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "worker", "user": {"token": TOKEN}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "worker"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config))  # JSON is YAML
        return path


@contextmanager
def fake_kube() -> Iterator[FakeKube]:
    server = FakeKube()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.closing = True
        server.shutdown()
        server.server_close()


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _job_json(job: FakeJob) -> dict[str, Any]:
    phase, s = job.phase(), job.scenario
    status: dict[str, Any] = {"startTime": STAMP}
    if phase in ("pending", "running"):
        status["active"] = 1
    elif phase == "deadline":
        status["failed"] = 1
        status["conditions"] = [
            {
                "type": "Failed",
                "status": "True",
                "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline",
            }
        ]
    elif s.exit_code == 0:
        status["succeeded"] = 1
        status["conditions"] = [{"type": "Complete", "status": "True"}]
    else:
        status["failed"] = 1
        status["conditions"] = [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ]
    meta = dict(job.manifest["metadata"], uid=job.uid, creationTimestamp=STAMP)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": job.manifest["spec"],
        "status": status,
    }


def _stored_secret(secret: dict[str, Any]) -> dict[str, Any]:
    """As the API server keeps a Secret: `stringData` folded into base64 `data`."""
    data = dict(secret.get("data") or {})
    for key, value in (secret.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    secret["data"] = data
    secret.setdefault("type", "Opaque")
    meta = secret["metadata"]
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault("creationTimestamp", STAMP)
    meta["resourceVersion"] = str(int(meta.get("resourceVersion") or 0) + 1)
    return secret


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add / replace / remove / test, on objects (and list indexes / "-")."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = _pointer(op["path"])
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        kind = op["op"]
        if kind == "test":
            current = target[int(last)] if isinstance(target, list) else target[last]
            if current != op["value"]:
                raise ValueError(f"test failed at {op['path']}")
        elif isinstance(target, list):
            index = len(target) if last == "-" else int(last)
            if kind == "add":
                target.insert(index, op["value"])
            elif kind == "replace":
                target[index] = op["value"]
            elif kind == "remove":
                del target[index]
            else:
                raise ValueError(f"unsupported op {kind!r}")
        elif kind == "add" or (kind == "replace" and last in target):
            target[last] = op["value"]
        elif kind == "remove" and last in target:
            del target[last]
        else:
            raise ValueError(f"cannot {kind} {op['path']}")
    return doc


def _merge_patch(doc: Any, patch: Any) -> Any:
    """RFC 7386 (also used for strategic merge: lists are replaced, not merged by key)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_patch(merged.get(key), value)
    return merged


def _container_state(job: FakeJob, phase: str) -> dict[str, Any]:
    s = job.scenario
    if phase == "pending":
        reason = s.waiting_reason or "ContainerCreating"
        return {"waiting": {"reason": reason, "message": s.waiting_message}}
    if phase == "running":
        return {"running": {"startedAt": STAMP}}
    code = s.exit_code or 0
    reason = s.terminated_reason or ("Completed" if code == 0 else "Error")
    return {"terminated": {"exitCode": code, "reason": reason, "finishedAt": STAMP}}


def _pod_json(job: FakeJob) -> dict[str, Any]:
    phase = job.phase()
    pod_phase = {"pending": "Pending", "running": "Running"}.get(phase) or (
        "Succeeded" if job.scenario.exit_code == 0 else "Failed"
    )
    container = job.manifest["spec"]["template"]["spec"]["containers"][0]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": job.pod_name,
            "namespace": job.manifest["metadata"]["namespace"],
            "labels": {"job-name": job.name, **job.manifest["metadata"]["labels"]},
            "creationTimestamp": STAMP,
        },
        "spec": {"containers": [{"name": container["name"], "image": container["image"]}]},
        "status": {
            "phase": pod_phase,
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": phase == "running",
                    "restartCount": 0,
                    "state": _container_state(job, phase),
                }
            ],
        },
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeKube
    content_type = ""  # the request's

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self.server.lock:
            self.server.requests.append((method, url.path, query))
        self.content_type = self.headers.get("Content-Type", "")
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        auth = self.headers.get("Authorization", "")
        self.server.tokens.add(auth)
        if auth != f"Bearer {TOKEN}":
            self._send(401, _status(401, "Unauthorized", "Unauthorized"))
            return
        parts = url.path.strip("/").split("/")
        match parts:
            case ["apis", "batch", "v1", "namespaces", ns, "jobs"] if method == "POST":
                self._create(ns, body or {})
            case ["apis", "batch", "v1", "namespaces", ns, "jobs", name] if method == "GET":
                if self.server.failing_reads > 0:
                    self.server.failing_reads -= 1
                    self._send(500, _status(500, "InternalError", "etcdserver: leader changed"))
                    return
                job = self._job(ns, name)
                if job is not None:
                    self._send(200, _job_json(job))
            case ["apis", "batch", "v1", "namespaces", ns, "jobs", name] if method == "DELETE":
                self._delete(ns, name, query, body or {})
            case ["api", "v1", "namespaces", ns, "secrets"] if method == "POST":
                self._create_secret(ns, body or {})
            case ["api", "v1", "namespaces", ns, "secrets", name] if method == "GET":
                secret = self._secret(ns, name)
                if secret is not None:
                    self._send(200, secret)
            case ["api", "v1", "namespaces", ns, "secrets", name] if method == "PATCH":
                self._patch_secret(ns, name, body)
            case ["api", "v1", "namespaces", ns, "secrets", name] if method == "DELETE":
                self._delete_secret(ns, name)
            case ["api", "v1", "namespaces", ns, "pods"] if method == "GET":
                self._pods(ns, query.get("labelSelector", ""))
            case ["api", "v1", "namespaces", ns, "pods", pod, "log"] if method == "GET":
                self._log(ns, pod, query)
            case _:
                self._send(404, _status(404, "NotFound", f"no route {method} {url.path}"))

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def _job(self, ns: str, name: str) -> FakeJob | None:
        job = self.server.jobs.get((ns, name))
        if job is None or job.deleted:
            self._send(404, _status(404, "NotFound", f'jobs.batch "{name}" not found'))
            return None
        return job

    def _create(self, ns: str, manifest: dict[str, Any]) -> None:
        name = manifest["metadata"]["name"]
        if self.server.job_create_error is not None:
            code, reason, message = self.server.job_create_error
            self.server.create_statuses.append(code)
            self._send(code, _status(code, reason, message))
            return
        with self.server.lock:
            exists = (ns, name) in self.server.jobs and not self.server.jobs[(ns, name)].deleted
            self.server.create_statuses.append(409 if exists else 201)
            if not exists:
                manifest["metadata"]["namespace"] = ns
                self.server.jobs[(ns, name)] = FakeJob(manifest, self.server.next_scenario)
        if exists:
            self._send(409, _status(409, "AlreadyExists", f'jobs.batch "{name}" already exists'))
        else:
            self._send(201, _job_json(self.server.jobs[(ns, name)]))

    def _delete(self, ns: str, name: str, query: dict[str, str], body: dict[str, Any]) -> None:
        job = self._job(ns, name)
        if job is None:
            return
        policy = query.get("propagationPolicy") or body.get("propagationPolicy") or ""
        with self.server.lock:
            job.deleted = True
            self.server.deletes.append((ns, name, policy))
        self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def _secret(self, ns: str, name: str) -> dict[str, Any] | None:
        secret = self.server.secrets.get((ns, name))
        if secret is None:
            self._send(404, _status(404, "NotFound", f'secrets "{name}" not found'))
        return secret

    def _create_secret(self, ns: str, manifest: dict[str, Any]) -> None:
        name = manifest["metadata"]["name"]
        with self.server.lock:
            exists = (ns, name) in self.server.secrets
            self.server.secret_creates.append(409 if exists else 201)
            if not exists:
                manifest["metadata"]["namespace"] = ns
                self.server.secrets[(ns, name)] = _stored_secret(manifest)
        if exists:
            self._send(409, _status(409, "AlreadyExists", f'secrets "{name}" already exists'))
        else:
            self._send(201, self.server.secrets[(ns, name)])

    def _patch_secret(self, ns: str, name: str, body: Any) -> None:
        """JSON patch (a list body) or a merge patch (an object), as the client picks."""
        kind = self.content_type
        with self.server.lock:
            self.server.secret_patches.append((name, kind, body))
        if self.server.secret_patch_error is not None:
            code, reason, message = self.server.secret_patch_error
            self._send(code, _status(code, reason, message))
            return
        secret = self._secret(ns, name)
        if secret is None:
            return
        try:
            if kind == "application/json-patch+json" and isinstance(body, list):
                patched = _json_patch(secret, body)
            elif kind in MERGE_PATCHES and isinstance(body, dict):
                patched = _merge_patch(secret, body)
            else:
                message = f"unsupported patch {kind!r} with a {type(body).__name__} body"
                self._send(415, _status(415, "UnsupportedMediaType", message))
                return
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self._send(422, _status(422, "Invalid", f"the patch does not apply: {exc}"))
            return
        with self.server.lock:
            self.server.secrets[(ns, name)] = _stored_secret(patched)
        self._send(200, self.server.secrets[(ns, name)])

    def _delete_secret(self, ns: str, name: str) -> None:
        if self._secret(ns, name) is None:
            return
        with self.server.lock:
            del self.server.secrets[(ns, name)]
            self.server.secret_deletes.append((ns, name))
        self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def _pods(self, ns: str, selector: str) -> None:
        key, _, name = selector.partition("=")
        if key != "job-name" or not name:
            self._send(400, _status(400, "BadRequest", f"unsupported selector {selector!r}"))
            return
        job = self.server.jobs.get((ns, name))
        # A deleted Job takes its pod along; so does a Job stopped at its deadline.
        items = [] if job is None or job.deleted or job.phase() == "deadline" else [job]
        self._send(
            200,
            {
                "apiVersion": "v1",
                "kind": "PodList",
                "metadata": {"resourceVersion": "1"},
                "items": [_pod_json(j) for j in items],
            },
        )

    def _log(self, ns: str, pod: str, query: dict[str, str]) -> None:
        job = next(
            (j for (n, _), j in self.server.jobs.items() if n == ns and j.pod_name == pod), None
        )
        if job is None or job.deleted:
            self._send(404, _status(404, "NotFound", f'pods "{pod}" not found'))
            return
        if job.phase() == "pending":
            message = f'container "task" in pod "{pod}" is waiting to start: ContainerCreating'
            self._send(400, _status(400, "BadRequest", message))
            return
        follow = query.get("follow", "").lower() == "true"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, line in enumerate(job.scenario.lines):
            if not self._wait(job, job.line_at(index), follow):
                break
            self._chunk(f"{line}\n".encode())
        # A container that keeps running keeps a followed log open until it goes.
        while follow and job.phase() == "running" and not self._gone(job):
            time.sleep(0.02)
        self._chunk(b"")

    def _gone(self, job: FakeJob) -> bool:
        return job.deleted or self.server.closing

    def _wait(self, job: FakeJob, when: float, follow: bool) -> bool:
        """Until the line is printed (following) or whether it was already (not)."""
        while time.monotonic() < when:
            if not follow or self._gone(job) or job.phase() == "deadline":
                return False
            time.sleep(0.01)
        return True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
