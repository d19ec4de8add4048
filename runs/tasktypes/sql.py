"""The `sql` task, the sql sensor's check and the connections API's probe: one statement
against a tenant's postgres, mysql or sqlite connection, with a statement timeout, rows
capped and made JSON-safe, parameters bound by the driver and never interpolated, and the
platform's own database refused whatever the connection says.

Placeholders are the driver's own; the SQL text is never rewritten:
- postgres and mysql: `%(name)s` with a dict of parameters, `%s` with a list (a literal
  `%` is written `%%` when there are parameters);
- sqlite: `:name` with a dict, `?` with a list.

`read_only` guards against mistakes (postgres: a READ ONLY transaction; mysql: START
TRANSACTION READ ONLY; sqlite: the file opened with mode=ro). Only sqlite's is a guarantee:
SQL that commits and changes the session can get round the others, so give a connection
that must never write a role that cannot."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import importlib
import ipaddress
import math
import os
import socket
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import psycopg2
from django.conf import settings
from django.db import connections

from connections.info import ConnectionInfo
from runs.tasktypes import netguard
from runs.tasktypes.contract import Attempt, Outcome, TaskFailed
from workflows.durations import parse_duration

__all__ = ["check_sql", "is_platform_database", "probe", "run_sql", "sqlite_refusal"]

DEFAULT_TIMEOUT = 300  # seconds, when neither statement_timeout nor the task's timeout is set
CONNECT_TIMEOUT = 10
PROBE_TIMEOUT = 5
SENSOR_TIMEOUT_CAP = 60
SERVER_GRACE = 2.0  # past the timeout, the server's own error should have come: cancel
CANCEL_GRACE = 5.0  # a driver that ignores a cancel this long is left to its thread
APPLICATION_NAME = "orchestrator-task"
NO_PASSFILE = "/nonexistent/orchestrator-no-pgpass"
DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}
PG_EXTRA = ("sslmode", "sslrootcert", "sslcert", "sslkey")  # the libpq options allowed
ENGINES = {"postgresql": "postgres", "postgis": "postgres", "mysql": "mysql", "sqlite3": "sqlite"}
LOCAL = "local"  # loopback, unspecified and unix-socket hosts: all this machine
# sqlite primary result codes worth another try: busy, locked, I/O, full, cannot open.
SQLITE_TRANSIENT = {5, 6, 10, 13, 14, 15}
# access, unknown database, read-only, and LOAD DATA LOCAL refused (MySQL 5, 8, MariaDB)
MYSQL_PERMANENT = {1044, 1045, 1049, 1142, 1227, 1792, 1148, 3948, 4166}
MYSQL_TIMEOUTS = {3024, 1969}  # MySQL max_execution_time, MariaDB max_statement_time
MYSQL_UNREACHABLE = 2003  # the client could not connect to the server
FALSY_CELLS = (None, False, 0, "", "0", "false", "f")
MAX_ADDRESSES = 2  # of a database host's, tried in turn (each within the connect timeout)
STOPPED = "stopped: the attempt was cancelled or lost its lease"
MAX_SYMLINKS = 40  # followed in one SQLite path, as Linux does; more is refused


# --- the platform's own database is never a target ----------------------------------------


def sqlite_refusal(info: ConnectionInfo, tenant_slug: str) -> str | None:
    """Why a tenant may not open this SQLite file, or None. With SQLITE_TASK_ROOT set, each
    tenant's files live under <root>/<tenant slug>/: a path outside it (another tenant's
    warehouse, any file the worker can read), or one that leaves it on the way (`..`, a
    symbolic link pointing out), is refused. The refusal is the same whether such a file
    exists or not, and nothing outside the tenant's directory is looked at to decide it."""
    root = settings.SQLITE_TASK_ROOT
    if info.kind != "sqlite" or not root or info.database == ":memory:":
        return None
    tenant_dir = Path(os.path.abspath(Path(root) / tenant_slug))
    if _stays_within(info.database, tenant_dir):
        return None
    return (
        f"connection {info.name!r}: SQLite files of this tenant must be under "
        f"{tenant_dir.resolve()}/ (platform setting SQLITE_TASK_ROOT)"
    )


