"""The hand-written SQL is contained (orchestrator/fastsql.py): every statement is declared
where it lives, listed in the module's docstring, and pinned here; a read of tenant-owned
rows cannot be built without its tenants."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from orchestrator import fastsql

PINNED = {
    "token_by_prefix": "orchestrator.authentication._read_token",
    "audit_chain_head": "orchestrator.audit._lock_head",
    "audit_append": "orchestrator.audit._append",
    "workflow_by_name": "workflows.selectors.get_workflow",
    "run_by_id": "runs.selectors._read_run",
    "task_state_counts": "runs.selectors.task_summary",
    "run_insert": "runs.engine.creation._insert_run",
    "run_admission": "runs.engine.admission.room_for_new_run",
    "downstream_countdown": "runs.engine.progress.downstream_pending",
    "queue_ready": "runs.engine.progress._queue",
    "claim_tries": "runs.engine.claim.claim_many",
    "resend_queued": "runs.engine.repair._resend",
    "lock_run": "runs.engine.progress.lock_run",
    "finish_try": "runs.engine.finish.record_end",
}


def test_it_declares_exactly_the_pinned_statements() -> None:
    # Django's setup imported every module of the product: all declarations have run.
    assert fastsql.STATEMENTS == PINNED


def test_it_lists_every_statement_in_its_docstring() -> None:
    listed = re.findall(r"^- ([a-z_]+(?:, [a-z_]+)*):", fastsql.__doc__ or "", re.M)
    names = {name for line in listed for name in line.split(", ")}
    assert names == set(PINNED)


def test_it_refuses_a_tenant_scoped_statement_without_tenants() -> None:
    with pytest.raises(ValueError, match="at least one tenant"):
        fastsql.in_tenants("r", 0)


@pytest.mark.django_db
def test_it_filters_on_every_tenant_given() -> None:
    condition = fastsql.in_tenants("r", 3)
    assert condition.endswith("IN (%s, %s, %s)")
    assert "tenant_id" in condition


# --- prepared statements ------------------------------------------------------------------

NUMBERS = "SELECT n * %s FROM generate_series(1, %s) AS n ORDER BY n"


def _run(sql: str, params: list[Any]) -> tuple[list[Any], list[str]]:
    with CaptureQueriesContext(connection) as captured, connection.cursor() as cursor:
        fastsql.run(cursor, sql, params)
        rows = cursor.fetchall()
    return rows, [q["sql"].split()[0] for q in captured.captured_queries]


@pytest.fixture
def postgres(transactional_db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    connection.close()  # a session of its own: nothing prepared in it yet


def test_a_statement_is_prepared_once_per_connection(postgres: None) -> None:
    first, sent = _run(NUMBERS, [10, 3])
    assert first == [(10,), (20,), (30,)]
    assert sent == ["PREPARE", "EXECUTE"]
    again, sent = _run(NUMBERS, [2, 2])
    assert again == [(2,), (4,)]
    assert sent == ["EXECUTE"]
    connection.close()  # a new session prepares it anew
    _, sent = _run(NUMBERS, [1, 1])
    assert sent == ["PREPARE", "EXECUTE"]


def test_a_captured_execute_reads_as_its_statement(postgres: None) -> None:
    with CaptureQueriesContext(connection) as captured, connection.cursor() as cursor:
        fastsql.run(cursor, NUMBERS, [1, 1])
    prepare, execute = (q["sql"] for q in captured.captured_queries)
    assert fastsql.readable(prepare) == ""
    assert fastsql.readable(execute) == NUMBERS
    assert fastsql.readable("SELECT 1") == "SELECT 1"


def test_off_the_statement_runs_as_is(postgres: None, settings: Any) -> None:
    settings.DATABASE_PREPARED_STATEMENTS = False
    rows, sent = _run(NUMBERS, [5, 1])
    assert rows == [(5,)]
    assert sent == ["SELECT"]


def test_past_the_cap_texts_run_unprepared(postgres: None, monkeypatch: Any) -> None:
    monkeypatch.setattr(fastsql, "PREPARED_PER_CONNECTION", 1)
    _, sent = _run(NUMBERS, [1, 1])
    assert sent == ["PREPARE", "EXECUTE"]
    rows, sent = _run(NUMBERS + " LIMIT 1", [7, 3])
    assert (rows, sent) == ([(7,)], ["SELECT"])
    _, sent = _run(NUMBERS, [1, 1])  # the first is still prepared
    assert sent == ["EXECUTE"]


def test_a_session_that_lost_its_statements_prepares_them_again(postgres: None) -> None:
    _run(NUMBERS, [1, 1])
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # as DISCARD ALL or a pooler would
    rows, sent = _run(NUMBERS, [3, 1])  # outside a transaction: at once
    assert rows == [(3,)]
    assert sent == ["EXECUTE", "PREPARE", "EXECUTE"]
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    with pytest.raises(DatabaseError), transaction.atomic():  # inside one: it failed
        _run(NUMBERS, [3, 1])
    rows, sent = _run(NUMBERS, [4, 1])  # the next one prepares it again
    assert rows == [(4,)]
    assert sent == ["PREPARE", "EXECUTE"]


def test_a_text_with_a_percent_sign_of_its_own_is_refused(postgres: None) -> None:
    with connection.cursor() as cursor, pytest.raises(ValueError, match="no %"):
        fastsql.run(cursor, "SELECT 'a%%' || %s", ["b"])
