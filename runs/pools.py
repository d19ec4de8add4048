"""Pools (docs/pools.md): a tenant's named sets of slots, which tasks that name a `pool`
take `pool_slots` of while they are queued or running. This module is what people and
services touch: the reads with each pool's usage, and the changes, keyword-only,
authorised by the policy and audited in the same transaction. REST, GraphQL, the admin
and the portal all call these; the engine (runs/engine/slots.py) hands out the slots.

A pool's usage is not stored: it is read from the states of the instances that name it,
as the engine reads it, so what a page shows and what the engine enforces never drift."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from django.db import IntegrityError, transaction
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from orchestrator import audit
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Conflict, FieldError, Invalid, NotFound
from orchestrator.models import Tenant
from orchestrator.policy import authorize
from runs.engine.slots import wake
from runs.models import Pool, TaskInstance
from workflows.spec import NAME_PATTERN

__all__ = [
    "DESCRIPTION_MAX",
    "POOL_NAMES",
    "SLOTS_ACCEPTED",
    "SLOTS_MAX",
    "UNSET",
    "USAGE_FIELDS",
    "Usage",
    "create_pool",
    "delete_pool",
    "field_errors",
    "get_pool",
    "pools_with_usage",
    "update_pool",
    "usage",
    "with_usage",
]

UNSET: Any = object()

SLOTS_MAX = 10_000
DESCRIPTION_MAX = 500
POOL_NAMES = (
    "lowercase letters, digits, - and _, starting with a letter or digit, at most 63 "
    "characters (what a task's `pool` names)"
)
AUDITED_FIELDS = ["name", "slots", "description"]
TI = TaskInstance.State
# The states that hold a pool's slots, and those that still need the pool.
HOLDING = (TI.QUEUED, TI.RUNNING)
UNFINISHED = (TI.SCHEDULED, TI.QUEUED, TI.RUNNING)
USAGE_FIELDS = ("used_slots", "running", "queued", "waiting")
IN_USE_SHOWN = 5  # instances a refused delete names


# --- reads -----------------------------------------------------------------------------------


class Usage(NamedTuple):
    used_slots: int  # pool_slots of its queued and running instances
    running: int
    queued: int
    waiting: int  # scheduled instances that name it (waiting for a slot, or for the pool)


def with_usage(pools: QuerySet[Pool]) -> QuerySet[Pool]:
    """`pools`, each annotated with its Usage's numbers, in the one query that reads them."""
    # Correlated on the outer pool's tenant and name: these read only that tenant's rows,
    # and the unscoped manager lets the admin, which has no tenant in scope, use it too.
    naming = TaskInstance.objects.dangerously_unscoped().filter(
        ~Q(pool=""), tenant=OuterRef("tenant"), pool=OuterRef("name")
    )

    def total(states: tuple[str, ...], value: Sum | Count) -> Coalesce:
        rows = naming.filter(state__in=states).order_by().values("tenant")
        one = rows.annotate(n=value).values("n")[:1]
        return Coalesce(Subquery(one), 0, output_field=IntegerField())

    return pools.annotate(
        used_slots=total(HOLDING, Sum("pool_slots")),
        running=total((TI.RUNNING,), Count("id")),
        queued=total((TI.QUEUED,), Count("id")),
        waiting=total((TI.SCHEDULED,), Count("id")),
    )


def usage(pool: Pool) -> Usage:
    """The numbers `with_usage` annotated on the pool."""
    return Usage(*(int(getattr(pool, name)) for name in USAGE_FIELDS))


def pools_with_usage(tenant: Tenant) -> QuerySet[Pool]:
    """The tenant's pools by name, with their usage (callers are inside its scope)."""
    return with_usage(Pool.objects.filter(tenant=tenant)).order_by("name")


def get_pool(tenant: Tenant, name: str) -> Pool:
    """One pool of the tenant, with its usage; NotFound when it has none of that name."""
    pool = pools_with_usage(tenant).filter(name=name).first()
    if pool is None:
        raise NotFound(f"pool {name!r} not found")
    return pool


# --- changes ---------------------------------------------------------------------------------


SLOTS_ACCEPTED = f"an integer from 0 to {SLOTS_MAX} (0 holds every task of the pool, a pause)"


def _name_errors(name: Any) -> list[FieldError]:
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        return [("name", f"{name!r} is not a valid pool name; accepted: {POOL_NAMES}")]
    return []


def _slots_errors(slots: Any) -> list[FieldError]:
    if isinstance(slots, bool) or not isinstance(slots, int) or not 0 <= slots <= SLOTS_MAX:
        return [("slots", f"{slots!r} is not a number of slots; accepted: {SLOTS_ACCEPTED}")]
    return []


