"""Tries a worker holds but has not claimed, so that a dead worker's are re-sent within a
lease. A worker's main process takes messages ahead of its pool (prefetch), and a child that
ends a try keeps the next one of its chain to run itself (`messaging.keeping_next`): both are
`queued` in the database while their only trace is in that worker's memory (the broker
keeps a prefetched message unacknowledged until its visibility timeout, hours away; a kept
try never had a message). Without this registry, only the drained-queue re-send finds them,
up to QUEUED_RESEND_MAX_SECONDS late under a queue that never empties.

Each worker incarnation is a holder (`<node name>/<random>`: a restarted worker with the
same node name is a new holder, so its predecessor's tries are not taken for its own). In
the broker's Redis, under its key prefix:
- `orc:holders`, a sorted set: each holder scored with its last beat (Redis' clock), every
  third of TASK_LEASE_SECONDS from its main process (`start_beating`);
- `orc:held:<holder>`, a sorted set: `<instance id>:<try number>` scored with when it was
  taken (`hold`). The beat drops the entries whose try is no longer queued (`sweep`).

The reconciler (`repair.resend_held_tries`) re-sends the still-queued tries of every holder
silent for a lease (`dead_holders`), at the front of their queue (`send_first`), where the
dead worker took them from. A duplicate message is harmless: the claim is compare-and-set.
The embedded mode (in-process broker, no Redis) holds nothing: its worker threads die only
with the process, and with them its in-memory queue, so every try queued then waits in an
empty queue, which the drained-queue re-send covers after a restart."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection
from kombu import Producer

from orchestrator.celery import app
from runs.models import TaskInstance

__all__ = [
    "HELD",
    "HOLDERS",
    "become_holder",
    "dead_holders",
    "forget",
    "hold",
    "holder",
    "send_first",
    "settle",
    "start_beating",
    "stop_holding",
    "sweep",
]

logger = logging.getLogger(__name__)

HOLDERS = "orc:holders"
HELD = "orc:held:"

# Remove each member given whose score is at most ARGV[1]: an entry taken again since the
# caller read it (a re-sent message, a try queued anew) has a newer score and stays.
_REMOVE_IF_NOT_NEWER = """
local removed = 0
for i = 2, #ARGV do
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if score and tonumber(score) <= tonumber(ARGV[1]) then
        removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
    end
end
return removed
"""

# This process's holder: set in a worker's main process before its pool forks, so that its
# children hold what they keep under the same name. "" everywhere else (holds nothing).
_holder = ""


@contextmanager
def _redis() -> Iterator[Any]:
    """The broker's Redis client (its key prefix applied), or None when the broker is not
    Redis (the in-process broker of the embedded mode). From the app's pool: a connection
    of its own per call would cost a connect (milliseconds) on every message received."""
    pool: Any = app.pool  # a kombu connection pool (the stubs say producers)
    with pool.acquire(block=True) as conn:
        client = getattr(conn.default_channel, "client", None)
        yield client if client is not None and hasattr(client, "zadd") else None


def _now(client: Any) -> float:
    """Redis' clock: holders on several hosts are judged by one clock, not theirs."""
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1e6


def holder() -> str:
    """This process's holder name; "" when it holds nothing."""
    return _holder


def become_holder(nodename: str) -> str:
    """Make this process (a worker's main process, before its pool starts) a holder, with
    a first beat; "" when the broker is not Redis."""
    global _holder
    _SENDER.close()  # opened again, at the first hold, on the broker as configured now
    with _redis() as client:
        if client is None:
            return ""
        _holder = f"{nodename}/{uuid.uuid4().hex[:8]}"
        client.zadd(HOLDERS, {_holder: _now(client)})
    return _holder


def stop_holding() -> None:
    """Hold nothing more in this process (its registry stays for the reconciler)."""
    global _holder
    _holder = ""
    _SENDER.close()


def hold(tries: Iterable[tuple[int, int]]) -> None:
    """Record that this worker has taken (instance id, try number) pairs without claiming
    them yet. Never raises: a Redis error leaves the try to the drained-queue re-send.

    Sent, not waited for (`_Sender`): a chain's every step holds the try it keeps, and the
    round trip to Redis was a tenth of the step. Once the command is in the socket, Redis
    gets it even if this process dies the next moment; its answer is read before the next
    command (or by `settle`), and an error there is logged as before."""
    if not _holder:
        return
    members = {f"{ti_id}:{try_number}": time.time() for ti_id, try_number in tries}
    if members:
        _SENDER.zadd(HELD + _holder, members)


def settle() -> None:
    """Wait until Redis has taken what `hold` sent from this process (read its answers)."""
    _SENDER.settle()


