"""What the sql task's tests share across databases (PostgreSQL in test_sql_task.py,
MySQL in test_sql_task_mysql.py): an attempt of a sql task on one connection, a failure
read from it, the `people` table and the injection they try."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import override_settings

from connections.info import ConnectionInfo
from runs.tasktypes.contract import Attempt, TaskFailed
from runs.tasktypes.process import OutputSink
from runs.tasktypes.sql import run_sql

__all__ = [
    "INJECTION",
    "local_servers_allowed",
    "make_people",
    "sql_attempt",
    "sql_failure",
    "sql_spec",
]

INJECTION = "x'; DROP TABLE people; --"


@pytest.fixture(autouse=True)
def local_servers_allowed() -> Iterator[None]:
    """The test servers are on this machine: allowed the way an operator allows a private
    database host (the network guard's own tests take it back)."""
    with override_settings(SQL_ALLOWED_HOSTS=["127.0.0.1", "localhost"]):
        yield


def make_people(cur: Any, decimal: str) -> None:
    """(Re)create the `people` table with its two rows; `decimal`: the server's type."""
    cur.execute("DROP TABLE IF EXISTS people")
    cur.execute(f"CREATE TABLE people (id int, name text, born date, score {decimal})")
    cur.execute(
        "INSERT INTO people VALUES (1, 'ada', '1815-12-10', 12.50), (2, 'alan', NULL, NULL)"
    )


def sql_attempt(
    task: dict[str, Any],
    info: ConnectionInfo,
    should_stop: Callable[[], bool] = lambda: False,
    sql_allowed_hosts: tuple[str, ...] = (),
) -> Attempt:
    ti = SimpleNamespace(pk=1, run_id=1, task_id="q", try_number=1, tenant_id=1)

    def connection(name: str) -> ConnectionInfo:
        assert name == info.name
        return info

    return Attempt(
        1,
        ti,
        task,
        {},
        OutputSink(100_000),
        should_stop,
        connection,
        sql_allowed_hosts=sql_allowed_hosts,
    )


def sql_spec(sql: str, **kw: Any) -> dict[str, Any]:
    return {"type": "sql", "connection": "wh", "sql": sql, "parameters": {}, **kw}


def sql_failure(a: Attempt) -> TaskFailed:
    with pytest.raises(TaskFailed) as caught:
        run_sql(a)
    return caught.value
