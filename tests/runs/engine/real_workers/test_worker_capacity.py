"""Workers report their task slots and queues in their heartbeats: what fair share divides
(runs.engine.fairshare). Read here from the workers' own metrics store."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings

from orchestrator import metrics
from runs.engine import fairshare
from tests.runs.engine.helpers import Engine
from tests.workers import wait_for


def test_each_worker_reports_its_slots_and_queues(engine: Engine, settings: Any) -> None:
    assert engine.workers is not None
    settings.METRICS_REDIS_URL = engine.workers.redis_url
    settings.METRICS_KEY_PREFIX = engine.workers.prefix + "orc:metrics:"
    queue = str(django_settings.CELERY_TASK_DEFAULT_QUEUE)

    def slots() -> int:
        capacity = metrics.worker_capacity().values()
        return sum(n for n, queues in capacity if queue in queues)

    wait_for(lambda: slots() == 4, 30, "two workers of two slots each", engine.workers)
    assert fairshare.budgets()[queue] == 2 * 4 * fairshare.SLOT_UNITS
