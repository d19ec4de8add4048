"""Messages to workers: which queue a tenant's tries go to, the doorbells rung after
commit (one per try, or batches of tries that take no time), and continuation, by which
the worker that queues the next try of a chain may keep it and run it itself. The database
is the truth, the broker a doorbell: a message lost here is re-sent by the repairs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import transaction

from orchestrator.celery import app
from orchestrator.tenancy import task_queue
from runs.engine import holding

__all__ = [
    "BATCH_MAX",
    "BATCH_MIN",
    "INLINE_TYPES",
    "keeping_next",
    "queue_for",
    "release_kept",
    "send",
    "send_batches",
    "send_queued",
    "take_kept",
]

logger = logging.getLogger(__name__)


def queue_for(policy: dict[str, Any]) -> str:
    """The Celery queue of a tenant's tries: the one its policy's `task_queue` names (its
    dedicated pool of workers), else the shared one. Read when a try is queued, so a
    policy change applies to every try queued after it commits."""
    return task_queue(policy) or str(settings.CELERY_TASK_DEFAULT_QUEUE)


# The try kept back under `keeping_next`, per thread.
# The try kept back under `keeping_next` (`kept`), and whether to keep one (`keep`).
_local = threading.local()


@contextmanager
def keeping_next() -> Iterator[None]:
    """While active (in this thread), `dispatch` keeps back one of the tries it queues,
    the highest in priority, instead of sending its message: the caller runs it next, in
    this process, saving the broker's round trip (a chain's handoff). `take_kept` hands
    it over once the transaction has committed, if it belongs to the caller's queue. A try
    kept by a process that then dies is `queued` without a message, which the reconciler
    re-sends like any lost message."""
    _local.keep, _local.kept = True, None
    try:
        yield
    except BaseException:
        _local.kept = None  # rolled back: the kept try was never queued
        raise
    finally:
        _local.keep = False


def take_kept(queue: str | None = None) -> tuple[int, int] | None:
    """The try kept back under `keeping_next` (instance id, try number), for the caller to
    run next; None when there is none. `queue`: the queue the caller's message came from.
    A kept try of another queue (its tenant's pool is another one) is sent to its own
    queue instead, and None returned: through continuation a worker runs only what its
    queues would have brought it. None: the caller got no message (it runs tries
    in-process), nothing to check."""
    kept: tuple[int, int, str] | None = getattr(_local, "kept", None)
    _local.kept = None
    if kept is None:
        return None
    ti_id, try_number, kept_queue = kept
    if queue is not None and queue != kept_queue:
        send((ti_id, try_number), queue=kept_queue)
        return None
    return ti_id, try_number


def release_kept() -> None:
    """Send the kept try's message, to its queue: the caller will not run it."""
    kept: tuple[int, int, str] | None = getattr(_local, "kept", None)
    _local.kept = None
    if kept is not None:
        send((kept[0], kept[1]), queue=kept[2])


def send(*tries: tuple[int, int], queue: str | None = None) -> None:
    """Ring the doorbell for (instance id, try number) pairs on `queue` (None: the shared
    one), after commit: a worker consuming it will claim each try. One producer
    connection serves the whole batch."""
    if tries:
        _publish_after_commit(
            "runs.execute", list(tries), queue or str(settings.CELERY_TASK_DEFAULT_QUEUE)
        )


def _publish_after_commit(task_name: str, calls: list[tuple[Any, ...]], queue: str) -> None:
    """Send one message per argument tuple to `queue` once the transaction commits. If the
    broker is away the state is committed all the same: warn, and let the reconciler
    re-send."""

    def publish() -> None:
        # By name, through our app (a shared_task proxy would follow whichever Celery app
        # is current in this process): the engine needs no import of the tasks' module.
        try:
            with app.producer_or_acquire() as producer:
                for args in calls:
                    app.send_task(
                        task_name, args, producer=producer, queue=queue, ignore_result=True
                    )
        except Exception as exc:
            logger.warning(
                "could not send %d task message(s) to queue %s, the reconciler will "
                "re-send them: %s",
                len(calls),
                queue,
                exc,
            )

    transaction.on_commit(publish)


# Task types that take no time on a worker: their tries travel and are claimed and recorded
# in batches (DESIGN.md section 6: one message may carry several ready instances).
INLINE_TYPES = frozenset({"noop"})


BATCH_MAX = 50
BATCH_MIN = 25


def send_batches(tries: list[tuple[int, int]], queue: str) -> None:
    """Like `send`, for tries of INLINE_TYPES: several per message, in enough messages to
    keep a few workers busy (1000 tries: 20 messages of 50), but never fewer than
    BATCH_MIN a message: the few tries a finished batch frees (a fan-out refilled under its
    tenant's fair-share cap) travel together, not one message each."""
    if len(tries) <= 1:
        send(*tries, queue=queue)
        return
    size = max(min(len(tries), BATCH_MIN), min(BATCH_MAX, -(-len(tries) // 8)))
    chunks = [tries[i : i + size] for i in range(0, len(tries), size)]
    _publish_after_commit(
        "runs.execute_batch", [([list(t) for t in chunk],) for chunk in chunks], queue
    )


def send_queued(
    rows: list[tuple[Any, ...]], keepable: Collection[int] | None = None
) -> list[tuple[int, int]]:
    """Messages for tries just queued: rows (id, try number, type, queue), highest priority
    first, each to its queue. Keeps one back for the caller under `keeping_next`: the
    highest in priority of those `keepable` (None: any). Dispatch lets only the tries this
    transaction's end made ready be kept (a chain's handoff); tries that waited for a slot
    go through the broker, behind whatever other tenants queued meanwhile (fair share)."""
    queued = [(int(r[0]), int(r[1])) for r in rows]
    to_send = rows
    if rows and getattr(_local, "keep", False) and getattr(_local, "kept", None) is None:
        index = next(
            (i for i, r in enumerate(rows) if keepable is None or int(r[0]) in keepable), None
        )
        if index is not None:
            _local.kept = (*queued[index], str(rows[index][3]))
            to_send = rows[:index] + rows[index + 1 :]
            # Queued with no message: if this worker dies before claiming it, only its
            # holder's registry tells the reconciler (holding.py).
            holding.hold(queued[index : index + 1])
    for queue in dict.fromkeys(str(r[3]) for r in to_send):
        tries = [r for r in to_send if r[3] == queue]
        send(*[(int(r[0]), int(r[1])) for r in tries if r[2] not in INLINE_TYPES], queue=queue)
        send_batches([(int(r[0]), int(r[1])) for r in tries if r[2] in INLINE_TYPES], queue)
    return queued
