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
