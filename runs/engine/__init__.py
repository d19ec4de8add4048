"""The engine: the run and task state machines. Every transition is a compare-and-set
UPDATE on the state (and the try number), so a duplicate message, a second reconciler or a
late worker can never run a try twice or revive a finished instance. Messages are sent only
after commit: the database is the truth, the broker a doorbell.

Its rooms: `creation` (new runs), `admission` (may a run start), `progress` (trigger rules,
dispatch, a run's end), `claim` and `finish` (a try's start and end on a worker),
`messaging` (queues, doorbells, continuation) and `repair` (the reconciler). This module
hands on the use cases that the rest of `runs` calls."""

from runs.engine import fairshare, lineage
from runs.engine.admission import start_queued_runs, start_waiting_runs
from runs.engine.claim import claim, claim_many, renew_lease
from runs.engine.creation import Created, create_and_start_run, create_run
from runs.engine.finish import finish, finish_inline, retry_delay
from runs.engine.lineage import on_lineage
from runs.engine.mapping import engine_context, results_of
from runs.engine.messaging import keeping_next, queue_for, release_kept, send, take_kept
from runs.engine.progress import (
    EndedRun,
    advance,
    dispatch,
    lock_run,
    measure_cancelled,
    on_run_ended,
    stop_run,
)
from runs.engine.repair import reconcile, register_repair
from runs.engine.slots import allocate, allocate_waiting

__all__ = [
    "Created",
    "EndedRun",
    "advance",
    "allocate",
    "allocate_waiting",
    "claim",
    "claim_many",
    "create_and_start_run",
    "create_run",
    "dispatch",
    "engine_context",
    "fairshare",
    "finish",
    "finish_inline",
    "keeping_next",
    "lineage",
    "lock_run",
    "measure_cancelled",
    "on_lineage",
    "on_run_ended",
    "queue_for",
    "reconcile",
    "register_repair",
    "release_kept",
    "renew_lease",
    "results_of",
    "retry_delay",
    "send",
    "start_queued_runs",
    "start_waiting_runs",
    "stop_run",
    "take_kept",
]

# Waiting for a pool or a concurrency key: what an after-commit allocation missed.
register_repair("allocate_waiting", allocate_waiting)
# Fair share: caps from what each tenant has in flight and waiting, and the fills they allow.
register_repair("fair_share", fairshare.plan)

# A run's end frees a slot of its workflow and its tenant: start what waited for one.
on_run_ended(lambda run: start_waiting_runs(run.workflow_id, run.tenant_id))
