"""docs/pools.md works as written: its spec example applies, and every GraphQL operation
it shows runs without an error, in order, against a tenant named as in the docs. (Its
paths and curl lines are run by tests/test_documented_paths.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from django.conf import settings

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import Pool
from tests.harness import gql, make_team
from tests.runs.pools.pool_states import a_pool
from workflows.services import apply_workflow

DOC = Path(settings.BASE_DIR) / "docs" / "pools.md"


def _block(language: str) -> str:
    [block] = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)
    return str(block)


def test_the_spec_example_applies(db: None) -> None:
    team = make_team("demo", roles=[])
    spec = yaml.safe_load(_block("yaml"))
    with tenant_scope([team.tenant]):
        applied = apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec)
    tasks = applied.workflow.current_version.spec["tasks"]
    assert tasks["load"]["pool_slots"] == 2
    assert tasks["load"]["concurrency"] == {"key": "load-{{ params.customer }}", "limit": 1}


def test_every_graphql_operation_shown_runs(db: None) -> None:
    team = make_team("demo", roles=["editor"])
    operations = [line for line in _block("graphql").splitlines() if line.strip()]
    queries = [op for op in operations if op.startswith("query")]
    mutations = [op for op in operations if op.startswith("mutation")]
    assert len(queries) == 2
    assert len(mutations) == 3
    a_pool(team)  # what the queries read
    for query in queries:
        answer = gql(team.tokens["editor"], query).json()
        assert "errors" not in answer, (query, answer)
    Pool.objects.dangerously_unscoped().filter(tenant=team.tenant).delete()
    for mutation in mutations:  # create, change, delete: in the order shown
        answer = gql(team.tokens["editor"], mutation).json()
        assert "errors" not in answer, (mutation, answer)
    assert not Pool.objects.dangerously_unscoped().filter(tenant=team.tenant).exists()
