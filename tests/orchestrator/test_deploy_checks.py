"""`manage.py check --deploy` warns when the platform's PostgreSQL or Redis lets in whoever
reaches it without the password (orchestrator.W004, orchestrator.W005): tasks share the
worker's network. Against real servers: the suite's own (trust, no password) and private
ones started here that demand a password. The shared servers are never reconfigured."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
import psycopg2
import pytest
import redis
from cryptography.fernet import Fernet
from django.core.checks import CheckMessage
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import ConnectionHandler
from django.test import override_settings

from orchestrator.checks import (
    broker_answers_without_password,
    check_platform_servers,
    database_trusts_this_host,
)
from tests.subprocesses import ROOT, free_port
from tests.workers import REDIS_URL

PG_HINT = (
    "Require passwords: scram-sha-256, not trust, in pg_hba.conf for the hosts of the web, "
    "worker and beat processes, and let only the platform's own processes reach PostgreSQL "
    "(firewall, private network). Shell and python tasks run on the workers and share the "
    "worker's network unless their tenant's policy task_network is none, so any task could "
    "connect as the platform."
)
REDIS_HINT = (
    "Require passwords: requirepass (or ACL users, none of them nopass) in the Redis "
    "configuration, the password in CELERY_BROKER_URL (redis://:PASSWORD@HOST:6379/0), and "
    "let only the platform's own processes reach Redis (firewall, private network). Shell and "
    "python tasks run on the workers and share the worker's network unless their tenant's "
    "policy task_network is none, so any task could connect as the platform."
)
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")
INITDB_OPTIONS = ("-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8")
POSTGRES_OPTIONS = ("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off")
# What the docs tell an operator to put in pg_hba.conf, with the test's own address.
PG_HBA = "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n"


def _database(url: str) -> BaseDatabaseWrapper:
    """A connection (not yet opened) configured from `url` the way settings.py does it."""
    return ConnectionHandler({"default": dj_database_url.parse(url)})["default"]


def _wait_until(ready: Any, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{what} exited with {process.returncode}"
        if ready():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not start in 30 s")


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    process.send_signal(sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def _redis_server(*args: str) -> Iterator[int]:
    """A Redis of this test's own on a free port, without persistence; its port."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", *NO_PERSISTENCE, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    try:
        _wait_until(accepts, process, "redis-server")
        yield port
    finally:
        _stop(process)


def _postgres_program(name: str) -> str | None:
    """Debian keeps the server's programs out of PATH, in /usr/lib/postgresql/<version>/bin."""
    installed = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return shutil.which(name) or next(iter(installed), None)


def _pings(port: int, username: str | None = None, password: str | None = None) -> bool:
    with redis.Redis(port=port, username=username, password=password) as client:
        return bool(client.ping())


@pytest.fixture
def scram_postgres() -> Iterator[tuple[int, str]]:
    """A PostgreSQL of this test's own on a free port whose pg_hba.conf demands a
    password (scram-sha-256) from everyone; its port and the password of `postgres`."""
    initdb, postgres = _postgres_program("initdb"), _postgres_program("postgres")
    if initdb is None or postgres is None:
        pytest.skip("the PostgreSQL server programs (initdb, postgres) are not installed")
    # initdb refuses to run as root: then the server runs as nobody.
    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:
        as_user = {"user": 65534, "group": 65534, "extra_groups": []}
    base = Path(tempfile.mkdtemp(prefix="orc-pg-"))
    password = secrets.token_hex(12)
    (base / "pw").write_text(password + "\n")
    if as_user:
        for path in (base, base / "pw"):
            os.chown(path, 65534, 65534)
    port = free_port()
    process: subprocess.Popen[bytes] | None = None
    try:
        data = str(base / "data")
        subprocess.run(
            [initdb, "-D", data, f"--pwfile={base / 'pw'}", *INITDB_OPTIONS],
            check=True,
            capture_output=True,
            timeout=60,
            **as_user,
        )
        (Path(data) / "pg_hba.conf").write_text(PG_HBA)
        process = subprocess.Popen(
            [postgres, "-D", data, "-p", str(port), "-k", str(base), *POSTGRES_OPTIONS],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **as_user,
        )

        def accepts_the_password() -> bool:
            try:
                psycopg2.connect(
                    host="127.0.0.1",
                    port=port,
                    user="postgres",
                    password=password,
                    dbname="postgres",
                    connect_timeout=2,
                ).close()
            except psycopg2.OperationalError:
                return False
            return True

        _wait_until(accepts_the_password, process, "postgres")
        yield port, password
    finally:
        if process is not None:
            _stop(process, signal.SIGINT)  # fast shutdown
        shutil.rmtree(base, ignore_errors=True)


def _ids(messages: list[CheckMessage]) -> list[str | None]:
    return [message.id for message in messages]


# --- PostgreSQL ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_warns_that_the_suites_servers_let_anyone_in() -> None:
    # The suite's PostgreSQL trusts 127.0.0.1 (a wrong password gets in), and its Redis
    # has no password.
    with override_settings(CELERY_BROKER_URL=REDIS_URL):
        messages = check_platform_servers(None)
    assert _ids(messages) == ["orchestrator.W004", "orchestrator.W005"]
    database, broker = messages
    db = connection.settings_dict
    assert database.msg == (
        f"PostgreSQL at {db['HOST']}:{db['PORT']} let user {db['USER']!r} in with a wrong "
        "password: it trusts this host, so anything running here can read and rewrite the "
        "platform's data without credentials."
    )
    assert database.hint == PG_HINT
    redis_url = urlsplit(REDIS_URL)
    assert broker.msg == (
        f"Redis at {redis_url.hostname}:{redis_url.port} (CELERY_BROKER_URL) answers without a "
        "password: anything that reaches it can read, delete and inject the platform's task "
        "messages."
    )
    assert broker.hint == REDIS_HINT


