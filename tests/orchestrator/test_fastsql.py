"""The hand-written SQL is contained (orchestrator/fastsql.py): every statement is declared
where it lives, listed in the module's docstring, and pinned here; a read of tenant-owned
rows cannot be built without its tenants."""

from __future__ import annotations

import re

import pytest

from orchestrator import fastsql

PINNED = {
    "token_by_prefix": "orchestrator.authentication._read_token",
    "audit_chain_head": "orchestrator.audit._lock_head",
    "audit_append": "orchestrator.audit._append",
    "workflow_by_name": "workflows.selectors.get_workflow",
    "run_by_id": "runs.selectors._read_run",
    "task_state_counts": "runs.selectors.task_summary",
    "run_insert": "runs.engine.creation._insert_run",
    "run_admission": "runs.engine.admission.room_for_new_run",
    "downstream_countdown": "runs.engine.progress.downstream_pending",
    "queue_ready": "runs.engine.progress._queue",
    "claim_tries": "runs.engine.claim.claim_many",
    "resend_queued": "runs.engine.repair._resend",
}


def test_it_declares_exactly_the_pinned_statements() -> None:
    # Django's setup imported every module of the product: all declarations have run.
    assert fastsql.STATEMENTS == PINNED


def test_it_lists_every_statement_in_its_docstring() -> None:
    listed = re.findall(r"^- ([a-z_]+(?:, [a-z_]+)*):", fastsql.__doc__ or "", re.M)
    names = {name for line in listed for name in line.split(", ")}
    assert names == set(PINNED)


def test_it_refuses_a_tenant_scoped_statement_without_tenants() -> None:
    with pytest.raises(ValueError, match="at least one tenant"):
        fastsql.in_tenants("r", 0)


@pytest.mark.django_db
def test_it_filters_on_every_tenant_given() -> None:
    condition = fastsql.in_tenants("r", 3)
    assert condition.endswith("IN (%s, %s, %s)")
    assert "tenant_id" in condition