def _stays_within(path: str, tenant_dir: Path) -> bool:
    """Whether `path` leads to an entry under `tenant_dir` at every step, following
    symbolic links as the kernel would. Only entries inside `tenant_dir` are looked at
    (lstat, readlink): a step out of it (a relative path, `..` above it, a link whose
    target is elsewhere) answers no before anything there is touched. A missing entry
    inside counts as inside: opening it will say that it is missing."""
    real_dir = tenant_dir.resolve()  # the platform's own directories, links allowed
    spellings = {tenant_dir.parts, real_dir.parts}
    remaining = _parts_below(path, spellings)
    if remaining is None:
        return False
    current, links = real_dir, 0
    while remaining:
        part = remaining.pop(0)
        if part == "..":
            if current == real_dir:
                return False
            current = current.parent
            continue
        candidate = current / part
        try:
            is_link = stat.S_ISLNK(os.lstat(candidate).st_mode)
        except OSError:
            is_link = False
        if not is_link:
            current = candidate
            continue
        links += 1
        if links > MAX_SYMLINKS:
            return False
        target = os.readlink(candidate)
        if os.path.isabs(target):
            below = _parts_below(target, spellings)
            if below is None:
                return False
            current, remaining = real_dir, below + remaining
        else:
            remaining = list(PurePosixPath(target).parts) + remaining
    return True


def _parts_below(path: str, spellings: set[tuple[str, ...]]) -> list[str] | None:
    """The components of an absolute `path` after the directory (spelt one of `spellings`)
    it starts with, or None when it starts elsewhere or is relative."""
    if not os.path.isabs(path):
        return None
    parts = PurePosixPath(path).parts
    for prefix in spellings:
        if parts[: len(prefix)] == prefix:
            return list(parts[len(prefix) :])
    return None


def is_platform_database(info: ConnectionInfo, addresses: set[str] | None = None) -> bool:
    """Whether the connection points at one of the platform's own databases (any entry
    of settings.DATABASES, or the database actually in use, e.g. the test database).
    `addresses`: where the task will connect (as `_addresses` names them), when known,
    instead of resolving the host again."""
    return any(_is_same(info, entry, addresses) for entry in _platform_entries())


def _platform_entries() -> Iterator[Mapping[str, Any]]:
    yield from settings.DATABASES.values()
    for alias in connections:
        yield connections[alias].settings_dict


def _is_same(
    info: ConnectionInfo, entry: Mapping[str, Any], addresses: set[str] | None = None
) -> bool:
    kind = ENGINES.get(str(entry.get("ENGINE") or "").rsplit(".", 1)[-1])
    if kind != info.kind or not entry.get("NAME"):
        return False
    if kind == "sqlite":
        return _same_file(info.database, str(entry["NAME"]))
    default = DEFAULT_PORTS[kind]
    return (
        _dbname(info) == str(entry["NAME"])
        and (info.port or default) == int(entry.get("PORT") or default)
        and bool(
            (_addresses(info.host) if addresses is None else addresses)
            & _addresses(str(entry.get("HOST") or ""))
        )
    )


def _dbname(info: ConnectionInfo) -> str:
    # libpq and MySQL default the database to the user's name.
    return info.database or (info.login if info.kind == "postgres" else "")


def _same_file(path: str, platform: str) -> bool:
    if path == ":memory:" or platform.startswith("file:") or platform == ":memory:":
        return False
    if os.path.realpath(path) == os.path.realpath(platform):
        return True
    with contextlib.suppress(OSError):
        return os.path.samefile(path, platform)  # a hard link
    return False


def _addresses(host: str) -> set[str]:
    """What a host name stands for: LOCAL for this machine, else its addresses and name."""
    name = host.strip().strip("[]").lower()
    if name in ("", "localhost") or name.startswith("/"):
        return {LOCAL}
    try:
        found = {ipaddress.ip_address(name)}
    except ValueError:
        try:
            found = {ipaddress.ip_address(i[4][0]) for i in socket.getaddrinfo(name, None)}
        except (OSError, ValueError):
            return {name}
    return {_address(ip) for ip in found} | {name}


def _address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return LOCAL if ip.is_loopback or ip.is_unspecified else str(ip)


def _refuse_platform(info: ConnectionInfo, addresses: set[str] | None = None) -> None:
    if is_platform_database(info, addresses):
        raise TaskFailed(
            f"connection {info.name!r} points at the platform's own database "
            f"({_label(info)}); tasks may not use it: give them a database of their own",
            retryable=False,
        )


# --- sessions: what differs between drivers ----------------------------------------------


@dataclass(frozen=True)
class Query:
    sql: str
    parameters: Any  # dict | list | None (no parameters: `%` stays literal)
    read_only: bool
    timeout: int  # seconds
    max_rows: int
    # The tenant's sql_allowed_hosts policy, added to the platform's SQL_ALLOWED_HOSTS.
    allowed_hosts: tuple[str, ...] = ()