@pytest.mark.django_db
def test_it_warns_of_nothing_else_with_the_embedded_broker() -> None:
    with override_settings(CELERY_BROKER_URL="memory://"):
        assert _ids(check_platform_servers(None)) == ["orchestrator.W004"]


@pytest.mark.django_db
def test_it_warns_whatever_password_the_url_carries() -> None:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}:not-checked@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    assert database_trusts_this_host(_database(url)) is True


@pytest.mark.slow
def test_it_says_nothing_of_a_postgresql_that_demands_the_password(
    scram_postgres: tuple[int, str],
) -> None:
    port, password = scram_postgres
    # Reachable, and the platform's own password gets in (the fixture connected with it),
    # but the probe's wrong one does not, whether the URL carries a password or not.
    with_password = f"postgres://postgres:{password}@127.0.0.1:{port}/postgres"
    assert database_trusts_this_host(_database(with_password)) is False
    without = f"postgres://postgres@127.0.0.1:{port}/postgres"
    assert database_trusts_this_host(_database(without)) is False


def test_it_says_nothing_of_a_postgresql_it_cannot_reach() -> None:
    started = time.monotonic()
    unreachable = _database(f"postgres://postgres@127.0.0.1:{free_port()}/postgres")
    assert database_trusts_this_host(unreachable) is False
    assert time.monotonic() - started < 5


def test_it_has_nothing_to_check_on_sqlite(tmp_path: Path) -> None:
    assert database_trusts_this_host(_database(f"sqlite:///{tmp_path / 'db.sqlite3'}")) is False


# --- Redis -----------------------------------------------------------------------------------


def test_it_warns_of_a_redis_without_password_whatever_the_url_carries() -> None:
    assert broker_answers_without_password(REDIS_URL) == "without a password"
    anything = REDIS_URL.replace("redis://", "redis://:anything@", 1)
    assert broker_answers_without_password(anything) == "without a password"


@pytest.mark.slow
def test_it_says_nothing_of_a_redis_with_requirepass() -> None:
    with _redis_server("--requirepass", "x") as port:
        # Reachable, and the right password gets in...
        assert _pings(port, password="x")
        # ...but neither no password nor a wrong one does.
        assert broker_answers_without_password(f"redis://:x@127.0.0.1:{port}/0") is None
        assert broker_answers_without_password(f"redis://127.0.0.1:{port}/0") is None
        assert broker_answers_without_password(f"redis://:wrong@127.0.0.1:{port}/0") is None


@pytest.mark.slow
def test_it_warns_of_an_acl_user_that_takes_any_password() -> None:
    acl = ["--user", "default", "off", "--user", "orchestrator", "on"]
    grants = ["~*", "&*", "+@all"]
    with _redis_server(*acl, "nopass", *grants) as port:
        url = f"redis://orchestrator:secret@127.0.0.1:{port}/0"
        assert broker_answers_without_password(url) == (
            "with a wrong password for user 'orchestrator'"
        )
    with _redis_server(*acl, ">secret", *grants) as port:
        url = f"redis://orchestrator:secret@127.0.0.1:{port}/0"
        assert _pings(port, username="orchestrator", password="secret")
        assert broker_answers_without_password(url) is None


def test_it_says_nothing_of_a_redis_it_cannot_reach_nor_of_the_embedded_broker() -> None:
    started = time.monotonic()
    assert broker_answers_without_password(f"redis://127.0.0.1:{free_port()}/0") is None
    assert time.monotonic() - started < 5
    assert broker_answers_without_password("memory://") is None


# --- manage.py check --deploy ----------------------------------------------------------------


def _check_deploy(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`manage.py check --deploy` in a fresh shell's environment plus `env`."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **env},
    )


@pytest.mark.slow
@pytest.mark.django_db
def test_check_deploy_reports_the_trusting_database_and_the_open_broker(tmp_path: Path) -> None:
    db = connection.settings_dict
    result = _check_deploy(
        VAR_DIR=str(tmp_path),
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        CELERY_BROKER_URL=REDIS_URL,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output  # warnings only
    assert "?: (orchestrator.W004) PostgreSQL at" in output
    assert "?: (orchestrator.W005) Redis at" in output
    assert f"HINT: {PG_HINT}" in output
    assert f"HINT: {REDIS_HINT}" in output


@pytest.mark.slow
def test_check_deploy_passes_when_both_servers_demand_their_passwords(
    tmp_path: Path, scram_postgres: tuple[int, str]
) -> None:
    pg_port, pg_password = scram_postgres
    with _redis_server("--requirepass", "x") as redis_port:
        result = _check_deploy(
            "--fail-level",
            "WARNING",
            VAR_DIR=str(tmp_path),
            DEBUG="0",
            SECRET_KEY=secrets.token_urlsafe(50),
            ALLOWED_HOSTS="orchestrator.example.com",
            SECURE_SSL_REDIRECT="1",
            SECURE_HSTS_SECONDS="31536000",
            SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
            SECURE_HSTS_PRELOAD="1",
            DATABASE_URL=f"postgres://postgres:{pg_password}@127.0.0.1:{pg_port}/postgres",
            CELERY_BROKER_URL=f"redis://:x@127.0.0.1:{redis_port}/0",
            ENCRYPTION_KEYS=Fernet.generate_key().decode(),
            AUDIT_HMAC_KEY=secrets.token_urlsafe(50),
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
