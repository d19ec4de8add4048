"""Rate limits (docs/api.md, "Rate limits"): per token (or signed-in user) and per tenant,
apart for triggers and reads, over REST and GraphQL; a 429 with Retry-After and a
problem+json body; nothing stored past a limit; another tenant's callers can neither spend
a tenant's budget nor feel its exhaustion. Counters in Redis, under a key prefix per test."""

from __future__ import annotations

import math
import secrets
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid
from runs.models import WorkflowRun
from tests.harness import Team, assert_problem, gql, make_team, send, set_policy
from tests.subprocesses import free_port
from tests.workers import REDIS_URL, Workers, wait_for
from workflows.services import apply_workflow

NOOP = {"name": "ping", "tasks": {"only": {"type": "noop"}}}
TRIGGER_RUN = """mutation($tenant: String!) {
  triggerRun(tenant: $tenant, workflow: "ping") { id }
}"""
RUNS_QUERY = "query($tenant: String!) { runs(tenant: $tenant) { id } }"


@pytest.fixture
def redis_cache(settings: Any) -> Iterator[str]:
    """The cache of the distributed mode: Redis, under a key prefix of this test's own."""
    prefix = f"orc-test-{uuid.uuid4().hex[:10]}:"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    }
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


def limits(triggers: dict[str, int] | None = None, reads: dict[str, int] | None = None) -> Any:
    return {"triggers": triggers or {}, "reads": reads or {}}


def longest_wait(limit: int) -> int:
    """The longest Retry-After of a limit: a minute full of `limit` requests still weighs on
    the next minute, whose first `60 / limit` seconds then have no room."""
    return 60 + math.ceil(60 / limit)


def ping(team: Team) -> str:
    """Apply a one-task workflow; its trigger URL."""
    with tenant_scope([team.tenant]):
        apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=NOOP)
    return f"/api/v1/tenants/{team.slug}/workflows/ping/runs/"


def stored_runs(team: Team) -> int:
    return WorkflowRun.objects.dangerously_unscoped().filter(tenant=team.tenant).count()


def test_triggers_past_the_token_limit_get_429_and_store_nothing(
    team: Team, redis_cache: str
) -> None:
    set_policy(team.tenant, rate_limits=limits(triggers={"per_token": 5}))
    url = ping(team)
    answers = [send(team.tokens["operator"], "POST", url, {}) for _ in range(8)]

    assert [a.status_code for a in answers] == [201] * 5 + [429] * 3
    body = assert_problem(answers[-1], 429)
    assert body["type"] == "urn:orchestrator:problem:throttled"
    assert body["detail"].startswith("rate limit of 5 trigger requests per minute per token")
    assert "retry after" in body["detail"]
    assert 1 <= int(answers[-1]["Retry-After"]) <= longest_wait(5)
    assert stored_runs(team) == 5


def test_reads_have_a_budget_of_their_own(team: Team, redis_cache: str) -> None:
    set_policy(team.tenant, rate_limits=limits(triggers={"per_token": 1}, reads={"per_token": 3}))
    url, token = ping(team), team.tokens["operator"]
    assert send(token, "POST", url, {}).status_code == 201
    assert send(token, "POST", url, {}).status_code == 429

    reads = [send(token, "GET", url).status_code for _ in range(4)]

    assert reads == [200, 200, 200, 429]
    assert "3 requests per minute per token" in send(token, "GET", url).json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "workflows/ping/runs/",
        "workflows/ping/backfills/",
        "runs/{run}/retry",
        "runs/{run}/tasks/only/clear",
        "backfills/1/resume",
    ],
)
def test_what_counts_as_a_trigger(team: Team, redis_cache: str, path: str) -> None:
    set_policy(team.tenant, rate_limits=limits(triggers={"per_token": 1}))
    run = send(team.tokens["operator"], "POST", ping(team), {}).json()["id"]
    url = f"/api/v1/tenants/{team.slug}/{path.format(run=run)}"

    assert_problem(send(team.tokens["operator"], "POST", url, {}), 429)


def test_stopping_work_stays_possible_past_the_trigger_limit(team: Team, redis_cache: str) -> None:
    set_policy(team.tenant, rate_limits=limits(triggers={"per_token": 1}))
    run = send(team.tokens["operator"], "POST", ping(team), {}).json()["id"]
    runs = f"/api/v1/tenants/{team.slug}/runs/{run}"

    for action in ("tasks/only/mark-success", "cancel"):
        assert send(team.tokens["operator"], "POST", f"{runs}/{action}", {}).status_code != 429