@dataclass
class Session:
    """An open connection and its driver's ways."""

    label: str
    conn: Any
    begin: Callable[[Any], None]  # cursor -> sets read-only and the timeout
    cancel: Callable[[], None]  # from another thread
    is_timeout: Callable[[BaseException], bool]
    retryable: Callable[[BaseException], bool]
    errors: tuple[type[BaseException], ...]
    run: Callable[[Any, Query], dict[str, Any]] = field(default=lambda cur, q: _plain(cur, q))


def _label(info: ConnectionInfo) -> str:
    if info.kind == "sqlite":
        return f"sqlite {info.database}"
    port = info.port or DEFAULT_PORTS.get(info.kind, 0)
    return f"{info.kind} {_dbname(info)}@{info.host or 'localhost'}:{port}"


def _open(info: ConnectionInfo, q: Query) -> Session:
    opener = OPENERS.get(info.kind)
    if opener is None:
        raise TaskFailed(
            f"connection {info.name!r} is of kind {info.kind!r}; SQL needs a postgres, "
            "mysql or sqlite connection",
            retryable=False,
        )
    return opener(info, q)


def _check_server(info: ConnectionInfo) -> None:
    """A server connection names one network host and a login. A unix socket would log in
    as the worker's own OS user (peer authentication), a host list or a connection string
    in the database name would dodge the platform check."""
    host = info.host.strip()
    if not host or host.startswith("/") or "," in host or not info.login:
        raise TaskFailed(
            f"connection {info.name!r}: needs a host (one host name or address; no unix "
            f"socket, no list) and a login; got host {info.host!r}",
            retryable=False,
        )
    if "=" in info.database or "://" in info.database:
        raise TaskFailed(
            f"connection {info.name!r}: database must be a plain name, not a connection string",
            retryable=False,
        )


def _reachable(info: ConnectionInfo, q: Query) -> list[str]:
    """Where the server may be reached: the host resolved once and every address checked
    by the network guard (as the http task's), so a tenant reaches no private, loopback or
    metadata address unless an operator allowed it. Connect to these, not to the name."""
    allowed = [*settings.SQL_ALLOWED_HOSTS, *q.allowed_hosts]
    port = info.port or DEFAULT_PORTS[info.kind]
    try:
        checked = netguard.check_host(info.host, port, allowed)
    except netguard.Blocked as exc:
        raise TaskFailed(f"blocked: {_label(info)}: {exc}", retryable=False) from None
    except netguard.RequestFailed as exc:
        raise TaskFailed(f"{_label(info)}: cannot connect: {exc}") from None
    # The platform's database, again, by the very addresses connected to: the name might
    # have resolved elsewhere for the first look.
    _refuse_platform(info, {_address(a) for a in checked})
    return [str(a) for a in checked[:MAX_ADDRESSES]]


def _open_postgres(info: ConnectionInfo, q: Query) -> Session:
    _check_server(info)
    label = _label(info)
    addresses = _reachable(info, q)
    options = {k: str(info.extra[k]) for k in PG_EXTRA if info.extra.get(k)}
    try:
        # Every value given, even empty, and a password file that does not exist: libpq
        # must not fill gaps from the worker's PGHOST, PGDATABASE, PGPASSWORD, ~/.pgpass
        # (the platform's own, maybe). hostaddr: libpq connects to the checked addresses
        # (in turn) and keeps the name for TLS verification.
        conn = psycopg2.connect(
            host=",".join([info.host.strip()] * len(addresses)),
            hostaddr=",".join(addresses),
            port=info.port or DEFAULT_PORTS["postgres"],
            dbname=_dbname(info),
            user=info.login,
            password=info.password,
            passfile=NO_PASSFILE,
            connect_timeout=min(q.timeout, CONNECT_TIMEOUT),
            application_name=APPLICATION_NAME,
            **options,
        )
    except psycopg2.Error as exc:
        message = _first_line(exc, info)
        permanent = ("authentication failed", "does not exist", "no pg_hba.conf entry")
        retry = not any(p in message for p in permanent)
        raise TaskFailed(f"{label}: cannot connect: {message}", retryable=retry) from None
    conn.set_session(readonly=q.read_only, autocommit=False)

    def begin(cur: Any) -> None:
        # A query (not SET) so the transaction has begun: READ ONLY can no longer be
        # switched off by SET TRANSACTION READ WRITE in the task's SQL.
        cur.execute("SELECT set_config('statement_timeout', %s, true)", (f"{q.timeout}s",))

    def is_timeout(exc: BaseException) -> bool:
        return getattr(exc, "pgcode", None) == "57014" and "statement timeout" in str(exc)

    return Session(
        label,
        conn,
        begin,
        conn.cancel,
        is_timeout,
        lambda exc: isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError),
        (psycopg2.Error,),
        lambda cur, q: _streamed(conn, cur, q),
    )


