"""The http task, the http sensor's check and the http connection probe, end to end against
a real server on 127.0.0.1 (allowed through HTTP_ALLOWED_HOSTS)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import override_settings

from connections.info import ConnectionInfo
from runs.tasktypes.contract import Attempt, TaskFailed
from runs.tasktypes.http import check_http, probe, run_http
from runs.tasktypes.process import OutputSink
from tests.runs.tasktypes.test_netguard import LocalServer, serve

pytestmark = pytest.mark.usefixtures("allow_loopback")


@pytest.fixture
def allow_loopback() -> Iterator[None]:
    with override_settings(HTTP_ALLOWED_HOSTS=["127.0.0.1"]):
        yield


@pytest.fixture
def server() -> Iterator[LocalServer]:
    yield from serve(LocalServer())


def attempt(
    task: dict[str, Any],
    *,
    connections: dict[str, ConnectionInfo] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    allowed_hosts: tuple[str, ...] = (),
) -> Attempt:
    def connection(name: str) -> ConnectionInfo:
        if name not in (connections or {}):
            raise TaskFailed(f"connection {name!r} not found in this tenant", retryable=False)
        return (connections or {})[name]

    ti = SimpleNamespace(run_id=1, task_id="call", try_number=1, tenant_id=1)
    return Attempt(
        attempt_id=1,
        ti=ti,
        task={"type": "http", "method": "GET", **task},
        context={"params": {"wanted": "done"}},
        sink=OutputSink(100_000),
        should_stop=should_stop,
        connection=connection,
        allowed_hosts=allowed_hosts,
    )


def log_of(a: Attempt) -> str:
    return a.sink.drain().decode()


def api(server: LocalServer, **extra: Any) -> ConnectionInfo:
    fields: dict[str, Any] = {
        "name": "api",
        "kind": "http",
        "host": "127.0.0.1",
        "port": server.port,
        "extra": {"scheme": "http"},
    }
    return ConnectionInfo(**{**fields, **extra})


# --- the http task -------------------------------------------------------------------------------


def test_it_returns_the_json_answer_as_result(server: LocalServer) -> None:
    a = attempt({"url": server.url("/json?state=ready&api_key=k3y")})
    outcome = run_http(a)
    assert outcome.state == "success"
    assert outcome.result["status"] == 200
    assert outcome.result["body"] == {"ok": True, "state": "ready"}
    assert outcome.result["headers"]["content-type"] == "application/json"
    log = log_of(a)
    assert f"GET http://127.0.0.1:{server.port}/json -> 200 (" in log
    assert "bytes, " in log
    assert " ms)" in log
    assert "k3y" not in log  # the query string is not logged


def test_it_keeps_a_text_answer_as_text(server: LocalServer) -> None:
    outcome = run_http(attempt({"url": server.url("/text")}))
    assert outcome.result["body"] == "plain words"


def test_it_sends_json_and_the_query(server: LocalServer) -> None:
    task = {
        "method": "POST",
        "url": server.url("/echo"),
        "query": {"day": "2026-01-02", "full": True, "n": 3},
        "json": {"rows": [1, 2]},
    }
    outcome = run_http(attempt(task))
    assert outcome.result["body"]["query"] == {"day": "2026-01-02", "full": "true", "n": "3"}
    seen = server.seen[0]
    assert json.loads(seen["body"]) == {"rows": [1, 2]}
    assert seen["headers"]["Content-Type"] == "application/json"


def test_it_joins_a_relative_url_to_the_connection_with_basic_auth(server: LocalServer) -> None:
    info = api(server, login="robot", password="pa55word", extra={"scheme": "http"})
    a = attempt({"url": "/json", "connection": "api"}, connections={"api": info})
    outcome = run_http(a)
    assert outcome.state == "success"
    assert server.seen[0]["path"] == "/json"
    expected = "Basic " + base64.b64encode(b"robot:pa55word").decode()
    assert server.seen[0]["headers"]["Authorization"] == expected
    log = log_of(a)
    assert "pa55word" not in log
    assert "Basic" not in log


def test_it_sends_a_bearer_token_and_the_connection_headers(server: LocalServer) -> None:
    info = ConnectionInfo(
        name="api",
        kind="http",
        host=f"http://127.0.0.1:{server.port}/base",
        password="t0ken",
        extra={"auth": "bearer", "headers": {"X-Team": "data"}},
    )
    task = {"url": "/echo", "connection": "api", "headers": {"X-Task": "1"}}
    run_http(attempt(task, connections={"api": info}))
    seen = server.seen[0]
    assert seen["path"] == "/base/echo"
    assert seen["headers"]["Authorization"] == "Bearer t0ken"
    assert (seen["headers"]["X-Team"], seen["headers"]["X-Task"]) == ("data", "1")


def test_it_refuses_a_connection_of_another_kind(server: LocalServer) -> None:
    info = ConnectionInfo(name="db", kind="postgres", host="127.0.0.1", password="x")
    with pytest.raises(TaskFailed) as caught:
        run_http(attempt({"url": "/json", "connection": "db"}, connections={"db": info}))
    assert "postgres connection" in str(caught.value)
    assert not caught.value.retryable


def test_it_does_not_send_connection_credentials_to_another_host(server: LocalServer) -> None:
    info = api(server, host="api.example.com", login="robot", password="pa55word")
    task = {"url": server.url("/json"), "connection": "api"}
    with pytest.raises(TaskFailed) as caught:
        run_http(attempt(task, connections={"api": info}))
    assert "not on connection 'api'" in str(caught.value)
    assert not caught.value.retryable
    assert server.seen == []


def test_it_fails_a_4xx_for_good(server: LocalServer) -> None:
    a = attempt({"url": server.url("/status/404")})
    outcome = run_http(a)
    assert (outcome.state, outcome.retryable) == ("failed", False)
    assert "HTTP 404" in outcome.error
    assert "expected 2xx" in outcome.error
    assert "status 404" in log_of(a)  # the start of the body, for the reader


def test_it_retries_a_5xx(server: LocalServer) -> None:
    task = {"url": server.url("/flaky")}
    first = run_http(attempt(task))
    assert (first.state, first.retryable) == ("failed", True)
    assert "HTTP 500" in first.error
    second = run_http(attempt(task))
    assert second.state == "success"
    assert second.result["body"] == {"n": 2}


def test_it_counts_expected_statuses_as_success(server: LocalServer) -> None:
    outcome = run_http(attempt({"url": server.url("/status/404"), "expected_status": [404]}))
    assert outcome.state == "success"
    assert outcome.result["body"] == {"error": "status 404"}
    failed = run_http(attempt({"url": server.url("/json"), "expected_status": [201]}))
    assert failed.state == "failed"
    assert "expected 201" in failed.error


def test_it_times_out_and_may_retry(server: LocalServer) -> None:
    started = time.monotonic()
    outcome = run_http(attempt({"url": server.url("/slow?seconds=3"), "request_timeout": "1s"}))
    assert (outcome.state, outcome.retryable) == ("failed", True)
    assert "timed out" in outcome.error
    assert time.monotonic() - started < 2.5


def test_it_uses_the_task_timeout_when_no_request_timeout(server: LocalServer) -> None:
    started = time.monotonic()
    outcome = run_http(attempt({"url": server.url("/slow?seconds=3"), "timeout": 1}))
    assert "timed out" in outcome.error
    assert time.monotonic() - started < 2.5


def test_it_stops_when_the_attempt_is_cancelled(server: LocalServer) -> None:
    started = time.monotonic()
    a = attempt(
        {"url": server.url("/slow?seconds=3")},
        should_stop=lambda: time.monotonic() - started > 0.3,
    )
    outcome = run_http(a)
    assert outcome.state == "failed"
    assert outcome.error.startswith("stopped")
    assert time.monotonic() - started < 1.5


@override_settings(TASK_RESULT_MAX_BYTES=2000)
def test_it_truncates_a_big_body_to_fit_the_result(server: LocalServer) -> None:
    a = attempt({"url": server.url("/huge")})
    outcome = run_http(a)
    assert outcome.state == "success"
    assert isinstance(outcome.result["body"], str)
    assert set(outcome.result["body"]) == {"x"}
    assert 1000 < len(json.dumps(outcome.result)) <= 2000
    assert "truncated" in log_of(a)


def test_it_refuses_a_blocked_address_for_good(server: LocalServer) -> None:
    with override_settings(HTTP_ALLOWED_HOSTS=[]), pytest.raises(TaskFailed) as caught:
        run_http(attempt({"url": server.url("/json")}))
    assert "loopback" in str(caught.value)
    assert not caught.value.retryable
    assert server.seen == []


def test_it_adds_the_tenant_policy_to_the_allowed_hosts(server: LocalServer) -> None:
    with override_settings(HTTP_ALLOWED_HOSTS=[]):
        outcome = run_http(attempt({"url": server.url("/json")}, allowed_hosts=("127.0.0.0/8",)))
    assert outcome.state == "success"


def test_it_follows_a_redirect_and_refuses_one_to_a_blocked_address(server: LocalServer) -> None:
    a = attempt({"url": server.url("/redirect?to=/json")})
    outcome = run_http(a)
    assert outcome.result["body"]["ok"] is True
    assert "1 redirects" in log_of(a)
    with pytest.raises(TaskFailed) as caught:
        run_http(attempt({"url": server.url("/redirect?to=http://169.254.169.254/")}))
    assert "cloud metadata" in str(caught.value)
    assert not caught.value.retryable


# --- the http sensor ---------------------------------------------------------------------------


def sensor(task: dict[str, Any], **kwargs: Any) -> Attempt:
    return attempt({"type": "wait_for", "kind": "http", **task}, **kwargs)


def test_it_is_done_when_the_status_is_expected(server: LocalServer) -> None:
    assert check_http(sensor({"url": server.url("/json")})) == (True, "HTTP 200")
    done, message = check_http(sensor({"url": server.url("/status/404")}))
    assert not done
    assert "HTTP 404 (waiting for 2xx)" in message
    done, _ = check_http(sensor({"url": server.url("/status/404"), "expected_status": [404]}))
    assert done


def test_it_is_done_when_until_holds(server: LocalServer) -> None:
    until = "response.status == 200 and response.json.state == params.wanted"
    done, message = check_http(sensor({"url": server.url("/json?state=done"), "until": until}))
    assert (done, message) == (True, "HTTP 200 and `until` holds")
    done, message = check_http(sensor({"url": server.url("/json?state=busy"), "until": until}))
    assert not done
    assert "`until` is false" in message
    text = "{{ 'plain' in response.text }}"
    assert check_http(sensor({"url": server.url("/text"), "until": text}))[0]


def test_it_waits_on_a_5xx_or_no_answer(server: LocalServer) -> None:
    done, message = check_http(sensor({"url": server.url("/status/503")}))
    assert not done
    assert "503" in message
    closed = LocalServer()
    port = closed.port
    closed.server_close()
    done, message = check_http(sensor({"url": f"http://127.0.0.1:{port}/"}))
    assert not done
    assert "could not connect" in message


def test_it_waits_while_until_reads_what_is_not_there_yet(server: LocalServer) -> None:
    task = {"url": server.url("/text"), "until": "response.json.state == 'done'"}
    done, message = check_http(sensor(task))
    assert not done
    assert "undefined" in message


def test_it_fails_a_sensor_on_a_bad_until_or_a_blocked_url(server: LocalServer) -> None:
    with pytest.raises(TaskFailed) as caught:
        check_http(sensor({"url": server.url("/json"), "until": "response.status =="}))
    assert "syntax error" in str(caught.value)
    assert not caught.value.retryable
    with override_settings(HTTP_ALLOWED_HOSTS=[]), pytest.raises(TaskFailed) as caught:
        check_http(sensor({"url": server.url("/json")}))
    assert "blocked" in str(caught.value)
    assert not caught.value.retryable


# --- the connection probe ----------------------------------------------------------------------


def test_it_probes_a_connection(server: LocalServer) -> None:
    info = api(server, login="robot", password="pa55word")
    ok, message = probe(info, [])
    assert ok
    assert message.startswith("HTTP 404 in ")
    assert message.endswith(" ms")
    assert server.seen[0]["method"] == "GET"
    assert server.seen[0]["path"] == "/"
    assert server.seen[0]["headers"]["Authorization"].startswith("Basic ")


def test_it_reports_a_failed_probe_without_secrets(server: LocalServer) -> None:
    broken = api(server, host=f"http://127.0.0.1:{server.port}/status/503", password="pa55word")
    ok, message = probe(broken, [])
    assert (ok, message.split(" in ")[0]) == (False, "HTTP 503")
    with override_settings(HTTP_ALLOWED_HOSTS=[]):
        ok, message = probe(api(server, password="pa55word"), [])
        assert not ok
        assert "loopback" in message
        assert "pa55word" not in message
        ok, _ = probe(api(server), ["127.0.0.1"])
        assert ok
    ok, message = probe(ConnectionInfo(name="db", kind="postgres", host="x"), [])
    assert not ok
    assert "kind http" in message
