"""The sql task, the sql sensor's check and the connection probe, against the local
PostgreSQL (a scratch database of their own, never the platform's) and sqlite files."""

from __future__ import annotations

import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from django.conf import settings
from django.db import connection as django_connection
from django.test import override_settings

from connections.info import ConnectionInfo
from runs.tasktypes import netguard
from runs.tasktypes.contract import TaskFailed
from runs.tasktypes.sql import check_sql, is_platform_database, probe, run_sql
from tests.runs.tasktypes.sql_helpers import (  # noqa: F401  (local_servers_allowed: a fixture)
    INJECTION,
    local_servers_allowed,
    make_people,
    sql_attempt,
    sql_failure,
    sql_spec,
)

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def _admin(dbname: str) -> Any:
    conn = psycopg2.connect(dbname=dbname, **PG)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def scratch() -> Iterator[str]:
    """A database of the tests' own: the test database is the platform's, never a target."""
    name = f"sqltask_{uuid.uuid4().hex[:10]}"
    admin = _admin("postgres")
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def people(scratch: str) -> Iterator[Any]:
    """A fresh `people` table in the scratch database; yields a cursor on it."""
    conn = _admin(scratch)
    cur = conn.cursor()
    make_people(cur, "numeric")
    yield cur
    conn.close()


def _pg(database: str, **kw: Any) -> ConnectionInfo:
    return ConnectionInfo(
        name="wh",
        kind="postgres",
        host=kw.pop("host", "127.0.0.1"),
        port=kw.pop("port", 5432),
        database=database,
        login="postgres",
        password=kw.pop("password", "hunter2"),
        **kw,
    )


# --- postgres ---------------------------------------------------------------------------


def test_it_returns_rows_as_json_safe_values(scratch: str) -> None:
    sql = (
        "SELECT 1::int AS n, 'a'::text AS t, DATE '2026-01-31' AS d, 12.50::numeric AS x, "
        "NULL AS z, 0.1000000000000000000001::numeric AS fine, '\\x0102'::bytea AS b, "
        "'{\"k\": [1, 2.5]}'::jsonb AS j"
    )
    a = sql_attempt(sql_spec(sql), _pg(scratch))
    outcome = run_sql(a)
    assert outcome.state == "success"
    assert outcome.result == {
        "columns": ["n", "t", "d", "x", "z", "fine", "b", "j"],
        "rows": [
            [1, "a", "2026-01-31", 12.5, None, "0.1000000000000000000001", "AQI=", {"k": [1, 2.5]}]
        ],
        "rowcount": 1,
        "truncated": False,
    }
    log = a.sink.drain().decode()
    assert f"postgres {scratch}@127.0.0.1:5432: 1 rows in " in log
    assert "hunter2" not in log


def test_it_caps_rows_at_max_rows(scratch: str) -> None:
    a = sql_attempt(sql_spec("SELECT generate_series(1, 10) AS i", max_rows=3), _pg(scratch))
    result = run_sql(a).result
    assert result == {"columns": ["i"], "rows": [[1], [2], [3]], "rowcount": 10, "truncated": True}
    assert "10 rows (first 3 kept)" in a.sink.drain().decode()


def test_it_returns_the_last_result_of_several_statements(scratch: str, people: Any) -> None:
    task = sql_spec("SELECT 1 AS a; INSERT INTO people (id) VALUES (7), (8)")
    assert run_sql(sql_attempt(task, _pg(scratch))).result == {"rowcount": 2}
    task = sql_spec(
        "INSERT INTO people (id) VALUES (9); SELECT id FROM people WHERE id > 6 ORDER BY id"
    )
    result = run_sql(sql_attempt(task, _pg(scratch))).result
    assert result["rows"] == [[7], [8], [9]]
    people.execute("SELECT count(*) FROM people WHERE id > 6")
    assert people.fetchone() == (3,)  # each statement ran once


def test_it_can_return_no_rows_but_the_count(scratch: str) -> None:
    task = sql_spec("SELECT generate_series(1, 5) AS i", max_rows=0)
    result = run_sql(sql_attempt(task, _pg(scratch))).result
    assert result == {"columns": ["i"], "rows": [], "rowcount": 5, "truncated": True}