def _streamed(conn: Any, cur: Any, q: Query) -> dict[str, Any]:
    """A query's rows through a server-side cursor: only max_rows of them cross the
    network, the rest are counted where they are (MOVE), so a huge result cannot exhaust
    the worker's memory. What cannot be a cursor (INSERT, SET, several statements) runs
    plainly instead, from a savepoint that undoes whatever the attempt did."""
    cur.execute("SAVEPOINT orchestrator_rows")
    named = conn.cursor(name="orchestrator_rows")
    try:
        named.execute(q.sql, *([q.parameters] if q.parameters else []))
        single = named.statusmessage == "DECLARE CURSOR"  # else more statements followed
    except psycopg2.ProgrammingError:
        single = False
    if not single:
        cur.execute("ROLLBACK TO SAVEPOINT orchestrator_rows")
        return _plain(cur, q)
    rows = named.fetchmany(q.max_rows) if q.max_rows else named.fetchmany(0)
    columns = [str(d[0]) for d in named.description]
    cur.execute('MOVE FORWARD ALL FROM "orchestrator_rows"')
    return _table(columns, rows, len(rows) + int(cur.statusmessage.split()[-1]))


def _open_sqlite(info: ConnectionInfo, q: Query) -> Session:
    path = info.database
    if path != ":memory:" and not os.path.isabs(path):
        raise TaskFailed(
            f"connection {info.name!r}: database {path!r} must be an absolute file path "
            "or :memory:",
            retryable=False,
        )
    mode = "ro" if q.read_only else "rw"  # rw: a misspelt path fails instead of creating
    target = path if path == ":memory:" else f"file:{quote(path)}?mode={mode}"
    try:
        conn = sqlite3.connect(
            target, uri=path != ":memory:", timeout=min(q.timeout, 30), check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise TaskFailed(
            f"sqlite {path}: cannot open (mode={mode}, the file must exist): {exc}",
            retryable=True,
        ) from None
    # ATTACH would reach any file of the worker's, the platform's database included.
    conn.set_authorizer(
        lambda action, *_: (
            sqlite3.SQLITE_DENY
            if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH)
            else sqlite3.SQLITE_OK
        )
    )
    state: dict[str, Any] = {"timed_out": False}

    def begin(cur: Any) -> None:
        deadline = time.monotonic() + q.timeout

        def past_deadline() -> int:
            state["timed_out"] = time.monotonic() >= deadline
            return int(state["timed_out"])

        conn.set_progress_handler(past_deadline, 1000)

    def retryable(exc: BaseException) -> bool:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        return isinstance(exc, sqlite3.OperationalError) and code in SQLITE_TRANSIENT

    return Session(
        f"sqlite {path}",
        conn,
        begin,
        conn.interrupt,
        lambda exc: bool(state["timed_out"]),
        retryable,
        (sqlite3.Error,),
    )


