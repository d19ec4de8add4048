"""Test-wide set-up: every run gets a database of its own, so runs never collide."""

from __future__ import annotations

import os
import uuid

import pytest
from django.conf import settings


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    run_id = os.environ.get("TEST_RUN_ID") or f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
    for alias, db in settings.DATABASES.items():
        if db["ENGINE"] != "django.db.backends.sqlite3":
            db.setdefault("TEST", {})["NAME"] = f"test_orchestrator_{alias}_{run_id}"


def _flush_with_retries() -> None:
    """Transactional tests end with a TRUNCATE of every table. While the engine tests' worker
    and beat processes are up, a reconciler transaction can deadlock with it, and PostgreSQL
    then aborts one of the two; retrying the flush is then the right thing to do."""
    import time

    from django.core.management.base import CommandError
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]

    def teardown(self: TransactionTestCase) -> None:
        for attempt in range(5):
            try:
                original(self)
                return
            except CommandError:
                if attempt == 4:
                    raise
                time.sleep(0.5)

    TransactionTestCase._fixture_teardown = teardown  # type: ignore[attr-defined]


_flush_with_retries()
