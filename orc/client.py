"""A typed client of the orchestrator's REST API (docs/openapi.yaml), written thinly over it.

    from orc.client import Client

    with Client("https://orchestrator.example.com", token, "acme") as api:
        run = api.trigger_run("daily-sales", {"region": "eu"})
        run = api.wait_for_run(run["id"])

What it adds to plain HTTP: problem+json answers raised as `ApiError` (with the field paths
the server names), retries with backoff where repeating a request is safe, an
`Idempotency-Key` on every trigger (so a trigger is safe to repeat too), cursor pages
followed to the end, and the loops that follow a run or a task's log.

Retries (`retries` times, exponential backoff with jitter, or `Retry-After` when the server
sends one): a request that never reached the server (the connection failed) and a `429`
(the server did nothing of it) are retried whatever the method; `502`, `503`, `504` and a
connection lost mid-answer only for requests that are safe to repeat: GET, HEAD, PUT,
DELETE, a trigger (it carries its Idempotency-Key) and a package upload (the same file
again answers the stored package).

Result types are TypedDicts with the fields of the OpenAPI document's components (named
after them); a test checks their keys against it, so the two cannot drift apart."""

from __future__ import annotations

import email.utils
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, Self, TypedDict, cast
from urllib.parse import quote, urlsplit

import httpx

from orc import __version__

__all__ = [
    "FINISHED_RUN_STATES",
    "FINISHED_TASK_STATES",
    "ApiError",
    "ApplyFile",
    "ApplyPlan",
    "Attempt",
    "Backfill",
    "BackfillDryRun",
    "Client",
    "ClientError",
    "ConnectionFailed",
    "FieldError",
    "Log",
    "Me",
    "MeMembership",
    "MeToken",
    "Package",
    "PlannedChange",
    "PlannedInterval",
    "Run",
    "RunRetried",
    "TaskInstance",
    "Token",
    "Version",
    "Workflow",
]

# --- what the API answers (components of docs/openapi.yaml) ----------------------------------


class MeMembership(TypedDict):
    tenant: str
    tenant_name: str
    role: str


class MeToken(TypedDict):
    prefix: str
    tenant: str
    role: str
    expires_at: str | None


class Me(TypedDict):
    id: int
    username: str
    email: str
    is_staff: bool
    memberships: list[MeMembership]
    token: MeToken | None


class Version(TypedDict):
    id: int
    number: int
    content_hash: str
    author: str | None
    created_at: str
    spec: dict[str, Any]
    code: Any
    source: str | None  # what applied it from git (docs/gitops.md)
    source_commit: str | None


class Workflow(TypedDict):
    id: int
    name: str
    description: str
    tags: list[str]
    paused: bool
    current_version: Version | None
    created_at: str
    updated_at: str


class Run(TypedDict):
    id: int
    workflow: str
    version: int
    state: str
    params: dict[str, Any]
    logical_date: str
    data_interval_start: str | None
    data_interval_end: str | None
    trigger_source: str
    triggered_by: str | None
    created_at: str
    queued_at: str | None
    started_at: str | None
    ended_at: str | None
    tasks: dict[str, int] | None  # task instances per state (a single run's answer)
    event: Any


class RunRetried(Run):
    cleared: list[str]


class Attempt(TypedDict):
    id: int
    try_number: int
    state: str
    worker: str
    pid: int | None
    lease_expires_at: str | None
    started_at: str
    ended_at: str | None
    exit_code: int | None
    error: str
    rendered: Any
    uses: Any
    log_bytes: int


class TaskInstance(TypedDict):
    id: int
    task_id: str
    map_index: int
    map_value: Any
    task_type: str
    state: str
    try_number: int
    max_tries: int
    lost_tries: int
    priority: int
    pool: str
    pool_slots: int
    concurrency_key: str
    wait_reason: str
    next_attempt_at: str | None
    queued_at: str | None
    started_at: str | None
    ended_at: str | None
    result: Any
    error: str  # its last try's
    attempts: list[Attempt] | None  # one instance's answer only