def _mysql_driver() -> Any:
    for name in ("pymysql", "MySQLdb"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    raise TaskFailed(
        "mysql connections need a MySQL driver on the workers, and none is installed: "
        "install the PyMySQL package (pip install PyMySQL) or mysqlclient",
        retryable=False,
    )


def _open_mysql(info: ConnectionInfo, q: Query) -> Session:
    _check_server(info)
    driver = _mysql_driver()
    label = _label(info)
    addresses = _reachable(info, q)  # checked by the guard; addresses, so TCP
    params = {
        "host": addresses[0],
        "port": info.port or DEFAULT_PORTS["mysql"],
        "user": info.login,
        "password": info.password,
        "database": info.database,
        "connect_timeout": min(q.timeout, CONNECT_TIMEOUT),
        "charset": "utf8mb4",
        # A rogue server must not read the worker's files (LOAD DATA LOCAL INFILE); both
        # PyMySQL and mysqlclient take this argument.
        "local_infile": False,
    }
    for index, address in enumerate(addresses):  # in turn, while one cannot be reached
        params["host"] = address
        try:
            conn = driver.connect(**params)
            break
        except driver.Error as exc:
            if _mysql_code(exc) == MYSQL_UNREACHABLE and index + 1 < len(addresses):
                continue
            raise TaskFailed(
                f"{label}: cannot connect: {_first_line(exc, info)}",
                retryable=_mysql_code(exc) not in MYSQL_PERMANENT,
            ) from None
    conn.autocommit(False)
    mariadb = "mariadb" in str(conn.get_server_info()).lower()

    def begin(cur: Any) -> None:
        # max_execution_time bounds SELECTs only; the watcher's KILL QUERY bounds the rest.
        if mariadb:
            cur.execute("SET SESSION max_statement_time = %s", (q.timeout,))
        else:
            cur.execute("SET SESSION max_execution_time = %s", (q.timeout * 1000,))
        if q.read_only:
            cur.execute("START TRANSACTION READ ONLY")

    def cancel() -> None:
        # MySQL cancels a query from another connection.
        killer = driver.connect(**{**params, "connect_timeout": PROBE_TIMEOUT})
        try:
            killer.cursor().execute(f"KILL QUERY {int(conn.thread_id())}")
        finally:
            killer.close()

    return Session(
        label,
        conn,
        begin,
        cancel,
        lambda exc: _mysql_code(exc) in MYSQL_TIMEOUTS,
        lambda exc: (
            isinstance(exc, driver.OperationalError | driver.InterfaceError)
            and _mysql_code(exc) not in MYSQL_PERMANENT
        ),
        (driver.Error,),
    )


def _mysql_code(exc: BaseException) -> Any:
    return exc.args[0] if exc.args else 0


OPENERS: dict[str, Callable[[ConnectionInfo, Query], Session]] = {
    "postgres": _open_postgres,
    "mysql": _open_mysql,
    "sqlite": _open_sqlite,
}


# --- running one query ---------------------------------------------------------------------


def _query(info: ConnectionInfo, q: Query, should_stop: Callable[[], bool]) -> dict[str, Any]:
    """The statement's result, or TaskFailed. It runs in a thread so that this one can
    cancel it when the attempt must stop, or when the server's own timeout did not fire."""
    _refuse_platform(info)
    session = _open(info, q)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = _execute(session, q)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=work, name=f"sql {session.label}", daemon=True)
    thread.start()
    deadline = time.monotonic() + q.timeout + SERVER_GRACE
    why, cancelled_at, sent = "", 0.0, 0.0
    while thread.is_alive():
        thread.join(0.2)
        now = time.monotonic()
        if not thread.is_alive():
            break
        if not why:
            why = "stopped" if should_stop() else "timeout" if now >= deadline else ""
            cancelled_at = now
        if why and now - cancelled_at >= CANCEL_GRACE:
            break  # the driver ignores the cancel: leave it to its (daemon) thread
        if why and now - sent >= 1.0:
            # Again each second: a cancel landing between two statements is lost.
            sent = now
            with contextlib.suppress(Exception):
                session.cancel()
    return _result(session, q, box, why, info)


def _result(
    session: Session, q: Query, box: dict[str, Any], why: str, info: ConnectionInfo
) -> dict[str, Any]:
    if "result" in box:  # it finished (and committed) before the cancel could land
        return dict(box["result"])
    error = box.get("error")
    if why == "stopped":
        raise TaskFailed(STOPPED)
    if why == "timeout" or (error is not None and session.is_timeout(error)):
        raise TaskFailed(f"{session.label}: statement timed out after {q.timeout}s")
    if isinstance(error, session.errors):
        raise TaskFailed(
            f"{session.label}: {_first_line(error, info)}", retryable=session.retryable(error)
        )
    if isinstance(error, TypeError | KeyError | IndexError | ValueError):
        raise TaskFailed(
            f"{session.label}: the parameters do not match the SQL's placeholders "
            f"({type(error).__name__}: {_first_line(error, info)}); postgres and mysql take "
            "%(name)s with a mapping or %s with a list, sqlite :name or ?",
            retryable=False,
        )
    if error is not None:
        raise error
    raise TaskFailed(f"{session.label}: the driver did not answer")  # abandoned, no reason