def test_an_unreachable_cache_lets_requests_through(team: Team, settings: Any) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }
    set_policy(team.tenant, rate_limits=limits(reads={"per_token": 1}))
    url = f"/api/v1/tenants/{team.slug}/runs/"

    assert [send(team.tokens["viewer"], "GET", url).status_code for _ in range(3)] == [200] * 3


def test_the_tenant_limit_counts_every_token_of_the_tenant(team: Team, redis_cache: str) -> None:
    set_policy(team.tenant, rate_limits=limits(triggers={"per_tenant": 3}))
    url = ping(team)
    statuses = [send(team.tokens[r], "POST", url, {}).status_code for r in ("operator", "admin")]
    statuses += [send(team.tokens["owner"], "POST", url, {}).status_code for _ in range(2)]

    assert statuses == [201, 201, 201, 429]
    refused = send(team.tokens["editor"], "POST", url, {})
    assert_problem(refused, 429)
    assert "per minute per tenant (acme)" in refused.json()["detail"]
    assert stored_runs(team) == 3


def test_other_tenants_callers_cannot_spend_a_tenants_budget(
    team: Team, outsider: Team, redis_cache: str
) -> None:
    set_policy(team.tenant, rate_limits=limits(reads={"per_tenant": 3}))
    url = f"/api/v1/tenants/{team.slug}/runs/"
    assert {send(outsider.tokens["owner"], "GET", url).status_code for _ in range(10)} == {404}

    statuses = [send(team.tokens["viewer"], "GET", url).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]


def test_another_tenant_reads_on_its_own_budget(
    team: Team, outsider: Team, redis_cache: str
) -> None:
    set_policy(team.tenant, rate_limits=limits(reads={"per_tenant": 2}))
    url = f"/api/v1/tenants/{team.slug}/runs/"
    while send(team.tokens["viewer"], "GET", url).status_code != 429:
        pass

    answer = send(outsider.tokens["owner"], "GET", f"/api/v1/tenants/{outsider.slug}/runs/")

    assert answer.status_code == 200