def test_it_binds_parameters_and_never_interpolates_them(scratch: str, people: Any) -> None:
    insert = sql_spec(
        "INSERT INTO people (id, name) VALUES (%(id)s, %(name)s)",
        parameters={"id": 3, "name": INJECTION},
    )
    assert run_sql(sql_attempt(insert, _pg(scratch))).result == {"rowcount": 1}
    select = sql_spec("SELECT id, name FROM people WHERE name = %s", parameters=[INJECTION])
    assert run_sql(sql_attempt(select, _pg(scratch))).result["rows"] == [[3, INJECTION]]
    people.execute("SELECT count(*) FROM people")
    assert people.fetchone() == (3,)  # the table is still there, with every row


def test_it_times_out_a_long_statement(scratch: str) -> None:
    started = time.monotonic()
    failure = sql_failure(
        sql_attempt(sql_spec("SELECT pg_sleep(60)", statement_timeout="1s"), _pg(scratch))
    )
    assert time.monotonic() - started < 4
    assert str(failure) == f"postgres {scratch}@127.0.0.1:5432: statement timed out after 1s"
    assert failure.retryable


def test_it_uses_the_task_timeout_without_a_statement_timeout(scratch: str) -> None:
    failure = sql_failure(sql_attempt(sql_spec("SELECT pg_sleep(60)", timeout=1), _pg(scratch)))
    assert str(failure).endswith("statement timed out after 1s")


def test_it_refuses_writes_in_a_read_only_task(scratch: str, people: Any) -> None:
    task = sql_spec("INSERT INTO people (id) VALUES (9)", read_only=True)
    failure = sql_failure(sql_attempt(task, _pg(scratch)))
    assert "read-only transaction" in str(failure)
    assert not failure.retryable
    escape = sql_spec(
        "SET TRANSACTION READ WRITE; INSERT INTO people (id) VALUES (9)", read_only=True
    )
    assert "transaction read-write mode" in str(sql_failure(sql_attempt(escape, _pg(scratch))))
    people.execute("SELECT count(*) FROM people WHERE id = 9")
    assert people.fetchone() == (0,)


def test_it_commits_a_write(scratch: str, people: Any) -> None:
    task = sql_spec("UPDATE people SET score = score + 1 WHERE id = %(id)s", parameters={"id": 1})
    assert run_sql(sql_attempt(task, _pg(scratch))).result == {"rowcount": 1}
    people.execute("SELECT score FROM people WHERE id = 1")
    assert str(people.fetchone()[0]) == "13.50"


def test_it_fails_a_syntax_error_without_retries(scratch: str) -> None:
    failure = sql_failure(sql_attempt(sql_spec("SELEC 1"), _pg(scratch)))
    assert str(failure) == f'postgres {scratch}@127.0.0.1:5432: syntax error at or near "SELEC"'
    assert not failure.retryable


def test_it_retries_when_the_server_cannot_be_reached(scratch: str) -> None:
    failure = sql_failure(sql_attempt(sql_spec("SELECT 1"), _pg(scratch, port=1)))
    assert f"postgres {scratch}@127.0.0.1:1: cannot connect:" in str(failure)
    assert "refused" in str(failure)
    assert failure.retryable


def test_it_says_when_parameters_do_not_match(scratch: str) -> None:
    task = sql_spec("SELECT %(missing)s", parameters={"other": 1})
    failure = sql_failure(sql_attempt(task, _pg(scratch)))
    assert "the parameters do not match the SQL's placeholders" in str(failure)
    assert not failure.retryable


def _busy(database: str) -> int:
    """Our tasks' backends at work on the database, as the server sees them."""
    admin = _admin(database)
    try:
        cur = admin.cursor()
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'orchestrator-task'"
            " AND datname = current_database() AND state = 'active'"
        )
        return int(cur.fetchone()[0])
    finally:
        admin.close()


def test_it_stops_a_running_query_when_asked(scratch: str) -> None:
    started = time.monotonic()
    busy_when_stopped: list[int] = []

    def should_stop() -> bool:
        if time.monotonic() < started + 1:
            return False
        if not busy_when_stopped:
            busy_when_stopped.append(_busy(scratch))
        return True

    failure = sql_failure(sql_attempt(sql_spec("SELECT pg_sleep(60)"), _pg(scratch), should_stop))
    assert time.monotonic() - started < 3
    assert str(failure) == "stopped: the attempt was cancelled or lost its lease"
    assert busy_when_stopped == [1]
    for _ in range(20):  # the server ends the backend a moment after the client goes
        if _busy(scratch) == 0:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the query still runs on the server")


