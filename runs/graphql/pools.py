"""Pools over GraphQL (docs/pools.md): the same reads, services and policy as REST
(runs/api/pools.py). runs.graphql.schema's Query and Mutation include these fields."""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry
from strawberry.types import Info

from orchestrator.graphql.types import LIST_LIMIT_MAX, actor_of, list_limit, tenant_scope_for
from runs.models import Pool
from runs.pools import create_pool, delete_pool, get_pool, pools_with_usage, update_pool, usage

__all__ = ["PoolMutation", "PoolQuery", "PoolType"]


@strawberry.type(description="A pool and what its tasks take of it now.")
class PoolType:
    id: int
    name: str = strawberry.field(description="what a task's `pool` names; fixed once created")
    slots: int = strawberry.field(description="shared while queued or running; 0: a pause")
    description: str
    used_slots: int = strawberry.field(
        description="the pool_slots of its queued and running task instances"
    )
    running: int
    queued: int
    waiting: int = strawberry.field(
        description="its scheduled task instances, waiting for a slot (see waitReason)"
    )
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, pool: Pool) -> PoolType:
        """From a pool read with its usage (runs.pools.with_usage)."""
        numbers = usage(pool)
        return cls(
            id=pool.pk,
            name=pool.name,
            slots=pool.slots,
            description=pool.description,
            used_slots=numbers.used_slots,
            running=numbers.running,
            queued=numbers.queued,
            waiting=numbers.waiting,
            created_at=pool.created_at,
            updated_at=pool.updated_at,
        )


@strawberry.type
class PoolQuery:
    @strawberry.field(description="The tenant's pools by name, each with its usage.")  # type: ignore[untyped-decorator]
    def pools(self, info: Info, tenant: str, limit: int = LIST_LIMIT_MAX) -> list[PoolType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "pool.view") as scoped:
            return [PoolType.of(pool) for pool in pools_with_usage(scoped)[:limit]]

    @strawberry.field(description="Null, with a NOT_FOUND error, when it does not exist.")  # type: ignore[untyped-decorator]
    def pool(self, info: Info, tenant: str, name: str) -> PoolType | None:
        with tenant_scope_for(info, tenant, "pool.view") as scoped:
            return PoolType.of(get_pool(scoped, name))


@strawberry.type
class PoolMutation:
    @strawberry.mutation(description="A new pool (editors); a name taken is CONFLICT.")  # type: ignore[untyped-decorator]
    def create_pool(
        self, info: Info, tenant: str, name: str, slots: int, description: str = ""
    ) -> PoolType:
        with tenant_scope_for(info, tenant, "pool.manage") as scoped:
            pool = create_pool(
                actor=actor_of(info), tenant=scoped, name=name, slots=slots, description=description
            )
            return PoolType.of(pool)

    @strawberry.mutation(description="New slots or description (editors); omitted: kept.")  # type: ignore[untyped-decorator]
    def update_pool(
        self,
        info: Info,
        tenant: str,
        name: str,
        slots: int | None = strawberry.UNSET,
        description: str | None = strawberry.UNSET,
    ) -> PoolType:
        with tenant_scope_for(info, tenant, "pool.manage") as scoped:
            changes: dict[str, Any] = {
                key: value
                for key, value in (("slots", slots), ("description", description))
                if value is not strawberry.UNSET and value is not None
            }
            pool = update_pool(actor=actor_of(info), pool=get_pool(scoped, name), **changes)
            return PoolType.of(pool)

    @strawberry.mutation(
        description="Delete the pool (editors); CONFLICT, naming them, while unfinished "
        "task instances name it."
    )  # type: ignore[untyped-decorator]
    def delete_pool(self, info: Info, tenant: str, name: str) -> bool:
        with tenant_scope_for(info, tenant, "pool.manage") as scoped:
            delete_pool(actor=actor_of(info), pool=get_pool(scoped, name))
        return True
