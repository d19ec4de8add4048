"""Pools in the portal (docs/pools.md): the tenant's pools with what their tasks take of
them now, which every member may open, and the forms that create a pool, change its slots
or description, and delete it, for editors and above. Each form calls the runs.pools
service that REST and GraphQL call, so the rules, the refusals and the audit events are
theirs.

The forms have their own paths (`pool-editor/`), so no pool name collides with the list."""

from __future__ import annotations

from typing import Any, ClassVar

from django.urls import path, reverse

from orchestrator.integers import ascii_int
from portal.actions import FieldErrors, TenantForm, by_field
from portal.pages import TenantPage
from runs.models import Pool
from runs.pools import (
    DESCRIPTION_MAX,
    SLOTS_MAX,
    UNSET,
    create_pool,
    delete_pool,
    get_pool,
    pools_with_usage,
    update_pool,
    usage,
)

__all__ = ["PoolDeletePage", "PoolEditor", "PoolRow", "PoolsPage", "urlpatterns"]


class PoolRow:
    """A pool as a row shows it: its numbers, and how full it is."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.usage = usage(pool)

    @property
    def free(self) -> int:
        return max(self.pool.slots - self.usage.used_slots, 0)

    @property
    def over(self) -> bool:
        """More slots in use than it has (its slots were lowered under running tasks)."""
        return self.usage.used_slots > self.pool.slots


class PoolsPage(TenantPage):
    """The tenant's pools by name, each with its slots in use, its running, queued and
    waiting task instances."""

    permission = "pool.view"
    template_name = "portal/pools.html"
    nav = "pools"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        return {"rows": [PoolRow(pool) for pool in pools_with_usage(self.tenant)]}


class PoolEditor(TenantForm):
    """Editors: `pool-editor/` makes a new pool, `pool-editor/<name>/` changes the slots or
    the description of the named one (its name stays: tasks name it)."""

    permission = "pool.manage"
    template_name = "portal/pools_form.html"
    nav = "pools"
    fields: ClassVar[tuple[str, ...]] = ("name", "slots", "description")

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        pool = get_pool(self.tenant, kwargs["name"]) if "name" in kwargs else None
        if values is None:
            values = {} if pool is None else {"slots": pool.slots, "description": pool.description}
        shown = by_field(errors, self.fields)
        return {
            "object": pool,
            "row": PoolRow(pool) if pool is not None else None,
            "values": values,
            "errors": shown,
            "form_errors": shown.get("", []),
            "slots_max": SLOTS_MAX,
            "description_max": DESCRIPTION_MAX,
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        post = self.request.POST
        # A number the service refuses with its own words (at "slots") when it is not one.
        typed = post.get("slots", "").strip()
        number = ascii_int(typed)
        slots: Any = number if number is not None else typed
        description = post.get("description", "").strip()
        url = reverse("portal:pools", args=[self.tenant.slug])
        if "name" not in kwargs:
            name = post.get("name", "").strip()
            create_pool(
                actor=self.actor,
                tenant=self.tenant,
                name=name,
                slots=slots,
                description=description,
            )
            return url, f"Pool {name!r} created with {slots} slot(s)."
        pool = get_pool(self.tenant, kwargs["name"])
        update_pool(
            actor=self.actor,
            pool=pool,
            slots=slots if "slots" in post else UNSET,
            description=description if "description" in post else UNSET,
        )
        return url, f"Pool {pool.name!r} saved."


class PoolDeletePage(TenantForm):
    """GET: what deleting the pool does. POST: delete it, unless unfinished task instances
    name it (the refusal, naming them, is shown on the page)."""

    permission = "pool.manage"
    template_name = "portal/pools_delete.html"
    nav = "pools"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        pool = get_pool(self.tenant, kwargs["name"])
        return {
            "object": pool,
            "row": PoolRow(pool),
            "form_errors": [m for said in errors.values() for m in said],
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        delete_pool(actor=self.actor, pool=get_pool(self.tenant, kwargs["name"]))
        return reverse("portal:pools", args=[self.tenant.slug]), f"Pool {kwargs['name']!r} deleted."


urlpatterns = [
    path("pools/", PoolsPage.as_view(), name="pools"),
    path("pool-editor/", PoolEditor.as_view(), name="pool-new"),
    path("pool-editor/<str:name>/", PoolEditor.as_view(), name="pool-edit"),
    path("pool-editor/<str:name>/delete/", PoolDeletePage.as_view(), name="pool-delete"),
]