def _execute(session: Session, q: Query) -> dict[str, Any]:
    conn = session.conn
    try:
        cur = conn.cursor()
        session.begin(cur)
        result = session.run(cur, q)
        if q.read_only:
            conn.rollback()
        else:
            conn.commit()
        return result
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def _plain(cur: Any, q: Query) -> dict[str, Any]:
    cur.execute(q.sql, *([q.parameters] if q.parameters else []))
    if not cur.description:
        return {"rowcount": max(cur.rowcount, 0)}  # -1: not known (DDL)
    rows = cur.fetchmany(q.max_rows) if q.max_rows else []
    if cur.rowcount is not None and cur.rowcount >= 0:  # mysql, postgres: fetched already
        total = cur.rowcount
    else:  # sqlite: count the rest without keeping it
        total = len(rows) + sum(1 for _ in cur)
    return _table([str(d[0]) for d in cur.description], rows, total)


def _table(columns: list[str], rows: list[Any], total: int) -> dict[str, Any]:
    return {
        "columns": columns,
        "rows": [[_json_safe(v) for v in row] for row in rows],
        "rowcount": total,
        "truncated": total > len(rows),
    }


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        # A float when it holds the value exactly (12.50 -> 12.5), else the digits.
        if value.is_finite() and decimal.Decimal(repr(float(value))) == value:
            return float(value)
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


def _first_line(exc: BaseException, info: ConnectionInfo) -> str:
    args = exc.args
    # MySQL drivers' errors are (code, message): the message, as the other drivers give.
    mysql = len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str)
    lines = [line.strip() for line in (args[1] if mysql else str(exc)).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return _scrub(text, info)


def _scrub(text: str, info: ConnectionInfo) -> str:
    """Drivers may echo the DSN: never let the password through."""
    return text.replace(info.password, "***") if info.password else text


def _timeout(task: Mapping[str, Any]) -> int:
    for key in ("statement_timeout", "timeout"):
        if task.get(key) is not None:
            return max(1, parse_duration(task[key]))
    return DEFAULT_TIMEOUT


def _summary(result: Mapping[str, Any]) -> str:
    if "columns" not in result:
        return f"{result['rowcount']} rows affected"
    kept = f" (first {len(result['rows'])} kept)" if result["truncated"] else ""
    return f"{result['rowcount']} rows{kept}"


# --- entry points --------------------------------------------------------------------------


def run_sql(a: Attempt) -> Outcome:
    """The sql task: its rows as {"columns", "rows" (at most max_rows), "rowcount",
    "truncated"}, or {"rowcount"} for a statement without a result set."""
    task = a.task
    info = a.connection(task["connection"])
    q = Query(
        task["sql"],
        task.get("parameters") or None,
        bool(task.get("read_only", False)),
        _timeout(task),
        int(task.get("max_rows", 1000)),
        a.sql_allowed_hosts,
    )
    started = time.monotonic()
    result = _query(info, q, a.should_stop)
    a.log(f"{_label(info)}: {_summary(result)} in {_ms(started)} ms")
    return Outcome("success", result=result)


def check_sql(a: Attempt) -> tuple[bool, str]:
    """The sql sensor's check: done when the first cell of the first row is truthy (not
    NULL, false, 0, '' or '0'). An error worth another check is a "not yet"."""
    task = a.task
    info = a.connection(task["connection"])
    interval = parse_duration(task.get("poke_interval", SENSOR_TIMEOUT_CAP))
    q = Query(
        task["sql"],
        task.get("parameters") or None,
        True,
        max(1, min(interval, SENSOR_TIMEOUT_CAP)),
        1,
        a.sql_allowed_hosts,
    )
    try:
        result = _query(info, q, a.should_stop)
    except TaskFailed as exc:
        if not exc.retryable:
            raise
        return False, str(exc)
    if not result.get("rows"):
        return False, f"{_label(info)}: no rows yet"
    cell = result["rows"][0][0]
    falsy = cell in FALSY_CELLS or (isinstance(cell, str) and cell.lower() in FALSY_CELLS)
    return not falsy, f"{_label(info)}: first cell is {cell!r}"


def probe(info: ConnectionInfo, allowed_hosts: Sequence[str] = ()) -> tuple[bool, str]:
    """The connections API's test: connect (5 s), SELECT 1, close. (reached, message),
    in words safe to show. `allowed_hosts`: the tenant's sql_allowed_hosts policy."""
    started = time.monotonic()
    q = Query("SELECT 1", None, True, PROBE_TIMEOUT, 1, tuple(allowed_hosts))
    try:
        _query(info, q, lambda: False)
    except TaskFailed as exc:
        return False, _scrub(str(exc), info)
    return True, f"connected to {_label(info)} in {_ms(started)} ms"


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
