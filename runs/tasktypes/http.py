"""The `http` task, the http sensor's check and the http connection probe: requests through
the SSRF guard (runs.tasktypes.netguard), with a tenant's connection for base URL and
credentials."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError

from connections.info import ConnectionInfo
from runs.tasktypes import netguard
from runs.tasktypes.contract import Attempt, Outcome, TaskFailed
from workflows.durations import parse_duration
from workflows.templating import environment

__all__ = ["check_http", "probe", "run_http"]

DEFAULT_TIMEOUT = 30
PROBE_TIMEOUT = 5
PROBE_MAX_BYTES = 1024
# Response headers kept in the result: describe the body, never carry credentials.
RESULT_HEADERS = ("content-type", "content-length", "etag", "last-modified", "location")
# Statuses that say "later" rather than "wrong": retried like a 5xx.
TEMPORARY_STATUSES = {408, 425, 429}
LOGGED_BODY_CHARS = 500


# --- the request -----------------------------------------------------------------------------


def _allowed(extra: Sequence[str]) -> list[str]:
    return [*getattr(settings, "HTTP_ALLOWED_HOSTS", []), *extra]


def base_url(info: ConnectionInfo) -> str:
    """The connection's base URL: its host as a full URL, or scheme (extra, default https),
    host and port."""
    if info.kind != "http":
        raise TaskFailed(
            f"connection {info.name!r} is a {info.kind} connection; an http task needs a "
            "connection of kind http",
            retryable=False,
        )
    host = info.host.strip()
    if not host:
        raise TaskFailed(f"connection {info.name!r} has no host", retryable=False)
    if "://" in host:
        parts = urlsplit(host)
        if info.port and parts.port is None:
            host = parts._replace(netloc=f"{parts.netloc}:{info.port}").geturl()
        return host.rstrip("/")
    host = f"[{host}]" if ":" in host else host
    port = f":{info.port}" if info.port else ""
    return f"{info.extra.get('scheme', 'https')}://{host}{port}"


def _auth_headers(info: ConnectionInfo) -> dict[str, str]:
    headers = {str(k): str(v) for k, v in (info.extra.get("headers") or {}).items()}
    if info.extra.get("auth") == "bearer":
        headers["Authorization"] = f"Bearer {info.password}"
    elif info.login or info.password:
        token = base64.b64encode(f"{info.login}:{info.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    defaults = netguard.SCHEMES
    return (a.scheme, a.hostname, a.port or defaults.get(a.scheme)) == (
        b.scheme,
        b.hostname,
        b.port or defaults.get(b.scheme),
    )


def _resolve_url(a: Attempt, url: str, headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The URL to request and its headers, with the task's connection (if any) applied.
    A connection's credentials go only to its own host: an absolute URL elsewhere (it may
    come from an upstream result) is refused rather than handed the password."""
    name = a.task.get("connection")
    if not name:
        return url, dict(headers)
    info = a.connection(name)
    base = base_url(info)
    if url.startswith("/"):
        url = base + url
    elif not _same_origin(url, base):
        raise TaskFailed(
            f"the url {netguard.safe_url(url)} is not on connection {name!r}'s host "
            f"({netguard.safe_url(base)}); give a path such as /items to request it there",
            retryable=False,
        )
    return url, {**_auth_headers(info), **headers}


def _timeout(task: Mapping[str, Any]) -> float:
    """request_timeout (within the attempt's timeout), else the attempt's timeout, else 30s.
    A Duration may come dumped as text ("1m30s"), hence parse_duration."""
    limit = parse_duration(task["timeout"]) if task.get("timeout") else None
    if task.get("request_timeout") is not None:
        seconds = parse_duration(task["request_timeout"])
        return float(min(seconds, limit) if limit else seconds)
    return float(limit or DEFAULT_TIMEOUT)


def _body(task: Mapping[str, Any], headers: dict[str, str]) -> bytes | None:
    if task.get("json") is not None:
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        return json.dumps(task["json"]).encode()
    if task.get("body") is not None:
        return str(task["body"]).encode()
    return None


def _query(task: Mapping[str, Any]) -> dict[str, str]:
    return {
        k: ("true" if v else "false") if isinstance(v, bool) else str(v)
        for k, v in (task.get("query") or {}).items()
    }


def _expected(status: int, expected: Sequence[int] | None) -> bool:
    return status in expected if expected else 200 <= status < 300


def _text(body: bytes) -> str:
    return body.decode("utf-8", "replace")


def _parsed(response: netguard.Response) -> Any:
    """The body as JSON when it is JSON (by content type, or because it parses), else text.
    A truncated body stays text: half a JSON document is not one."""
    text = _text(response.body)
    if response.truncated or not text.strip():
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _fetch(
    a: Attempt, method: str, headers: Mapping[str, str], timeout: float, **kwargs: Any
) -> netguard.Response:
    """The request, logged; a refusal of the guard as TaskFailed (not retryable)."""
    url, headers = _resolve_url(a, a.task["url"], headers)
    started = time.monotonic()
    try:
        response = netguard.request(
            method,
            url,
            headers=headers,
            timeout=timeout,
            allowed=_allowed(a.allowed_hosts),
            should_stop=a.should_stop,
            **kwargs,
        )
    except netguard.Blocked as exc:
        a.log(f"{method} {netguard.safe_url(url)} blocked: {exc}")
        raise TaskFailed(f"blocked: {exc}", retryable=False) from None
    except netguard.RequestFailed as exc:
        a.log(f"{method} {netguard.safe_url(url)} failed: {exc}")
        raise
    ms = round((time.monotonic() - started) * 1000)
    # Header values are never logged (they may hold credentials); nor the query string.
    via = f", {response.redirects} redirects" if response.redirects else ""
    a.log(
        f"{method} {netguard.safe_url(response.url)} -> {response.status} "
        f"({len(response.body)} bytes, {ms} ms{via})"
    )
    return response


