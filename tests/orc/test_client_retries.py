"""orc.client against a real HTTP server on 127.0.0.1 that answers as scripted (fails the
first N requests, drops connections, sends Retry-After): what it repeats, what it never
repeats, the Idempotency-Key of triggers, problem+json errors and pagination."""

from __future__ import annotations

import time
import uuid

import pytest

from orc.client import ApiError, Client, ConnectionFailed
from tests.orc.support import Answer, ScriptedServer
from tests.subprocesses import free_port

RUN = {"id": 7, "workflow": "etl", "state": "queued"}
UNAVAILABLE = Answer(
    503, {"type": "x", "title": "Service Unavailable", "status": 503, "detail": "busy"}
)


def client(base: str, retries: int = 3) -> Client:
    return Client(base, "orc_test_token", "acme", retries=retries, backoff=0.01, timeout=5)


def test_it_repeats_a_read_the_server_could_not_answer() -> None:
    with ScriptedServer(
        [UNAVAILABLE, Answer(502, "<html>bad gateway</html>"), Answer(200, RUN)]
    ) as s:
        assert client(s.base).get_run(7) == RUN
    assert [(r.method, r.path) for r in s.seen] == [("GET", "/api/v1/tenants/acme/runs/7/")] * 3
    assert all(r.headers["Authorization"] == "Bearer orc_test_token" for r in s.seen)


def test_it_never_repeats_a_plain_post_the_server_may_have_done() -> None:
    with (
        ScriptedServer([UNAVAILABLE, Answer(200, RUN)]) as s,
        pytest.raises(ApiError) as raised,
    ):
        client(s.base).cancel_run(7)
    assert (raised.value.status, raised.value.detail) == (503, "busy")
    assert len(s.seen) == 1


def test_a_trigger_carries_one_idempotency_key_through_its_retries() -> None:
    with ScriptedServer([UNAVAILABLE, Answer(504, None), Answer(201, RUN)]) as s:
        assert client(s.base).trigger_run("etl", {"day": "2026-01-01"}) == RUN
    keys = {r.headers["Idempotency-Key"] for r in s.seen}
    assert len(s.seen) == 3
    assert len(keys) == 1
    uuid.UUID(keys.pop())  # generated: a fresh UUID
    assert s.seen[0].body == b'{"params":{"day":"2026-01-01"},"force":false}'


def test_a_trigger_sends_the_key_it_is_given() -> None:
    with ScriptedServer([Answer(201, RUN)]) as s:
        client(s.base).trigger_run("etl", idempotency_key="ci-build-1234")
    assert s.seen[0].headers["Idempotency-Key"] == "ci-build-1234"


def test_it_waits_as_long_as_retry_after_says_even_for_a_post() -> None:
    """A 429 did nothing of the request: any method is repeated, after Retry-After."""
    throttled = Answer(429, {"title": "Too Many Requests", "status": 429, "detail": "slow down"})
    with ScriptedServer([Answer(429, throttled.body, {"Retry-After": "1"}), Answer(200, RUN)]) as s:
        started = time.monotonic()
        assert client(s.base).cancel_run(7) == RUN
        elapsed = time.monotonic() - started
    assert len(s.seen) == 2
    assert elapsed >= 0.95


def test_it_does_not_wait_for_a_retry_after_beyond_its_patience() -> None:
    throttled = Answer(429, {"title": "Too Many Requests", "status": 429, "detail": "in an hour"})
    with (
        ScriptedServer([Answer(429, throttled.body, {"Retry-After": "3600"})]) as s,
        pytest.raises(ApiError) as raised,
    ):
        client(s.base).get_run(7)
    assert raised.value.status == 429
    assert len(s.seen) == 1


def test_it_gives_up_after_its_retries() -> None:
    with ScriptedServer([UNAVAILABLE]) as s, pytest.raises(ApiError) as raised:
        client(s.base, retries=2).get_run(7)
    assert raised.value.status == 503
    assert len(s.seen) == 3


def test_a_connection_that_fails_is_retried_for_any_method_then_reported() -> None:
    """Nothing reached a server that refused the connection: even a plain POST is tried
    again, and in the end the error names the server."""
    api = client(f"http://127.0.0.1:{free_port()}", retries=2)
    delays: list[float] = []
    api.sleep = delays.append
    with pytest.raises(
        ConnectionFailed, match=r"POST http://127\.0\.0\.1:\d+/api/v1/tenants/acme/runs/7/cancel/"
    ):
        api.cancel_run(7)
    assert len(delays) == 2


def test_a_connection_lost_mid_answer_is_retried_only_when_repeating_is_safe() -> None:
    with ScriptedServer([Answer(drop=True), Answer(200, RUN)]) as s:
        assert client(s.base).get_run(7) == RUN
    assert len(s.seen) == 2
    with (
        ScriptedServer([Answer(drop=True), Answer(200, RUN)]) as s,
        pytest.raises(ConnectionFailed),
    ):
        client(s.base).cancel_run(7)
    assert len(s.seen) == 1


def test_errors_carry_the_problem_and_its_field_paths() -> None:
    problem = {
        "type": "urn:orchestrator:problem:validation-error",
        "title": "Bad Request",
        "status": 400,
        "detail": "1 invalid field: params.region: not one of eu, us",
        "errors": [{"path": "params.region", "message": "not one of eu, us"}],
    }
    with ScriptedServer([Answer(400, problem)]) as s, pytest.raises(ApiError) as raised:
        client(s.base).trigger_run("etl", {"region": "mars"})
    error = raised.value
    assert (error.status, error.title, error.type) == (400, "Bad Request", problem["type"])
    assert error.errors == [{"path": "params.region", "message": "not one of eu, us"}]
    with (
        ScriptedServer([Answer(502, "<html>\n<h1>502 Bad Gateway</h1>")]) as s,
        pytest.raises(ApiError) as raised,
    ):
        client(s.base, retries=0).get_run(7)
    assert (raised.value.status, raised.value.title, raised.value.detail) == (
        502,
        "Bad Gateway",
        "<html>",
    )


def test_pages_follow_next_on_the_clients_own_base() -> None:
    """`next` links name the host the server saw; behind a proxy that is not ours."""
    first = {
        "results": [{"id": 3}, {"id": 2}],
        "next": "http://internal:8000/api/v1/tenants/acme/runs/?cursor=abc&limit=2",
    }
    with ScriptedServer(
        [Answer(200, first), Answer(200, {"results": [{"id": 1}], "next": None})]
    ) as s:
        runs = client(s.base).list_runs(workflow="etl")
    assert [r["id"] for r in runs] == [3, 2, 1]
    assert [r.path for r in s.seen] == [
        "/api/v1/tenants/acme/runs/?workflow=etl&limit=100",
        "/api/v1/tenants/acme/runs/?cursor=abc&limit=2",
    ]
