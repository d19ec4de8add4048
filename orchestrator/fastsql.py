"""Hand-written SQL, only where the bench shows it pays: the reads and inserts on the API's
hot paths and the engine's compare-and-set statements.

Building a query through the ORM costs about 0.2 ms of CPU per statement, more with
joins and subqueries, most of it compiling the same SQL again on every request; a
statement written once costs a fifth of that (docs/performance.md). `Columns` selects a
model's concrete fields under a table alias and turns them back into an instance exactly
as the ORM would: the same field order, the backend's and the fields' converters (JSON,
SQLite's dates), `Model.from_db`. Related instances read by a join are attached with
`attach`, like `select_related` does, so the code after the read cannot tell the
difference. Everything else stays on the ORM.

Every hand-written statement is declared with `@statement(name)` on the function that
builds or runs it, and a read of tenant-owned rows takes its tenant filter from
`in_tenants`, which refuses to build one without tenants. The statements (pinned by a
test; a new one is added here and there, with the bench figure that pays for it):

- token_by_prefix: the API token, its user, tenant and role (every API call). Crosses
  tenants by design: the token is what names the tenant.
- audit_chain_head, audit_append: lock the tenant's audit chain head, append an event.
- workflow_by_name: a live workflow with its version and tenant (tenant-scoped).
- run_by_id: a run with its workflow, version, user and task counts (tenant-scoped).
- task_state_counts: a run's task instances per state (tenant-scoped).
- run_insert: a new run (every trigger).
- run_admission: the tenant and workflow locks and the room for a new run.
- downstream_countdown: finished upstreams counted off their downstream instances.
- queue_ready: the free task slots of a run filled, highest priority first.
- claim_tries: queued tries taken by a worker.
- resend_queued: queued tries whose message was lost, stamped for re-sending.
- lock_run: a run locked for its state change, with its tenant (every task step).
- finish_try: an attempt's end and its instance's new state (every task step).

The engine's statements on a task's path go through `run`, which on PostgreSQL makes each
distinct text a server-side prepared statement of the connection: parsed and planned once,
not on every step (about 1 ms of a chain step's 7 on the 2-core machine).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection, models

__all__ = [
    "STATEMENTS",
    "Columns",
    "Insert",
    "attach",
    "execute_in_one_trip",
    "in_tenants",
    "quote",
    "readable",
    "run",
    "statement",
]

_M = TypeVar("_M", bound=models.Model)
_F = TypeVar("_F", bound=Callable[..., Any])

# name -> the function that builds or runs it (module.qualname)
STATEMENTS: dict[str, str] = {}


def statement(name: str) -> Callable[[_F], _F]:
    """Declare the decorated function as where the hand-written statement `name` lives."""

    def declare(function: _F) -> _F:
        if name in STATEMENTS:
            raise ValueError(f"statement {name!r} is declared twice")
        STATEMENTS[name] = f"{function.__module__}.{function.__qualname__}"
        return function

    return declare


def in_tenants(alias: str, count: int) -> str:
    """The condition that keeps a read of tenant-owned rows inside the caller's `count`
    tenants: `alias.tenant_id IN (%s, ...)`, one parameter per tenant. Refuses to build a
    statement for no tenant at all (the caller answers "not found" without a query)."""
    if count < 1:
        raise ValueError("a tenant-scoped statement needs at least one tenant to filter on")
    return f"{quote(alias)}.{quote('tenant_id')} IN ({', '.join(['%s'] * count)})"


Converter = Callable[[Any, Any, Any], Any]


def quote(name: str) -> str:
    return str(connection.ops.quote_name(name))


class Columns(Generic[_M]):
    """A model's concrete columns (all, or `only` those attnames, the primary key always)
    as they appear in a SELECT list, and the instance built from their values."""

    def __init__(self, model: type[_M], only: Sequence[str] | None = None) -> None:
        fields = [
            f
            for f in model._meta.concrete_fields
            if only is None or f.attname in only or f.primary_key
        ]
        self.model = model
        self.fields = fields
        self.attnames = [f.attname for f in fields]
        self.table = quote(model._meta.db_table)
        self._converters: dict[str, list[tuple[int, list[Converter], Any]]] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def select(self, alias: str) -> str:
        """`alias.col, ...` in the model's field order."""
        return ", ".join(f"{quote(alias)}.{quote(str(f.column))}" for f in self.fields)

    def build(self, row: Sequence[Any], start: int = 0) -> _M:
        """The instance from row[start : start + len(self)]."""
        values = list(row[start : start + len(self.fields)])
        for index, converters, expression in self._converters_for_connection():
            value = values[index]
            for convert in converters:
                value = convert(value, expression, connection)
            values[index] = value
        return self.model.from_db(connection.alias, self.attnames, values)

    def build_or_none(self, row: Sequence[Any], start: int = 0) -> _M | None:
        """As `build`, None for the NULLs of an outer join that found nothing."""
        return None if row[start] is None else self.build(row, start)

    def _converters_for_connection(self) -> list[tuple[int, list[Converter], Any]]:
        # What the compiler applies to these columns (SQLCompiler.get_converters), worked
        # out once per database backend.
        vendor = connection.vendor
        if vendor not in self._converters:
            found = []
            for index, field in enumerate(self.fields):
                col = field.get_col(self.model._meta.db_table)
                converters = connection.ops.get_db_converters(col) + col.get_db_converters(
                    connection
                )
                if converters:
                    found.append((index, converters, col))
            self._converters[vendor] = found
        return self._converters[vendor]