# --- the http task ---------------------------------------------------------------------------


def run_http(a: Attempt) -> Outcome:
    task = a.task
    method = str(task.get("method") or "GET").upper()
    headers = dict(task.get("headers") or {})
    body = _body(task, headers)
    try:
        response = _fetch(
            a,
            method,
            headers,
            _timeout(task),
            params=_query(task),
            body=body,
            max_bytes=settings.TASK_RESULT_MAX_BYTES,
        )
    except netguard.RequestFailed as exc:
        return Outcome("failed", error=str(exc), retryable=not exc.permanent)
    except netguard.Stopped as exc:
        return Outcome("failed", error=str(exc))
    if response.truncated:
        a.log(
            f"the body was truncated to {len(response.body)} bytes (TASK_RESULT_MAX_BYTES); "
            "the result keeps it as text"
        )
    result = _result(response, settings.TASK_RESULT_MAX_BYTES)
    if _expected(response.status, task.get("expected_status")):
        return Outcome("success", result=result)
    if response.body:
        a.log(f"response body (start): {_text(response.body)[:LOGGED_BODY_CHARS]}")
    wanted = ", ".join(map(str, task.get("expected_status") or [])) or "2xx"
    temporary = response.status >= 500 or response.status in TEMPORARY_STATUSES
    return Outcome(
        "failed",
        error=(
            f"HTTP {response.status} from {method} {netguard.safe_url(response.url)}; "
            f"expected {wanted}"
        ),
        result=result,
        retryable=temporary,
    )


def _result(response: netguard.Response, cap: int) -> dict[str, Any]:
    """{status, headers, body}, its JSON within `cap` bytes: a text body is shortened (and
    a JSON body that would not fit becomes shortened text)."""
    headers = {k: v for k, v in response.headers.items() if k in RESULT_HEADERS}
    result = {"status": response.status, "headers": headers, "body": _parsed(response)}
    size = len(json.dumps(result))
    if size <= cap:
        return result
    text = _text(response.body)
    while size > cap and text:
        # Escapes make JSON longer than the text: cut in proportion, then check again.
        text = text[: max(0, len(text) * cap // size - 256)]
        result["body"] = text
        size = len(json.dumps(result))
    return result


# --- the http sensor ---------------------------------------------------------------------------


def check_http(a: Attempt) -> tuple[bool, str]:
    """One check of a wait_for http sensor: (done, what was seen). Not answering, 5xx or
    another status than expected is "not yet"; only a refused URL or bad `until` fails."""
    task = a.task
    method = str(task.get("method") or "GET").upper()
    until = _compile_until(task.get("until"))
    try:
        # The sensor's own timeout bounds the whole wait, not one check.
        timeout = min(DEFAULT_TIMEOUT, parse_duration(task.get("timeout") or DEFAULT_TIMEOUT))
        response = _fetch(
            a,
            method,
            task.get("headers") or {},
            float(timeout),
            max_bytes=settings.TASK_RESULT_MAX_BYTES,
        )
    except netguard.RequestFailed as exc:
        return False, f"not yet: {exc}"
    except netguard.Stopped as exc:
        return False, str(exc)
    wanted = ", ".join(map(str, task.get("expected_status") or [])) or "2xx"
    if not _expected(response.status, task.get("expected_status")):
        return False, f"not yet: HTTP {response.status} (waiting for {wanted})"
    if until is None:
        return True, f"HTTP {response.status}"
    parsed = _parsed(response)
    seen = {
        "status": response.status,
        "json": None if isinstance(parsed, str) else parsed,
        "text": _text(response.body),
        "headers": {k: v for k, v in response.headers.items() if k in RESULT_HEADERS},
    }
    try:
        holds = until(**{**a.context, "response": seen})
    except UndefinedError as exc:
        return False, f"not yet: HTTP {response.status}, `until` is undefined here ({exc})"
    except TemplateError as exc:
        raise TaskFailed(f"until: {exc}", retryable=False) from None
    if holds:
        return True, f"HTTP {response.status} and `until` holds"
    return False, f"not yet: HTTP {response.status}, `until` is false"


def _compile_until(source: Any) -> Any:
    if not source:
        return None
    text = str(source).strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2].strip()  # written as a template: the expression inside
    try:
        return environment().compile_expression(text)
    except TemplateSyntaxError as exc:
        raise TaskFailed(
            f"until: syntax error ({exc.message}); expected a Jinja expression such as "
            "response.json.state == 'done'",
            retryable=False,
        ) from None


# --- the connection probe ---------------------------------------------------------------------


def probe(info: ConnectionInfo, allowed_hosts: Sequence[str]) -> tuple[bool, str]:
    """The connections API's test of an http connection: a GET of its base URL through the
    guard. Any answer below 500 counts as reached (a 401 or 404 still proves the way)."""
    try:
        url = base_url(info)
        url = url if urlsplit(url).path else url + "/"
        started = time.monotonic()
        response = netguard.request(
            "GET",
            url,
            headers=_auth_headers(info),
            timeout=PROBE_TIMEOUT,
            max_bytes=PROBE_MAX_BYTES,
            allowed=_allowed(allowed_hosts),
        )
    except netguard.Blocked as exc:
        return False, f"blocked: {exc}"
    except (TaskFailed, netguard.RequestFailed) as exc:
        return False, str(exc)
    ms = round((time.monotonic() - started) * 1000)
    return response.status < 500, f"HTTP {response.status} in {ms} ms"