class Log(TypedDict):
    try_number: int | None
    offset: int
    next_offset: int
    text: str
    running: bool
    total_bytes: int
    cap_bytes: int


class Backfill(TypedDict):
    id: int
    workflow: str
    state: str
    start: str
    end: str
    reprocess: str
    max_active_runs: int
    reverse: bool
    params: dict[str, Any]
    created_by: str | None
    created_at: str
    updated_at: str
    ended_at: str | None
    progress: dict[str, int]


class PlannedInterval(TypedDict):
    logical_date: str
    data_interval_start: str
    data_interval_end: str
    action: str
    run: int | None


class BackfillDryRun(TypedDict):
    dry_run: bool
    total: int
    intervals: list[PlannedInterval]


class Token(TypedDict):
    id: int
    name: str
    role: str
    prefix: str
    username: str
    created_by: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None
    token: str | None  # the token itself: only in the answer that created it


class Package(TypedDict):
    id: int
    name: str
    version: str
    digest: str
    filename: str
    size: int
    source_kind: str
    source_digest: str
    requires_python: str
    requirements: list[str]
    lock: list[str]
    index: dict[str, list[str]]
    uploaded_by: str | None
    created_at: str
    build_log: NotRequired[str]  # one package's answer only


class ApplyFile(TypedDict):
    """One spec file of a bulk apply (SpecFileRequest): its path (as the plan and errors
    will name it) and its text."""

    path: str
    content: str


class PlannedChange(TypedDict):
    workflow: str
    path: str | None  # None: a pruned workflow, which no file defines
    action: Literal["created", "updated", "unchanged", "pruned"]
    version: int | None
    diff: str  # unified diff of the canonical YAML; empty when unchanged or pruned


class ApplyPlan(TypedDict):
    dry_run: bool
    changes: list[PlannedChange]


class FieldError(TypedDict):
    path: str  # dotted, `[i]` for list items; empty for the request as a whole
    message: str
    file: NotRequired[str]  # a bulk apply's errors name the file too


FINISHED_RUN_STATES = frozenset({"success", "failed", "cancelled"})
FINISHED_TASK_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "cancelled"})

# --- errors ----------------------------------------------------------------------------------


class ClientError(Exception):
    """Anything the client could not do."""