def attach(instance: models.Model, relation: str, related: models.Model | None) -> None:
    """Cache `related` as `instance.<relation>`, as select_related would (no query later)."""
    instance._meta.get_field(relation).set_cached_value(instance, related)  # type: ignore[union-attr]


class Insert(Generic[_M]):
    """`INSERT ... RETURNING id` of one instance, written once per model: what
    `instance.save()` sends for a new row (the fields' `pre_save` and conversions), for
    the few inserts on the API's hot paths. Plain fields only: no `db_default`, no
    database-generated or returned columns besides the id."""

    def __init__(self, model: type[_M]) -> None:
        self.fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        self.table = model._meta.db_table

    @functools.cached_property
    def sql(self) -> str:
        columns = ", ".join(quote(str(f.column)) for f in self.fields)
        marks = ", ".join(["%s"] * len(self.fields))
        return (
            f"INSERT INTO {quote(self.table)} ({columns}) VALUES ({marks}) RETURNING {quote('id')}"  # noqa: S608
        )

    def values(self, instance: _M) -> list[Any]:
        return [f.get_db_prep_save(f.pre_save(instance, add=True), connection) for f in self.fields]

    @staticmethod
    def saved(instance: _M, pk: Any) -> None:
        """Mark the instance as saved with its new id, as `save()` leaves it."""
        instance.pk = pk
        instance._state.adding, instance._state.db = False, connection.alias


def execute_in_one_trip(cursor: Any, statements: list[tuple[str, list[Any]]]) -> None:
    """Run the statements in order, the cursor left on the last one's result. With
    psycopg2 they travel as one query string (one round trip; PostgreSQL still gives each
    statement its own snapshot under READ COMMITTED). psycopg 3 would leave the cursor
    on the first result, and SQLite runs one statement per call: there, one call each."""
    if _psycopg2():
        cursor.execute(
            "; ".join(sql for sql, _ in statements), [p for _, ps in statements for p in ps]
        )
        return
    for sql, params in statements:
        cursor.execute(sql, params)


# --- prepared statements (PostgreSQL) -------------------------------------------------------

# At most this many per connection: a statement whose text varies with its input (an IN list
# as long as a batch) is prepared for the first lengths met, and runs unprepared beyond.
PREPARED_PER_CONNECTION = 200
_UNDEFINED_PREPARED_STATEMENT = "26000"
# The driver's connection -> {statement text: its prepared name}. Weak: a closed
# connection's statements die with its server session.
_prepared: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()


def run(cursor: Any, sql: str, params: Sequence[Any]) -> None:
    """Execute a hand-written statement (placeholders `%s`, no other `%`). On PostgreSQL
    with psycopg2 (and DATABASE_PREPARED_STATEMENTS on), its text is prepared once per
    connection (`PREPARE`, parameter types inferred from where they appear) and then run
    with `EXECUTE`: the parse and the plan (0.1-0.4 ms each for the engine's statements)
    are not paid on every task step. Elsewhere, and beyond PREPARED_PER_CONNECTION texts,
    it runs as is."""
    name = _prepared_name(cursor, sql)
    if name is None:
        cursor.execute(sql, params)
        return
    try:
        cursor.execute(f"EXECUTE {name} ({', '.join(['%s'] * len(params))})", params)
    except DatabaseError as exc:
        if getattr(exc.__cause__, "pgcode", None) != _UNDEFINED_PREPARED_STATEMENT:
            raise
        # The session lost it (DISCARD ALL, a pooler between): forget them all. Outside a
        # transaction, prepare it again at once; inside one, the error aborted it.
        _prepared.pop(connection.connection, None)
        if connection.in_atomic_block:
            raise
        run(cursor, sql, params)


def readable(sql: str) -> str:
    """A captured statement as its text: `EXECUTE orc_N (...)` of this connection becomes
    the statement prepared under that name; `PREPARE ...` (once per connection and text)
    becomes ""; anything else is itself. For tests and debugging that read statements."""
    if sql.startswith("PREPARE "):
        return ""
    if not sql.startswith("EXECUTE "):
        return sql
    name = sql.split()[1]
    for text, known in _prepared.get(connection.connection, {}).items():
        if known == name:
            return text
    return sql


def _prepared_name(cursor: Any, sql: str) -> str | None:
    if not settings.DATABASE_PREPARED_STATEMENTS or not _psycopg2():
        return None
    raw = connection.connection  # connected: the cursor was made from it
    known = _prepared.get(raw)
    if known is None:
        known = _prepared[raw] = {}
    name = known.get(sql)
    if name is not None:
        return name
    if len(known) >= PREPARED_PER_CONNECTION:
        return None
    parts = sql.split("%s")
    if any("%" in part for part in parts):
        raise ValueError("a prepared statement's text holds no % but its placeholders")
    name = f"orc_{len(known)}"
    text = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
    cursor.execute(f"PREPARE {name} AS {text}")
    known[sql] = name
    return name


def _psycopg2() -> bool:
    driver = getattr(connection, "Database", None)
    return connection.vendor == "postgresql" and getattr(driver, "__name__", "") == "psycopg2"
