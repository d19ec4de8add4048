"""Deployment checks (`manage.py check --deploy`): the platform's own keys, and whether its
database and broker demand a password from whoever reaches them. And the one refusal at
start-up: a web server, worker or beat with DEBUG off and the built-in SECRET_KEY."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import psycopg2
import redis
from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "broker_answers_without_password",
    "check_platform_keys",
    "check_platform_servers",
    "database_trusts_this_host",
    "require_secret_key",
]

# The probes' connection timeout: a server that does not answer in this time is left to the
# reachability checks (/readyz).
PROBE_TIMEOUT_SECONDS = 3

# Why a password-less database or broker matters even though tasks never get the platform's
# credentials: the sandbox does not take the network away from them.
TASKS_SHARE_THE_NETWORK = (
    "Shell and python tasks run on the workers and share the worker's network unless "
    "their tenant's policy task_network is none, so any task could connect as the platform."
)


DEVELOPMENT_KEY_REFUSAL = (
    "SECRET_KEY is not set, and DEBUG is off: this process would run on the built-in "
    "development key, which is public, and from which the encryption keys of secrets and the "
    "audit chain's key are derived. Set SECRET_KEY to a long random value kept secret, e.g. "
    'the output of: python -c "import secrets; print(secrets.token_urlsafe(50))" '
    "(and ENCRYPTION_KEYS and AUDIT_HMAC_KEY, see docs/deployment.md); or set DEBUG=1 on a "
    "development machine."
)


def require_secret_key() -> None:
    """Refuse to serve or work (web server, worker, beat) with DEBUG off on the built-in
    SECRET_KEY. Other commands (migrate, check --deploy, the test suite) still run."""
    if not settings.DEBUG and settings.SECRET_KEY == settings.INSECURE_DEV_SECRET_KEY:
        raise ImproperlyConfigured(DEVELOPMENT_KEY_REFUSAL)


@register(Tags.security, deploy=True)
def check_platform_keys(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not settings.ENCRYPTION_KEYS:
        messages.append(
            Warning(
                "ENCRYPTION_KEYS is not set: secret values are encrypted with a key derived "
                "from SECRET_KEY.",
                hint="Set ENCRYPTION_KEYS to one or more Fernet keys, newest first.",
                id="orchestrator.W001",
            )
        )
    if not settings.AUDIT_HMAC_KEY_FROM_ENV:
        messages.append(
            Warning(
                "AUDIT_HMAC_KEY is not set: the audit chain is keyed from SECRET_KEY, so "
                "rotating SECRET_KEY would break verification of the existing chain.",
                hint="Set AUDIT_HMAC_KEY to a long random value kept apart from database backups.",
                id="orchestrator.W002",
            )
        )
    if settings.EMBEDDED_BROKER:
        messages.append(
            Warning(
                "CELERY_BROKER_URL is not set: only the embedded mode (manage.py standalone) "
                "works.",
                hint="Set CELERY_BROKER_URL, e.g. redis://redis:6379/0.",
                id="orchestrator.W003",
            )
        )
    return messages


@register(Tags.security, deploy=True)
def check_platform_servers(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """The platform's database and broker let in whoever reaches them without the password."""
    messages: list[CheckMessage] = []
    db = connections["default"]
    if database_trusts_this_host(db):
        messages.append(_trusting_database(db.settings_dict))
    answer = broker_answers_without_password(settings.CELERY_BROKER_URL)
    if answer:
        messages.append(_open_broker(settings.CELERY_BROKER_URL, answer))
    return messages


def _trusting_database(db: dict[str, Any]) -> Warning:
    where = f"{db['HOST']}:{db['PORT'] or 5432}" if db["HOST"] else "the local socket"
    return Warning(
        f"PostgreSQL at {where} let user {db['USER']!r} in with a wrong password: it trusts "
        "this host, so anything running here can read and rewrite the platform's data "
        "without credentials.",
        hint="Require passwords: scram-sha-256, not trust, in pg_hba.conf for the hosts of the "
        "web, worker and beat processes, and let only the platform's own processes reach "
        f"PostgreSQL (firewall, private network). {TASKS_SHARE_THE_NETWORK}",
        id="orchestrator.W004",
    )


def _open_broker(url: str, answer: str) -> Warning:
    parts = urlsplit(url)
    return Warning(
        f"Redis at {parts.hostname}:{parts.port or 6379} (CELERY_BROKER_URL) answers {answer}: "
        "anything that reaches it can read, delete and inject the platform's task messages.",
        hint="Require passwords: requirepass (or ACL users, none of them nopass) in the Redis "
        "configuration, the password in CELERY_BROKER_URL (redis://:PASSWORD@HOST:6379/0), "
        "and let only the platform's own processes reach Redis (firewall, private network). "
        + TASKS_SHARE_THE_NETWORK,
        id="orchestrator.W005",
    )


def database_trusts_this_host(db: BaseDatabaseWrapper) -> bool:
    """True when PostgreSQL lets `db`'s user in with a wrong password (trust authentication
    for this host); False when it refuses, cannot be reached, or is not PostgreSQL.

    A wrong password covers a URL without one too: libpq sends a password only when the
    server asks for one, and given one it ignores PGPASSWORD and ~/.pgpass."""
    if db.vendor != "postgresql":
        return False
    params = db.get_connection_params()
    params.update(password=secrets.token_hex(16), connect_timeout=PROBE_TIMEOUT_SECONDS)
    try:
        psycopg2.connect(**params).close()
    except psycopg2.Error:
        return False
    return True


def broker_answers_without_password(url: str) -> str | None:
    """How a Redis broker answers a PING without the right password ("without a password",
    "with a wrong password for user 'x'"), or None: it refuses, cannot be reached, or the
    URL is no redis:// or rediss:// one (the embedded broker's memory://)."""
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"}:
        return None
    if _redis_answers(parts, username=None, password=None):
        return "without a password"
    if parts.username or parts.password:
        # An ACL user with `nopass` takes any password (a wrong one included).
        username = unquote(parts.username or "") or None
        if _redis_answers(parts, username=username, password=secrets.token_hex(16)):
            return f"with a wrong password for user {username or 'default'!r}"
    return None


def _redis_answers(parts: SplitResult, *, username: str | None, password: str | None) -> bool:
    tls: dict[str, Any] = {}
    if parts.scheme == "rediss":
        # Nothing secret is sent (no password, or a random one): no need to verify the server.
        tls = {"ssl": True, "ssl_cert_reqs": "none", "ssl_check_hostname": False}
    try:
        client = redis.Redis(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            username=username,
            password=password,
            socket_connect_timeout=PROBE_TIMEOUT_SECONDS,
            socket_timeout=PROBE_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),  # once: the check must not hang
            **tls,
        )
        with client:
            return bool(client.ping())
    except (redis.RedisError, ValueError):  # ValueError: a port that is no number
        return False
