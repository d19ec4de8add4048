"""`MutationSuite`, the generic checks every app's GraphQL mutations inherit, as
`EndpointSuite` (tests.harness) does for REST: a role too low -> FORBIDDEN, another
tenant -> NOT_FOUND, each change audited once with source "graphql".

    class TestWorkflowMutations(MutationSuite):
        cases = [
            MutationCase("deleteWorkflow", DELETE, a_workflow, "editor", "workflow.delete"),
        ]

Tests never share objects: each makes its tenants, then `variables` makes the target in them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from orchestrator import tokens
from tests.harness import (
    ROLES,
    Team,
    gql,
    gql_error,
    make_team,
    new_audit_events,
    tenant_state,
)

__all__ = ["MutationCase", "MutationSuite"]


@dataclass(frozen=True)
class MutationCase:
    """One mutation. `variables(team)` makes the target in the team's tenant and returns
    the document's variables; `audit_action` is the one event a success writes."""

    name: str
    document: str
    variables: Callable[[Team], dict[str, Any]]
    min_role: str
    audit_action: str

    def __post_init__(self) -> None:
        assert self.min_role in ROLES, f"{self.name}: unknown role {self.min_role!r}"

    def denied_roles(self) -> Sequence[str]:
        return ROLES[: ROLES.index(self.min_role)]

    def allowed_roles(self) -> Sequence[str]:
        return ROLES[ROLES.index(self.min_role) :]


# Parameters a suite test may ask for, and their values for one case.
_AXES: dict[str, Callable[[MutationCase], Sequence[str]]] = {
    "denied_role": MutationCase.denied_roles,
    "allowed_role": MutationCase.allowed_roles,
}


class MutationSuite:
    """Subclass as `Test...` and list `cases`; every test below runs for every case (and
    role) it applies to. Each test makes its own tenants ("acme" and, for isolation,
    "globex"), with an owner and the role under test only. `never_returned`: values (a
    password, a secret) no answer may contain."""

    cases: ClassVar[Sequence[MutationCase]] = ()
    never_returned: ClassVar[Sequence[str]] = ()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "case" not in metafunc.fixturenames:
            return
        axes = [name for name in _AXES if name in metafunc.fixturenames]
        params = [
            pytest.param(case, *values, id="-".join([case.name, *values]))
            for case in self.cases
            for values in itertools.product(*(_AXES[a](case) for a in axes))
        ]
        metafunc.parametrize(["case", *axes], params)

    def test_it_forbids_roles_below_the_minimum(
        self, db: None, case: MutationCase, denied_role: str
    ) -> None:
        team = make_team("acme", roles=[denied_role])
        variables = case.variables(team)
        before = tenant_state(team.tenant)
        response = gql(team.tokens[denied_role], case.document, variables)
        assert response.status_code == 200
        assert gql_error(response)["extensions"]["code"] == "FORBIDDEN"
        assert response.json()["data"] is None
        assert tenant_state(team.tenant) == before

    def test_it_allows_roles_at_or_above_the_minimum_and_audits_once(
        self, db: None, case: MutationCase, allowed_role: str
    ) -> None:
        team = make_team("acme", roles=[allowed_role])
        variables = case.variables(team)
        count = len(new_audit_events(team.tenant, 0))
        response = gql(team.tokens[allowed_role], case.document, variables)
        assert "errors" not in response.json(), response.json()
        [event] = new_audit_events(team.tenant, count)
        assert event.action == case.audit_action
        assert (event.source, event.actor_id) == ("graphql", team.users[allowed_role].pk)
        assert event.token_prefix == tokens.parse(team.tokens[allowed_role])
        assert event.request_id == response["X-Request-ID"]
        assert event.changes["before"] or event.changes["after"]
        for value in self.never_returned:
            assert value.encode() not in response.content

    def test_it_hides_another_tenant(self, db: None, case: MutationCase) -> None:
        team, outsider = make_team("acme", roles=[]), make_team("globex", roles=[])
        variables = case.variables(outsider)
        before = tenant_state(team.tenant), tenant_state(outsider.tenant)
        response = gql(team.tokens["owner"], case.document, variables)
        assert gql_error(response)["extensions"]["code"] == "NOT_FOUND"
        assert response.json()["data"] is None
        assert (tenant_state(team.tenant), tenant_state(outsider.tenant)) == before