def test_it_refuses_a_connection_that_is_not_sql(scratch: str) -> None:
    info = ConnectionInfo(name="wh", kind="http", host="127.0.0.1")
    failure = sql_failure(sql_attempt(sql_spec("SELECT 1"), info))
    assert str(failure) == (
        "connection 'wh' is of kind 'http'; SQL needs a postgres, mysql or sqlite connection"
    )


@pytest.mark.parametrize(
    "host", ["10.0.0.1,127.0.0.1", "", "/var/run/postgresql"], ids=["list", "none", "socket"]
)
def test_it_refuses_hosts_that_are_not_one_network_host(scratch: str, host: str) -> None:
    failure = sql_failure(sql_attempt(sql_spec("SELECT 1"), _pg(scratch, host=host)))
    assert str(failure) == (
        "connection 'wh': needs a host (one host name or address; no unix socket, no list) "
        f"and a login; got host {host!r}"
    )
    assert not failure.retryable


def test_it_refuses_a_connection_string_as_database_name() -> None:
    info = _pg("dbname=postgres host=10.0.0.1")
    failure = sql_failure(sql_attempt(sql_spec("SELECT 1"), info))
    assert "database must be a plain name, not a connection string" in str(failure)


def test_it_names_the_mysql_driver_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyMySQL is a dependency, but a worker installed without it must say what to do."""
    for module in ("pymysql", "MySQLdb"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    info = ConnectionInfo(name="wh", kind="mysql", host="127.0.0.1", login="u", database="d")
    failure = sql_failure(sql_attempt(sql_spec("SELECT 1"), info))
    assert "install the PyMySQL package (pip install PyMySQL) or mysqlclient" in str(failure)
    assert not failure.retryable


# --- the platform's database -------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "", "/var/run/postgresql"])
def test_it_refuses_the_platform_database(host: str) -> None:
    platform = django_connection.settings_dict["NAME"]
    assert platform.startswith("test_")
    marker = f"sqltask_refused_{uuid.uuid4().hex[:8]}"
    info = _pg(platform, host=host)
    assert is_platform_database(info)
    failure = sql_failure(sql_attempt(sql_spec(f"CREATE TABLE {marker} (x int)"), info))
    assert "points at the platform's own database" in str(failure)
    assert not failure.retryable
    with django_connection.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", [marker])
        assert cur.fetchone() == (None,)  # nothing ran


@pytest.mark.django_db
def test_it_tells_the_platform_database_from_others(scratch: str) -> None:
    platform = django_connection.settings_dict["NAME"]
    assert not is_platform_database(_pg(scratch))
    assert not is_platform_database(_pg(platform, port=5433))
    assert not is_platform_database(_pg(platform, host="192.0.2.10"))
    assert is_platform_database(_pg(platform, host="0.0.0.0"))  # noqa: S104
    assert is_platform_database(_pg(platform, host="::ffff:127.0.0.1"))


# --- sqlite -----------------------------------------------------------------------------


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE people (id int, name text)")
    conn.executemany("INSERT INTO people VALUES (?, ?)", [(i, f"p{i}") for i in range(1, 6)])
    conn.execute("INSERT INTO people VALUES (6, ?)", (INJECTION,))
    conn.commit()
    conn.close()
    return path


def _lite(path: Path | str) -> ConnectionInfo:
    return ConnectionInfo(name="wh", kind="sqlite", database=str(path))


def _count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM people").fetchone()[0])
    finally:
        conn.close()


def test_it_reads_sqlite_rows_with_bound_parameters(sqlite_file: Path) -> None:
    named = sql_spec(
        "SELECT id, name FROM people WHERE name = :name", parameters={"name": INJECTION}
    )
    assert run_sql(sql_attempt(named, _lite(sqlite_file))).result == {
        "columns": ["id", "name"],
        "rows": [[6, INJECTION]],
        "rowcount": 1,
        "truncated": False,
    }
    listed = sql_spec("SELECT id FROM people WHERE id > ? ORDER BY id", parameters=[1], max_rows=2)
    result = run_sql(sql_attempt(listed, _lite(sqlite_file))).result
    assert result == {"columns": ["id"], "rows": [[2], [3]], "rowcount": 5, "truncated": True}


def test_it_commits_sqlite_writes_and_refuses_them_read_only(sqlite_file: Path) -> None:
    write = sql_spec("INSERT INTO people VALUES (?, ?)", parameters=[7, "g"])
    assert run_sql(sql_attempt(write, _lite(sqlite_file))).result == {"rowcount": 1}
    assert _count(sqlite_file) == 7
    failure = sql_failure(sql_attempt({**write, "read_only": True}, _lite(sqlite_file)))
    assert str(failure) == f"sqlite {sqlite_file}: attempt to write a readonly database"
    assert not failure.retryable
    assert _count(sqlite_file) == 7


def test_it_refuses_sqlite_attach(sqlite_file: Path, tmp_path: Path) -> None:
    task = sql_spec(f"ATTACH DATABASE '{tmp_path / 'other.db'}' AS other")
    failure = sql_failure(sql_attempt(task, _lite(sqlite_file)))
    assert "not authorized" in str(failure)
    assert not (tmp_path / "other.db").exists()


def test_it_times_out_a_long_sqlite_statement(sqlite_file: Path) -> None:
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    started = time.monotonic()
    failure = sql_failure(sql_attempt(sql_spec(endless, statement_timeout=1), _lite(sqlite_file)))
    assert time.monotonic() - started < 3
    assert str(failure) == f"sqlite {sqlite_file}: statement timed out after 1s"


def test_it_needs_an_existing_absolute_sqlite_path(tmp_path: Path) -> None:
    relative = sql_failure(sql_attempt(sql_spec("SELECT 1"), _lite("data.db")))
    assert "must be an absolute file path or :memory:" in str(relative)
    missing = sql_failure(sql_attempt(sql_spec("SELECT 1"), _lite(tmp_path / "missing.db")))
    assert "cannot open (mode=rw, the file must exist)" in str(missing)
    assert not (tmp_path / "missing.db").exists()
    memory = run_sql(sql_attempt(sql_spec("SELECT 2 AS two"), _lite(":memory:")))
    assert memory.result["rows"] == [[2]]


def test_it_refuses_the_platform_sqlite_file(
    sqlite_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_file}
    monkeypatch.setitem(settings.DATABASES, "platform_sqlite", entry)
    link = tmp_path / "link.db"
    link.symlink_to(sqlite_file)
    assert is_platform_database(_lite(link))
    failure = sql_failure(sql_attempt(sql_spec("DELETE FROM people"), _lite(sqlite_file)))
    assert "platform's own database" in str(failure)
    assert _count(sqlite_file) == 6


# --- the sensor's check and the probe ---------------------------------------------------


def _sensor(sql: str, **kw: Any) -> dict[str, Any]:
    return {
        "type": "wait_for",
        "kind": "sql",
        "connection": "wh",
        "sql": sql,
        "poke_interval": "5s",
        **kw,
    }


def test_it_checks_the_first_cell(scratch: str, people: Any) -> None:
    task = _sensor("SELECT count(*) FROM people WHERE id = %(id)s", parameters={"id": 4})
    assert check_sql(sql_attempt(task, _pg(scratch))) == (
        False,
        f"postgres {scratch}@127.0.0.1:5432: first cell is 0",
    )
    people.execute("INSERT INTO people (id) VALUES (4)")
    assert check_sql(sql_attempt(task, _pg(scratch))) == (
        True,
        f"postgres {scratch}@127.0.0.1:5432: first cell is 1",
    )
    none = _sensor("SELECT id FROM people WHERE id = 99")
    assert check_sql(sql_attempt(none, _pg(scratch)))[0] is False


def test_it_checks_read_only_and_fails_on_a_bad_query(scratch: str, people: Any) -> None:
    with pytest.raises(TaskFailed) as caught:
        check_sql(
            sql_attempt(_sensor("INSERT INTO people (id) VALUES (5) RETURNING 1"), _pg(scratch))
        )
    assert "read-only transaction" in str(caught.value)
    assert not caught.value.retryable
    done, message = check_sql(sql_attempt(_sensor("SELECT 1"), _pg(scratch, port=1)))
    assert done is False
    assert "cannot connect" in message


def test_it_probes_a_connection(scratch: str) -> None:
    reached, message = probe(_pg(scratch))
    assert reached
    assert message.startswith(f"connected to postgres {scratch}@127.0.0.1:5432 in ")
    assert message.endswith(" ms")
    reached, message = probe(_pg(scratch, port=1))
    assert not reached
    assert "refused" in message


def test_it_keeps_the_password_out_of_probe_messages(scratch: str) -> None:
    secret = f"sqltask_secret_{uuid.uuid4().hex[:6]}"
    reached, message = probe(_pg(secret, password=secret))  # the server echoes the name
    assert not reached
    assert secret not in message
    assert 'database "***" does not exist' in message


@pytest.mark.django_db
def test_it_refuses_the_platform_database_at_the_address_it_would_connect_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name that resolved elsewhere for the first look (or not at all) and to the
    platform's server for the guard's is refused by the address connected to."""
    platform = django_connection.settings_dict["NAME"]
    monkeypatch.setattr(netguard, "_getaddrinfo", lambda host, port: ["127.0.0.1"])
    failure = sql_failure(
        sql_attempt(sql_spec("SELECT 1"), _pg(platform, host="db.rebind.invalid"))
    )
    assert "points at the platform's own database" in str(failure)
    assert not failure.retryable


