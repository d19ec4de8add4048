"""Engine tests: real worker processes on the test database, messages through Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runs.periodic import ensure_periodic_tasks
from tests.runs.engine.helpers import Engine
from tests.workers import Workers, publishing_to

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


@pytest.fixture
def engine(transactional_db: None, workers: Workers) -> Engine:
    ensure_periodic_tasks()  # the reconciler's beat entry (a flush may have just removed it)
    return Engine(workers)
