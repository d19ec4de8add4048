"""Every backfill endpoint under the generic suite: viewers read, operators create (or dry
run, which is not audited), pause, resume and cancel, each change audited once; lower roles
are 403, another tenant's backfills 404, bad credentials 401, and none of those change
anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs import backfills
from tests.harness import EndpointCase, EndpointSuite, Team
from tests.runs.backfills.test_backfill_api import apply

WORKFLOW = "/api/v1/tenants/{tenant}/workflows/{workflow}/backfills/"
BACKFILL = "/api/v1/tenants/{tenant}/backfills/{backfill}/"
RANGE: dict[str, Any] = {"start": "2026-01-01", "end": "2026-01-03"}


def a_workflow(team: Team) -> dict[str, str]:
    return {"workflow": apply(team).name}


def a_backfill(pause: bool = False) -> Callable[[Team], dict[str, str]]:
    def setup(team: Team) -> dict[str, str]:
        workflow = apply(team)
        with tenant_scope([team.tenant]):
            backfill = backfills.create_backfill(actor=Actor.cli(), workflow=workflow, **RANGE)
            if pause:
                backfills.pause_backfill(actor=Actor.cli(), backfill=backfill)
        return {"backfill": str(backfill.pk)}

    return setup


class TestBackfillEndpoints(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", WORKFLOW, "viewer", setup=a_workflow),
        EndpointCase(
            "create", "POST", WORKFLOW, "operator", status=201, body=RANGE,
            setup=a_workflow, audit_action="backfill.create",
        ),
        EndpointCase(
            "dry-run", "POST", WORKFLOW, "operator", body={**RANGE, "dry_run": True},
            setup=a_workflow,
        ),
        EndpointCase("list-all", "GET", "/api/v1/tenants/{tenant}/backfills/", "viewer"),
        EndpointCase("retrieve", "GET", BACKFILL, "viewer", setup=a_backfill()),
        EndpointCase(
            "pause", "POST", BACKFILL + "pause/", "operator",
            setup=a_backfill(), audit_action="backfill.pause",
        ),
        EndpointCase(
            "resume", "POST", BACKFILL + "resume/", "operator",
            setup=a_backfill(pause=True), audit_action="backfill.resume",
        ),
        EndpointCase(
            "cancel", "POST", BACKFILL + "cancel/", "operator",
            setup=a_backfill(), audit_action="backfill.cancel",
        ),
    ]  # fmt: skip