def field_errors(**values: Any) -> list[FieldError]:
    """What is wrong with these fields of a pool (name, slots, description), each error
    naming what would be accepted; the API checks them all at once before the change."""
    checks = {"name": _name_errors, "slots": _slots_errors, "description": _description_errors}
    return [error for key, value in values.items() for error in checks[key](value)]


def _description_errors(description: Any) -> list[FieldError]:
    if not isinstance(description, str) or len(description) > DESCRIPTION_MAX:
        return [("description", f"accepted: text of at most {DESCRIPTION_MAX} characters")]
    return []


@transaction.atomic
def create_pool(
    *, actor: Actor, tenant: Tenant, name: str, slots: int, description: str = ""
) -> Pool:
    """A new pool; tasks already waiting for a pool of this name may start at once."""
    authorize(actor, "pool.manage", tenant)
    errors = _name_errors(name) + _slots_errors(slots) + _description_errors(description)
    if errors:
        raise Invalid(errors)
    pool = Pool(tenant=tenant, name=name, slots=slots, description=description)
    try:
        with transaction.atomic():  # two creators racing for one name: the loser gets a 409
            pool.save()
    except IntegrityError:
        raise Conflict(f"pool {name!r} exists; choose another name, or change its slots") from None
    after = audit.snapshot(pool, AUDITED_FIELDS)
    audit.record(actor=actor, action="pool.create", tenant=tenant, obj=pool, after=after)
    wake(tenant.pk)
    return _with_usage_again(tenant, name)


@transaction.atomic
def update_pool(*, actor: Actor, pool: Pool, slots: int = UNSET, description: str = UNSET) -> Pool:
    """Change a pool's slots or description. Its name stays: tasks name it. Fewer slots
    than are in use stop nothing that runs; nothing more starts until they are free."""
    authorize(actor, "pool.manage", pool.tenant)
    errors = [] if slots is UNSET else _slots_errors(slots)
    errors += [] if description is UNSET else _description_errors(description)
    if errors:
        raise Invalid(errors)
    locked = Pool.objects.dangerously_unscoped().select_for_update().get(pk=pool.pk)
    before = audit.snapshot(locked, AUDITED_FIELDS)
    if slots is not UNSET:
        locked.slots = slots
    if description is not UNSET:
        locked.description = description
    after = audit.snapshot(locked, AUDITED_FIELDS)
    if after != before:
        locked.save()
        audit.record(
            actor=actor,
            action="pool.update",
            tenant=pool.tenant,
            obj=locked,
            before=before,
            after=after,
        )
        if locked.slots > before["slots"]:
            wake(pool.tenant_id)
    return _with_usage_again(pool.tenant, locked.name)


def _with_usage_again(tenant: Tenant, name: str) -> Pool:
    """The pool as changed, with its usage, as every interface answers it (the admin has
    no tenant in scope; the others are in this one already)."""
    with tenant_scope([tenant]):
        return get_pool(tenant, name)


@transaction.atomic
def delete_pool(*, actor: Actor, pool: Pool) -> None:
    """Delete a pool that no unfinished task instance names (Conflict, naming them, when
    one does: they would wait for it until it is made again)."""
    authorize(actor, "pool.manage", pool.tenant)
    locked = Pool.objects.dangerously_unscoped().select_for_update().get(pk=pool.pk)
    in_use = (
        TaskInstance.objects.dangerously_unscoped()
        .filter(tenant_id=pool.tenant_id, pool=locked.name, state__in=UNFINISHED)
        .select_related("run__workflow")
        .order_by("id")
    )
    shown = list(in_use[: IN_USE_SHOWN + 1])
    if shown:
        raise Conflict(_in_use_message(locked, shown, in_use))
    before = audit.snapshot(locked, AUDITED_FIELDS)
    audit.record(actor=actor, action="pool.delete", tenant=pool.tenant, obj=locked, before=before)
    locked.delete()


def _in_use_message(pool: Pool, shown: list[TaskInstance], in_use: QuerySet[TaskInstance]) -> str:
    count = len(shown) if len(shown) <= IN_USE_SHOWN else in_use.count()
    names = ", ".join(
        f"{ti.run.workflow.name}.{ti.task_id}"
        + (f"[{ti.map_index}]" if ti.map_index >= 0 else "")
        + f" (run {ti.run_id}, {ti.state})"
        for ti in shown[:IN_USE_SHOWN]
    )
    more = f" and {count - IN_USE_SHOWN} more" if count > IN_USE_SHOWN else ""
    hold = "" if pool.slots == 0 else ", or set its slots to 0 to hold them"
    return (
        f"pool {pool.name!r} is in use by {count} unfinished task instance(s): {names}{more}; "
        f"delete it once they have finished or their runs are cancelled{hold}"
    )
