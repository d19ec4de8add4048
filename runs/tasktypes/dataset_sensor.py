"""`wait_for: {kind: dataset}`: done once the dataset has an update recorded since the
run's data interval began (or since the run was created, for a run without one). Another
tenant's dataset is seen only while that tenant shares it (a grant)."""

from __future__ import annotations

from typing import Any

from orchestrator.grants import is_shared
from orchestrator.models import Grant, Tenant
from runs.models import DatasetUpdate
from runs.tasktypes.contract import Attempt, TaskFailed

__all__ = ["check_dataset"]


def owner_of(ref: Any, tenant_id: int) -> tuple[int, str]:
    """(owning tenant id, dataset name) of a spec's dataset reference, refusing another
    tenant's dataset that is not shared with this one (or does not exist: the same)."""
    if isinstance(ref, str):
        return tenant_id, ref
    slug, name = ref.get("tenant"), ref.get("name")
    owner = Tenant.objects.filter(slug=slug).values_list("pk", flat=True).first()
    if owner is None or not is_shared(
        owner_id=owner, grantee_id=tenant_id, kind=Grant.Kind.DATASET, name=name
    ):
        raise TaskFailed(
            f"dataset {name!r} of tenant {slug!r} is not shared with this tenant: its "
            "owner must grant it (docs/events.md, grants)",
            retryable=False,
        )
    return owner, name


def check_dataset(a: Attempt) -> tuple[bool, str]:
    owner, name = owner_of(a.task["dataset"], a.ti.tenant_id)
    run = a.ti.run
    since = run.data_interval_start or run.created_at
    update = (
        DatasetUpdate.objects.dangerously_unscoped()
        .filter(tenant_id=owner, dataset__name=name, created_at__gte=since)
        .order_by("-id")
        .values_list("id", "created_at")
        .first()
    )
    if update is None:
        return False, f"dataset {name!r} has no update since {since.isoformat()}"
    return True, f"dataset {name!r} was updated at {update[1].isoformat()} (update {update[0]})"