@pytest.mark.django_db
def test_it_probes_nothing_on_the_platform_database() -> None:
    reached, message = probe(_pg(django_connection.settings_dict["NAME"], host="localhost"))
    assert not reached
    assert "platform's own database" in message


# --- the network guard ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "is a loopback address (127.0.0.0/8)"),
        ("localhost", "is a loopback address (127.0.0.0/8)"),  # resolved, then checked
        ("10.0.0.5", "is a private address (10.0.0.0/8)"),
        ("2130706433", "is a loopback address (127.0.0.0/8)"),  # 127.0.0.1 as a number
        ("[::ffff:127.0.0.1]", "(127.0.0.1) is a loopback address (127.0.0.0/8)"),  # IPv4-mapped
    ],
)
@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_it_blocks_hosts_on_private_networks_without_connecting(
    host: str, reason: str, kind: str
) -> None:
    info = ConnectionInfo(
        name="wh", kind=kind, host=host, database="d", login="u", password="hunter2"
    )
    started = time.monotonic()
    with override_settings(SQL_ALLOWED_HOSTS=[]):
        failure = sql_failure(sql_attempt(sql_spec("SELECT 1"), info))
    assert time.monotonic() - started < 1  # decided, never tried (10.0.0.5 would hang)
    assert str(failure).startswith(f"blocked: {kind} d@{host}:")
    assert reason in str(failure)
    assert "SQL_ALLOWED_HOSTS" in str(failure)
    assert "sql_allowed_hosts" in str(failure)
    assert not failure.retryable


