"""With SQLITE_TASK_ROOT set, a tenant's sql tasks and connection tests open SQLite files
under <root>/<tenant slug>/ only: not another tenant's, not any file the worker can read."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import override_settings

from connections import services as conns
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.tasktypes.contract import TaskFailed
from runs.tasktypes.credentials import Credentials
from runs.tasktypes.masking import Masker
from tests.harness import make_team, send


@pytest.mark.django_db
def test_it_opens_only_the_tenants_own_sqlite_files(tmp_path: Path) -> None:
    acme, globex = make_team("acme", roles=[]), make_team("globex", roles=[])
    for slug in ("acme", "globex"):
        (tmp_path / slug).mkdir()
        (tmp_path / slug / "wh.sqlite3").touch()
    actor = Actor.cli()
    with tenant_scope([acme.tenant]):
        conns.create_connection(
            actor=actor, tenant=acme.tenant, name="own", kind="sqlite",
            database=str(tmp_path / "acme" / "wh.sqlite3"),
        )  # fmt: skip
        conns.create_connection(
            actor=actor, tenant=acme.tenant, name="theirs", kind="sqlite",
            database=str(tmp_path / "acme" / ".." / "globex" / "wh.sqlite3"),
        )  # fmt: skip
    with override_settings(SQLITE_TASK_ROOT=str(tmp_path)):
        credentials = Credentials(acme.tenant.pk, Masker())
        assert credentials.connection("own").database.endswith("acme/wh.sqlite3")
        with pytest.raises(TaskFailed, match="must be under") as refused:
            credentials.connection("theirs")
        assert not refused.value.retryable
        response = send(
            acme.tokens["owner"], "POST", "/api/v1/tenants/acme/connections/theirs/test/"
        )
        assert response.status_code == 200, response.content
        assert response.json()["ok"] is False
        assert "SQLITE_TASK_ROOT" in response.json()["message"]
    assert globex.tenant.slug == "globex"