def test_a_signed_in_user_is_limited_per_user(team: Team, redis_cache: str, settings: Any) -> None:
    settings.RATE_LIMITS = {
        "triggers": {"per_token": 60, "per_tenant": 300},
        "reads": {"per_token": 2, "per_tenant": 6000},
    }
    browser = Client()
    browser.force_login(team.users["viewer"])

    statuses = [browser.get("/api/v1/me").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    assert "per minute per user" in browser.get("/api/v1/me").json()["detail"]


def test_waiting_retry_after_is_enough(team: Team, redis_cache: str, settings: Any) -> None:
    settings.RATE_LIMIT_WINDOW_SECONDS = 1
    set_policy(team.tenant, rate_limits=limits(reads={"per_token": 2}))
    url, token = f"/api/v1/tenants/{team.slug}/runs/", team.tokens["viewer"]
    while (refused := send(token, "GET", url)).status_code != 429:
        pass

    time.sleep(int(refused["Retry-After"]))

    assert send(token, "GET", url).status_code == 200


def test_zero_means_no_limit(team: Team, redis_cache: str) -> None:
    set_policy(team.tenant, rate_limits=limits(reads={"per_token": 0, "per_tenant": 0}))
    url = f"/api/v1/tenants/{team.slug}/runs/"

    assert {send(team.tokens["viewer"], "GET", url).status_code for _ in range(30)} == {200}


def test_the_embedded_mode_counts_in_memory(team: Team, settings: Any) -> None:
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    set_policy(team.tenant, rate_limits=limits(triggers={"per_token": 2}))
    url = ping(team)

    statuses = [send(team.tokens["operator"], "POST", url, {}).status_code for _ in range(3)]

    assert statuses == [201, 201, 429]


@pytest.mark.parametrize(
    ("policy", "path", "message"),
    [
        ("60", "policy.rate_limits", "requests per minute"),
        ({"writes": {}}, "policy.rate_limits.writes", "accepted: triggers, reads"),
        ({"reads": 5}, "policy.rate_limits.reads", "expected an object"),
        ({"reads": {"per_ip": 5}}, "policy.rate_limits.reads.per_ip", "per_token, per_tenant"),
        ({"triggers": {"per_token": -1}}, "policy.rate_limits.triggers.per_token", "0 or more"),
        ({"triggers": {"per_tenant": "9"}}, "policy.rate_limits.triggers.per_tenant", "integer"),
    ],
)
def test_the_policy_is_checked_with_field_paths(
    team: Team, policy: Any, path: str, message: str
) -> None:
    with pytest.raises(Invalid) as refused:
        set_policy(team.tenant, rate_limits=policy)

    [(where, what)] = refused.value.errors
    assert where == path
    assert message in what


def test_graphql_trigger_mutations_are_limited(team: Team, redis_cache: str) -> None:
    set_policy(team.tenant, rate_limits=limits(triggers={"per_token": 2}))
    ping(team)
    answers = [gql(team.tokens["operator"], TRIGGER_RUN, {"tenant": team.slug}) for _ in range(3)]

    assert [a.status_code for a in answers[:2]] == [200, 200]
    assert all(a.json()["data"]["triggerRun"]["id"] for a in answers[:2])
    refused = answers[2]
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= longest_wait(2)
    [error] = refused.json()["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfter"] == int(refused["Retry-After"])
    assert "2 trigger requests per minute per token" in error["message"]
    assert stored_runs(team) == 2
    # Queries draw on the reads budget.
    assert gql(team.tokens["operator"], RUNS_QUERY, {"tenant": team.slug}).status_code == 200


def test_graphql_tenant_budget_is_spent_only_by_its_callers(
    team: Team, outsider: Team, redis_cache: str
) -> None:
    set_policy(team.tenant, rate_limits=limits(reads={"per_tenant": 2}))
    for _ in range(5):
        stranger = gql(outsider.tokens["owner"], RUNS_QUERY, {"tenant": team.slug})
        assert stranger.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"

    answers = [gql(team.tokens["viewer"], RUNS_QUERY, {"tenant": team.slug}) for _ in range(3)]

    assert [a.json()["data"]["runs"] for a in answers[:2]] == [[], []]
    [error] = answers[2].json()["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert "per minute per tenant (acme)" in error["message"]
    assert int(answers[2]["Retry-After"]) == error["extensions"]["retryAfter"]


def test_rest_and_graphql_share_a_token_budget(team: Team, redis_cache: str) -> None:
    set_policy(team.tenant, rate_limits=limits(triggers={"per_token": 2}))
    url, token = ping(team), team.tokens["operator"]
    assert send(token, "POST", url, {}).status_code == 201
    assert gql(token, TRIGGER_RUN, {"tenant": team.slug}).status_code == 200

    assert send(token, "POST", url, {}).status_code == 429
    assert gql(token, TRIGGER_RUN, {"tenant": team.slug}).status_code == 429


# --- the probe of issue 19, against the distributed mode ------------------------------


def _request(method: str, url: str, token: str) -> int:
    data = b"{}" if method == "POST" else None
    request = urllib.request.Request(  # noqa: S310 (our own server on 127.0.0.1)
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return refused.code


@pytest.fixture
def web(transactional_db: None) -> Iterator[str]:
    """gunicorn with 2 worker processes on PostgreSQL and Redis (the counters shared there,
    under this test's key prefix, which `stop` deletes): its base URL."""
    port = free_port()
    pool = Workers(
        count=0,
        beat=False,
        env={
            "SECRET_KEY": secrets.token_urlsafe(50),
            "AUDIT_HMAC_KEY": django_settings.AUDIT_HMAC_KEY,
        },
    )
    base = f"http://127.0.0.1:{port}"
    pool.start_command(
        "web",
        f"gunicorn orchestrator.wsgi:application --bind 127.0.0.1:{port} --workers 2".split(),
    )
    try:
        wait_for(lambda: _healthy(base), 30, "gunicorn to answer", pool)
        yield base
    finally:
        pool.stop()


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except OSError:
        return False


@pytest.mark.slow
def test_150_rapid_triggers_from_one_token(web: str) -> None:
    team, other = make_team("acme", roles=["owner"]), make_team("globex", roles=["owner"])
    url, other_url = web + ping(team), f"{web}/api/v1/tenants/{other.slug}/runs/"
    limit = django_settings.RATE_LIMITS["triggers"]["per_token"]
    if time.time() % 60 > 45:  # the whole burst in one minute, so exactly `limit` pass
        time.sleep(61 - time.time() % 60)

    with ThreadPoolExecutor(max_workers=16) as pool:
        triggers = [pool.submit(_request, "POST", url, team.tokens["owner"]) for _ in range(150)]
        reads = [pool.submit(_request, "GET", other_url, other.tokens["owner"]) for _ in range(5)]
        statuses = [t.result() for t in triggers]

    assert statuses.count(201) == limit
    assert statuses.count(429) == 150 - limit
    assert stored_runs(team) == limit
    assert [r.result() for r in reads] == [200] * 5