def test_it_blocks_cloud_metadata_even_inside_an_allowed_network() -> None:
    info = _pg("d", host="169.254.169.254")
    with override_settings(SQL_ALLOWED_HOSTS=["169.254.0.0/16"]):
        failure = sql_failure(sql_attempt(sql_spec("SELECT 1"), info))
    assert "cloud metadata endpoint" in str(failure)
    assert not failure.retryable


def test_a_tenant_policy_or_the_platform_setting_allows_a_private_host(scratch: str) -> None:
    with override_settings(SQL_ALLOWED_HOSTS=[]):
        assert "blocked" in str(sql_failure(sql_attempt(sql_spec("SELECT 1"), _pg(scratch))))
        by_policy = sql_attempt(
            sql_spec("SELECT 1 AS one"), _pg(scratch), sql_allowed_hosts=("127.0.0.0/8",)
        )
        assert run_sql(by_policy).result["rows"] == [[1]]
    with override_settings(SQL_ALLOWED_HOSTS=["127.0.0.1"]):
        assert run_sql(sql_attempt(sql_spec("SELECT 1 AS one"), _pg(scratch))).result["rows"] == [
            [1]
        ]


def test_the_probe_is_guarded_too(scratch: str) -> None:
    with override_settings(SQL_ALLOWED_HOSTS=[]):
        reached, message = probe(_pg(scratch))
        assert not reached
        assert message.startswith(
            f"blocked: postgres {scratch}@127.0.0.1:5432: 127.0.0.1 is a loopback"
        )
        reached, message = probe(_pg(scratch), ["127.0.0.1"])
        assert reached, message