class ApiError(ClientError):
    """The server answered with an error (problem+json, RFC 9457)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: Sequence[FieldError] = (),
        problem_type: str = "about:blank",
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail = status, title, detail
        self.errors, self.type = list(errors), problem_type

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        title = response.reason_phrase or "Error"
        if not isinstance(body, Mapping):  # a proxy's page, say: the first line of it
            text = response.text.strip().splitlines()
            detail = text[0][:200] if text else f"{response.request.method} {response.url}"
            return cls(response.status_code, title, detail)
        errors = [cast(FieldError, e) for e in body.get("errors") or () if isinstance(e, Mapping)]
        return cls(
            int(body.get("status") or response.status_code),
            str(body.get("title") or title),
            str(body.get("detail") or ""),
            errors,
            str(body.get("type") or "about:blank"),
        )


class ConnectionFailed(ClientError):
    """The server could not be reached, or stopped answering, after every retry."""


# --- the client ------------------------------------------------------------------------------

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
LOG_POLL_SECONDS = 0.3


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """`Retry-After` in seconds: a number, or an HTTP date (RFC 9110); None without one."""
    raw = response.headers.get("Retry-After", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Client:
    """The REST API of one server, as one token (and, for tenant paths, one tenant) sees it.

    `retries`: how many times a request may be repeated (see the module's docstring);
    `backoff`: the first delay in seconds, doubled each time (with jitter), at most
    `max_backoff`; a `Retry-After` longer than `max_retry_after` is not waited for (the
    error is raised)."""

    def __init__(
        self,
        server: str,
        token: str,
        tenant: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        max_retry_after: float = 60.0,
        user_agent: str = f"orc/{__version__}",
    ) -> None:
        self.server = server.rstrip("/")
        self.tenant = tenant
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.max_retry_after = max_retry_after
        self.sleep: Callable[[float], None] = time.sleep
        self._http = httpx.Client(
            base_url=self.server,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": user_agent,
            },
            timeout=timeout,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        repeatable: bool | None = None,
    ) -> Any:
        """Send one request (retried as the module's docstring says; `repeatable` overrides
        whether the method alone makes it safe to repeat) and return its decoded JSON body
        (None for an empty one). Raises ApiError on an error answer, ConnectionFailed when
        the server cannot be reached."""
        method = method.upper()
        safe = method in IDEMPOTENT_METHODS if repeatable is None else repeatable
        query = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            delay = self._backoff_delay(attempt)
            try:
                response = self._http.request(
                    method, path, params=query or None, json=json, files=files, headers=headers
                )
            except httpx.TransportError as exc:
                # A connection that failed carried nothing; any other failure may have.
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt >= self.retries or not (unsent or safe):
                    reason = str(exc) or type(exc).__name__
                    raise ConnectionFailed(
                        f"{method} {self.server}{path}: {reason} (after {attempt + 1} tries)"
                    ) from exc
            else:
                status = response.status_code
                if status not in RETRY_STATUSES or attempt >= self.retries:
                    return self._decode(response)
                if status != 429 and not safe:
                    return self._decode(response)
                wait = retry_after_seconds(response)
                if wait is not None:
                    if wait > self.max_retry_after:
                        return self._decode(response)
                    delay = wait
            attempt += 1
            self.sleep(delay)

    def _backoff_delay(self, attempt: int) -> float:
        """Exponential, jittered in its upper half, so clients do not retry in step."""
        ceiling = min(self.max_backoff, self.backoff * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (not a secret)

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        if not response.content:
            return None
        return response.json()

    def _tenant_path(self, *segments: str | int) -> str:
        if not self.tenant:
            raise ClientError("no tenant: create the Client with tenant=<slug>")
        tail = "".join(f"{_segment(s)}/" for s in segments)
        return f"/api/v1/tenants/{_segment(self.tenant)}/{tail}"

    def pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """Every item of a cursor-paged list, following `next` to the end (lazily: stop
        iterating to stop asking)."""
        url: str | None = path
        query: Mapping[str, Any] | None = params
        while url:
            page = self.request("GET", url, params=query)
            yield from page["results"]
            following = page.get("next")
            if not following:
                return
            # The link's path and query, on our base: a proxy in front may rewrite the host.
            parts = urlsplit(following)
            base_path = urlsplit(self.server).path
            url = parts.path.removeprefix(base_path) + (f"?{parts.query}" if parts.query else "")
            query = None

    def _list(self, path: str, limit: int | None, **params: Any) -> list[Any]:
        """Up to `limit` items (None: all), asking for no more per page than needed."""
        if limit is not None and limit <= 0:
            return []
        page_size = min(limit, 500) if limit else 100
        found = []
        for item in self.pages(path, {**params, "limit": page_size}):
            found.append(item)
            if limit is not None and len(found) >= limit:
                break
        return found

    # -- who am I ------------------------------------------------------------------------

    def me(self) -> Me:
        return cast(Me, self.request("GET", "/api/v1/me"))

    # -- workflows -----------------------------------------------------------------------

    def list_workflows(
        self, *, tag: str | None = None, search: str | None = None, limit: int | None = None
    ) -> list[Workflow]:
        return self._list(self._tenant_path("workflows"), limit, tag=tag, search=search)

    def get_workflow(self, name: str) -> Workflow:
        return cast(Workflow, self.request("GET", self._tenant_path("workflows", name)))

    def pause_workflow(self, name: str) -> Workflow:
        return cast(Workflow, self.request("POST", self._tenant_path("workflows", name, "pause")))

    def unpause_workflow(self, name: str) -> Workflow:
        path = self._tenant_path("workflows", name, "unpause")
        return cast(Workflow, self.request("POST", path))

    def apply(
        self,
        files: Sequence[ApplyFile],
        *,
        dry_run: bool = False,
        prune: bool = False,
        source_commit: str | None = None,
    ) -> ApplyPlan:
        """Bulk apply (GitOps, docs/gitops.md): every file validated first, then all applied
        in one transaction or none; `source_commit` (a git commit's 40 hex digits) is
        recorded on each new version."""
        body: dict[str, Any] = {"files": list(files), "dry_run": dry_run, "prune": prune}
        if source_commit is not None:
            body["source_commit"] = source_commit
        return cast(
            ApplyPlan, self.request("POST", self._tenant_path("workflows", "apply"), json=body)
        )

    # -- runs ----------------------------------------------------------------------------

    def trigger_run(
        self,
        workflow: str,
        params: Mapping[str, Any] | None = None,
        *,
        force: bool = False,
        idempotency_key: str | None = None,
    ) -> Run:
        """Start a run. The Idempotency-Key (generated unless given) makes the POST safe to
        repeat: the server answers a repeat with the first run. Give your own key to make a
        trigger safe to repeat across processes (a CI job run twice, say)."""
        key = idempotency_key or str(uuid.uuid4())
        return cast(
            Run,
            self.request(
                "POST",
                self._tenant_path("workflows", workflow, "runs"),
                json={"params": dict(params or {}), "force": force},
                headers={"Idempotency-Key": key},
                repeatable=True,
            ),
        )

    def list_runs(
        self,
        *,
        workflow: str | None = None,
        state: str | None = None,
        trigger_source: str | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        return self._list(
            self._tenant_path("runs"),
            limit,
            workflow=workflow,
            state=state,
            trigger_source=trigger_source,
        )

    def get_run(self, run_id: int) -> Run:
        return cast(Run, self.request("GET", self._tenant_path("runs", run_id)))

    def cancel_run(self, run_id: int) -> Run:
        return cast(Run, self.request("POST", self._tenant_path("runs", run_id, "cancel")))

    def retry_run(self, run_id: int) -> RunRetried:
        return cast(RunRetried, self.request("POST", self._tenant_path("runs", run_id, "retry")))

    def list_task_instances(self, run_id: int) -> list[TaskInstance]:
        return self._list(self._tenant_path("runs", run_id, "tasks"), None)

    def get_task_instance(
        self, run_id: int, task_id: str, *, map_index: int | None = None
    ) -> TaskInstance:
        path = self._tenant_path("runs", run_id, "tasks", task_id)
        return cast(TaskInstance, self.request("GET", path, params={"map_index": map_index}))

    def wait_for_run(
        self,
        run_id: int,
        *,
        on_change: Callable[[Run], None] | None = None,
        poll: float = 0.1,
        max_poll: float = 1.0,
    ) -> Run:
        """Poll the run until it ends and return it; `on_change(run)` whenever its state or
        task counts moved. Polls quickly at first, then every `max_poll` seconds at most."""
        seen: tuple[str, Any] | None = None
        delay = poll
        while True:
            run = self.get_run(run_id)
            now = (run["state"], sorted((run.get("tasks") or {}).items()))
            if now != seen:
                seen, delay = now, poll
                if on_change is not None:
                    on_change(run)
            if run["state"] in FINISHED_RUN_STATES:
                return run
            self.sleep(delay)
            delay = min(max_poll, delay * 1.3)

    # -- logs ----------------------------------------------------------------------------

    def read_log(
        self,
        run_id: int,
        task_id: str,
        *,
        offset: int = 0,
        try_number: int | None = None,
        map_index: int | None = None,
        limit: int | None = None,
    ) -> Log:
        path = self._tenant_path("runs", run_id, "tasks", task_id, "logs")
        params = {"offset": offset, "try": try_number, "map_index": map_index, "limit": limit}
        return cast(Log, self.request("GET", path, params=params))

    def follow_log(
        self,
        run_id: int,
        task_id: str,
        *,
        try_number: int | None = None,
        map_index: int | None = None,
        follow: bool = True,
        poll: float = LOG_POLL_SECONDS,
    ) -> Iterator[Log]:
        """Pages of a task's log with text in them, each byte once. Without `follow`, what
        is there now; with it, until the task ends. Without `try_number` it reads the
        latest try and, following, goes on to the next try when the task is retried."""
        pinned = try_number is not None
        offset = 0
        while True:
            page = self.read_log(
                run_id, task_id, offset=offset, try_number=try_number, map_index=map_index
            )
            if page["text"]:
                yield page
            if page["try_number"] is not None:
                try_number = page["try_number"]  # the latest try, read from offset on
            offset = page["next_offset"]
            if page["text"] and offset < page["total_bytes"]:
                continue  # more is there already
            if not follow:
                return
            if page["running"]:
                self.sleep(poll)
                continue
            if page["try_number"] is None or pinned:
                return  # a task that ended without a try (skipped, say), or the try asked for
            following = self._next_try(run_id, task_id, page["try_number"], map_index, poll)
            if following is None:
                return
            try_number, offset = following, 0

    def _next_try(
        self, run_id: int, task_id: str, ended: int, map_index: int | None, poll: float
    ) -> int | None:
        """After try `ended` stopped: the next try's number once it has started, or None
        when the task has ended."""
        while True:
            instance = self.get_task_instance(run_id, task_id, map_index=map_index)
            tries = {a["try_number"] for a in instance.get("attempts") or ()}
            if any(t > ended for t in tries):
                return min(t for t in tries if t > ended)
            if instance["state"] in FINISHED_TASK_STATES:
                return None
            self.sleep(poll)

    # -- backfills -----------------------------------------------------------------------

    def create_backfill(
        self,
        workflow: str,
        start: str,
        end: str,
        *,
        dry_run: bool = False,
        reprocess: str | None = None,
        max_active_runs: int | None = None,
        reverse: bool = False,
        params: Mapping[str, Any] | None = None,
    ) -> Backfill | BackfillDryRun:
        body: dict[str, Any] = {"start": start, "end": end, "dry_run": dry_run, "reverse": reverse}
        if reprocess is not None:
            body["reprocess"] = reprocess
        if max_active_runs is not None:
            body["max_active_runs"] = max_active_runs
        if params:
            body["params"] = dict(params)
        path = self._tenant_path("workflows", workflow, "backfills")
        return cast(Backfill | BackfillDryRun, self.request("POST", path, json=body))

    # -- tokens and packages -------------------------------------------------------------

    def create_token(
        self,
        name: str,
        role: str,
        *,
        service_account: str | None = None,
        expires_at: str | None = None,
    ) -> Token:
        body: dict[str, Any] = {"name": name, "role": role, "expires_at": expires_at}
        if service_account is not None:
            body["service_account"] = service_account
        return cast(Token, self.request("POST", self._tenant_path("tokens"), json=body))

    def list_tokens(self, *, limit: int | None = None) -> list[Token]:
        return self._list(self._tenant_path("tokens"), limit)

    def upload_package(self, filename: str, data: bytes) -> Package:
        """Upload a wheel, an sdist or a .zip/.tar.gz of a source tree (the file name says
        which). The same file again answers the package stored then, so it is repeated
        safely."""
        files = {"file": (filename, data, "application/octet-stream")}
        path = self._tenant_path("packages")
        return cast(Package, self.request("POST", path, files=files, repeatable=True))

    def list_packages(self, *, name: str | None = None, limit: int | None = None) -> list[Package]:
        return self._list(self._tenant_path("packages"), limit, name=name)
