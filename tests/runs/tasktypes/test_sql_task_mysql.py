"""The sql task on MySQL's protocol, against the local MariaDB server (TEST_MYSQL_URL,
mysql://root@127.0.0.1:3306 by default): a scratch database and a login of the tests' own,
both dropped afterwards. MariaDB differs from MySQL where it matters here (its statement
timeout is max_statement_time), and the task handles both."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pymysql
import pytest

from connections.info import ConnectionInfo
from runs.tasktypes import sql as sql_task
from runs.tasktypes.sql import check_sql, probe, run_sql
from tests.runs.tasktypes.sql_helpers import (  # noqa: F401  (local_servers_allowed: a fixture)
    INJECTION,
    local_servers_allowed,
    make_people,
    sql_attempt,
    sql_failure,
    sql_spec,
)

SERVER = urlsplit(os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306"))
PASSWORD = "hunter2-" + uuid.uuid4().hex[:8]


def _admin(database: str | None = None) -> Any:
    return pymysql.connect(
        host=SERVER.hostname,
        port=SERVER.port or 3306,
        user=SERVER.username or "root",
        password=SERVER.password or "",
        database=database,
        autocommit=True,
    )


@pytest.fixture(scope="module")
def scratch() -> Iterator[tuple[str, str]]:
    """(database, login): a database and a login that may use only it."""
    name = f"sqltask_{uuid.uuid4().hex[:10]}"
    admin = _admin()
    cur = admin.cursor()
    cur.execute(f"CREATE DATABASE {name}")
    cur.execute(f"CREATE USER '{name}'@'%%' IDENTIFIED BY %s", (PASSWORD,))
    cur.execute(f"GRANT ALL ON {name}.* TO '{name}'@'%'")
    try:
        yield name, name
    finally:
        cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@pytest.fixture
def people(scratch: tuple[str, str]) -> Iterator[Any]:
    """A fresh `people` table in the scratch database; yields a cursor on it."""
    conn = _admin(scratch[0])
    cur = conn.cursor()
    make_people(cur, "decimal(6, 2)")
    yield cur
    conn.close()


def _my(scratch: tuple[str, str], **kw: Any) -> ConnectionInfo:
    database, login = scratch
    return ConnectionInfo(
        name="wh",
        kind="mysql",
        host=kw.pop("host", SERVER.hostname),
        port=kw.pop("port", SERVER.port or 3306),
        database=kw.pop("database", database),
        login=login,
        password=kw.pop("password", PASSWORD),
        **kw,
    )


def _label(scratch: tuple[str, str]) -> str:
    return f"mysql {scratch[0]}@{SERVER.hostname}:{SERVER.port or 3306}"


def test_it_returns_rows_as_json_safe_values(scratch: tuple[str, str]) -> None:
    sql = (
        "SELECT 1 AS n, 'a' AS t, DATE '2026-01-31' AS d, CAST(12.50 AS DECIMAL(6, 2)) AS x, "
        "NULL AS z, TIMESTAMP '2026-01-31 10:00:00' AS ts, x'0102' AS b"
    )
    a = sql_attempt(sql_spec(sql), _my(scratch))
    outcome = run_sql(a)
    assert outcome.state == "success"
    assert outcome.result == {
        "columns": ["n", "t", "d", "x", "z", "ts", "b"],
        "rows": [[1, "a", "2026-01-31", 12.5, None, "2026-01-31T10:00:00", "AQI="]],
        "rowcount": 1,
        "truncated": False,
    }
    log = a.sink.drain().decode()
    assert f"{_label(scratch)}: 1 rows in " in log
    assert PASSWORD not in log


def test_it_binds_parameters_and_never_interpolates_them(
    scratch: tuple[str, str], people: Any
) -> None:
    insert = sql_spec(
        "INSERT INTO people (id, name) VALUES (%(id)s, %(name)s)",
        parameters={"id": 3, "name": INJECTION},
    )
    assert run_sql(sql_attempt(insert, _my(scratch))).result == {"rowcount": 1}
    select = sql_spec(
        "SELECT id, name FROM people WHERE name = %(name)s", parameters={"name": INJECTION}
    )
    assert run_sql(sql_attempt(select, _my(scratch))).result["rows"] == [[3, INJECTION]]
    people.execute("SELECT count(*) FROM people")
    assert people.fetchone() == (3,)


def test_it_commits_a_write(scratch: tuple[str, str], people: Any) -> None:
    task = sql_spec("UPDATE people SET score = score + 1 WHERE id = %(id)s", parameters={"id": 1})
    assert run_sql(sql_attempt(task, _my(scratch))).result == {"rowcount": 1}
    people.execute("SELECT score FROM people WHERE id = 1")
    assert str(people.fetchone()[0]) == "13.50"


def test_it_refuses_writes_in_a_read_only_task(scratch: tuple[str, str], people: Any) -> None:
    task = sql_spec("INSERT INTO people (id) VALUES (9)", read_only=True)
    failure = sql_failure(sql_attempt(task, _my(scratch)))
    assert "READ ONLY transaction" in str(failure)
    assert not failure.retryable
    people.execute("SELECT count(*) FROM people WHERE id = 9")
    assert people.fetchone() == (0,)


def test_it_times_out_a_long_statement(scratch: tuple[str, str], people: Any) -> None:
    # A scan rather than SLEEP(), which a timeout ends by returning 1 instead of failing.
    slow = "SELECT count(*) FROM people a, people b, people c WHERE SLEEP(1) = 0"
    started = time.monotonic()
    failure = sql_failure(sql_attempt(sql_spec(slow, statement_timeout="1s"), _my(scratch)))
    assert time.monotonic() - started < 5
    assert str(failure) == f"{_label(scratch)}: statement timed out after 1s"
    assert failure.retryable


def _running(database: str) -> int:
    admin = _admin()
    try:
        cur = admin.cursor()
        cur.execute(
            "SELECT count(*) FROM information_schema.processlist "
            "WHERE db = %s AND command = 'Query' AND info LIKE 'SELECT SLEEP%%'",
            (database,),
        )
        return int(cur.fetchone()[0])
    finally:
        admin.close()


def test_it_stops_a_running_query_when_asked(scratch: tuple[str, str]) -> None:
    started = time.monotonic()
    running_when_stopped: list[int] = []

    def should_stop() -> bool:
        if time.monotonic() < started + 1:
            return False
        if not running_when_stopped:
            running_when_stopped.append(_running(scratch[0]))
        return True

    failure = sql_failure(sql_attempt(sql_spec("SELECT SLEEP(60)"), _my(scratch), should_stop))
    assert time.monotonic() - started < 4
    assert str(failure) == "stopped: the attempt was cancelled or lost its lease"
    assert running_when_stopped == [1]
    for _ in range(20):  # KILL QUERY ends it on the server
        if _running(scratch[0]) == 0:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the query still runs on the server")


def test_it_never_lets_the_server_read_the_workers_files(
    scratch: tuple[str, str], people: Any, tmp_path: Path
) -> None:
    """LOAD DATA LOCAL INFILE asks the client for a file of its own: the task's client does
    not offer them, so a rogue server (or SQL) can't read the worker's files."""
    secret = tmp_path / "secret.csv"
    secret.write_text("7,leaked\n")
    task = sql_spec(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE people FIELDS TERMINATED BY ','")
    failure = sql_failure(sql_attempt(task, _my(scratch)))
    assert not failure.retryable
    people.execute("SELECT count(*) FROM people WHERE id = 7")
    assert people.fetchone() == (0,)


def test_it_fails_a_syntax_error_without_retries(scratch: tuple[str, str]) -> None:
    failure = sql_failure(sql_attempt(sql_spec("SELEC 1"), _my(scratch)))
    assert str(failure).startswith(f"{_label(scratch)}: You have an error in your SQL syntax")
    assert not failure.retryable


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"password": "wrong-pw-123"}, "Access denied for user"),
        ({"database": "not_there"}, "Access denied for user"),
    ],
    ids=["password", "database"],
)
def test_it_fails_without_retries_when_the_login_is_refused(
    scratch: tuple[str, str], change: dict[str, str], expected: str
) -> None:
    failure = sql_failure(sql_attempt(sql_spec("SELECT 1"), _my(scratch, **change)))
    assert "cannot connect" in str(failure)
    assert expected in str(failure)
    assert "wrong-pw-123" not in str(failure)
    assert not failure.retryable


def test_it_retries_when_the_server_cannot_be_reached(scratch: tuple[str, str]) -> None:
    failure = sql_failure(sql_attempt(sql_spec("SELECT 1"), _my(scratch, port=1)))
    assert "cannot connect" in str(failure)
    assert failure.retryable


def test_it_checks_the_first_cell_for_a_sensor(scratch: tuple[str, str], people: Any) -> None:
    task = {
        "type": "sql",
        "connection": "wh",
        "sql": "SELECT count(*) FROM people",
        "parameters": {},
    }
    assert check_sql(sql_attempt(task, _my(scratch)))[0] is True
    people.execute("DELETE FROM people")
    assert check_sql(sql_attempt(task, _my(scratch)))[0] is False


def test_it_probes_a_connection(scratch: tuple[str, str]) -> None:
    ok, message = probe(_my(scratch))
    assert ok, message
    assert "MariaDB" in message or "mysql" in message.lower()
    ok, message = probe(_my(scratch, password="wrong"))
    assert not ok
    assert "Access denied" in message
    assert PASSWORD not in message


def test_the_driver_is_part_of_the_service() -> None:
    """PyMySQL is a dependency: mysql connections work without installing anything."""
    assert sql_task._mysql_driver() is pymysql