class _Sender:
    """This process's own connection to the broker's Redis for `hold`: each ZADD is written
    to the socket and its answer read only before the next command, when it has long
    arrived. One connection per process (a forked child opens its own), taken from the
    broker client's pool settings with its key prefix applied here, as kombu would."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._connection: Any = None
        self._prefix = ""
        self._unread = 0

    def zadd(self, key: str, members: dict[str, float]) -> None:
        with self._lock:
            try:
                if self._pid != os.getpid():
                    self._open()
                if self._connection is None:
                    return
                self._read_answers()
                pairs = [part for member, score in members.items() for part in (score, member)]
                self._connection.send_command("ZADD", self._prefix + key, *pairs)
                self._unread += 1
            except Exception:
                logger.warning("could not record held tries %s", list(members), exc_info=True)
                self._reset()

    def settle(self) -> None:
        with self._lock:
            if self._pid != os.getpid() or self._connection is None:
                return
            try:
                self._read_answers()
            except Exception:
                logger.warning("holding: an earlier record of held tries failed", exc_info=True)
                self._reset()

    def close(self) -> None:
        """Read what is unread, then drop the connection."""
        self.settle()
        with self._lock:
            self._reset()

    def _open(self) -> None:
        self._pid, self._connection, self._unread = os.getpid(), None, 0
        with _redis() as client:
            if client is None:
                return  # not a Redis broker: `hold` has no holder there anyway
            self._prefix = str(getattr(client, "global_keyprefix", "") or "")
            self._connection = client.connection_pool.make_connection()
        self._connection.socket_timeout = 2.0  # never wait longer on an answer

    def _read_answers(self) -> None:
        while self._unread:
            self._unread -= 1
            self._connection.read_response()  # raises the error of a failed ZADD

    def _reset(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.disconnect()
        self._pid, self._connection, self._unread = 0, None, 0


_SENDER = _Sender()


def _parse(members: Iterable[bytes | str]) -> dict[tuple[int, int], str]:
    tries: dict[tuple[int, int], str] = {}
    for member in members:
        text = member.decode() if isinstance(member, bytes) else member
        ti_id, _, try_number = text.partition(":")
        tries[(int(ti_id), int(try_number))] = text
    return tries


def _queued(tries: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """Which of the tries are still queued, with that try number (one query)."""
    wanted = set(tries)
    rows = (
        TaskInstance.objects.dangerously_unscoped()
        .filter(pk__in={ti_id for ti_id, _ in wanted}, state=TaskInstance.State.QUEUED)
        .values_list("id", "try_number")
    )
    return {row for row in rows if row in wanted}


def sweep() -> int:
    """Drop this holder's entries whose try is no longer queued (claimed, or its message
    found it gone), so the set holds only what is in hand; how many were dropped."""
    if not _holder:
        return 0
    key = HELD + _holder
    settle()
    with _redis() as client:
        if client is None:
            return 0
        read_at = time.time()
        entries = _parse(client.zrange(key, "-inf", read_at, byscore=True))
        if not entries:
            return 0
        queued = _queued(entries)
        gone = [member for pair, member in entries.items() if pair not in queued]
        if not gone:
            return 0
        return int(client.register_script(_REMOVE_IF_NOT_NEWER)(keys=[key], args=[read_at, *gone]))


def start_beating() -> None:
    """From a worker's main process: say every third of a lease that this holder is alive,
    and sweep its entries, from a daemon thread that dies with the process."""
    if not _holder:
        return

    def beat() -> None:
        while True:
            try:
                with _redis() as client:
                    if client is not None:
                        client.zadd(HOLDERS, {_holder: _now(client)})
                sweep()
            except Exception:  # Redis or the database away: the next beat tries again
                logger.warning("holding: beat of %s failed", _holder, exc_info=True)
                connection.close()
            time.sleep(max(0.2, settings.TASK_LEASE_SECONDS / 3))

    threading.Thread(target=beat, name="holding-beat", daemon=True).start()


def dead_holders() -> list[tuple[str, list[tuple[int, int]]]]:
    """Holders silent for a lease (TASK_LEASE_SECONDS), each with its tries still queued
    with the same try number. `forget` each once its tries are re-sent."""
    settle()
    with _redis() as client:
        if client is None:
            return []
        silent_since = _now(client) - settings.TASK_LEASE_SECONDS
        found = []
        for raw in client.zrange(HOLDERS, "-inf", silent_since, byscore=True):
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            held = _parse(client.zrange(HELD + name, 0, -1))
            found.append((name, sorted(_queued(held))))
        return found


def forget(name: str) -> None:
    """Delete a dead holder's registry; a holder that beat again since (it was only slow)
    stays among the holders and records what it takes from now on."""
    with _redis() as client:
        if client is None:
            return
        client.delete(HELD + name)
        silent_since = _now(client) - settings.TASK_LEASE_SECONDS
        client.register_script(_REMOVE_IF_NOT_NEWER)(keys=[HOLDERS], args=[silent_since, name])


class _FrontOfQueue:
    """A kombu Redis channel whose publish puts the message at the front of its queue
    (the end consumers pop from), as the transport itself gives an unacknowledged message
    back (`_do_restore_message`); everything else is the channel's own."""

    def __init__(self, channel: Any) -> None:
        self._channel = channel

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)

    def basic_publish(self, message: Any, exchange: str, routing_key: str, **kwargs: Any) -> None:
        channel = self._channel
        channel._inplace_augment_message(message, exchange, routing_key)
        with channel.conn_or_acquire() as client, client.pipeline() as pipe:
            channel._do_restore_message(message, exchange, routing_key, pipe)
            pipe.execute()


def send_first(tries: list[tuple[int, int]], queue: str) -> None:
    """Send one `runs.execute` message per try at the front of `queue`, now (call after
    commit): a dead worker's tries go back where it took them from, not behind a backlog
    that may take an hour. A broker other than Redis gets them at the back: it gives a
    dead consumer's unacknowledged messages back by itself, so this only concerns kept
    tries there."""
    if not tries:
        return
    try:
        with app.producer_or_acquire() as producer:
            channel = producer.channel
            if hasattr(channel, "_do_restore_message"):
                front: Any = _FrontOfQueue(channel)  # a channel by duck typing
                producer = Producer(front)
            for ti_id, try_number in tries:
                app.send_task(
                    "runs.execute",
                    (ti_id, try_number),
                    producer=producer,
                    queue=queue,
                    ignore_result=True,
                )
    except Exception as exc:  # the broker away: the drained-queue re-send remains
        logger.warning("could not re-send %d held tries to queue %s: %s", len(tries), queue, exc)
