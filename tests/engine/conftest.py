"""Engine tests: real worker processes on the test database, messages through Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.periodic import ensure_periodic_tasks
from tests.workers import Workers, publishing_to
from workflows.services import apply_workflow

__all__ = ["engine", "workers"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="package")
def workers(django_db_setup: None, django_db_blocker: Any) -> Iterator[Workers]:
    """Two worker processes (2 slots each) and a beat, for the engine tests. Stopped when
    they are done: their reconciler would otherwise act on other tests' runs."""
    with django_db_blocker.unblock():
        pool = Workers(count=2, concurrency=2)
        pool.start()
    try:
        with publishing_to(pool):
            yield pool
    finally:
        pool.stop()


class Engine:
    """A tenant with an owner, and helpers to apply specs and read runs back."""

    def __init__(self, workers: Workers | None) -> None:
        self.workers = workers
        self.user = User.objects.create_user("owner")
        self.tenant = services.create_tenant(
            actor=Actor.cli(),
            slug="eng",
            name="Engine",
            owner=self.user,
            quotas={"max_tasks_per_workflow": 2000, "max_concurrent_runs": 500},
        )
        self.actor = Actor(user=self.user, source="api")

    def apply(self, spec: dict[str, Any]) -> Any:
        with tenant_scope([self.tenant]):
            return apply_workflow(actor=self.actor, tenant=self.tenant, data=spec).workflow

    def scope(self) -> Any:
        return tenant_scope([self.tenant])


@pytest.fixture
def engine(transactional_db: None, workers: Workers) -> Engine:
    ensure_periodic_tasks()  # the reconciler's beat entry (a flush may have just removed it)
    return Engine(workers)
