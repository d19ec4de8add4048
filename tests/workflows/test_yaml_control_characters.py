"""A spec body with a character YAML does not allow (a control character, which the YAML
reader refuses as soon as it is given the text) is a 400 naming the character and its
position, not a 500; nothing is stored."""

from __future__ import annotations

import pytest

from tests.harness import Team, api, assert_problem
from workflows.models import Workflow


@pytest.mark.parametrize("content_type", ["application/yaml", "application/json"])
def test_a_control_character_in_a_spec_is_a_400_with_its_position(
    team: Team, content_type: str
) -> None:
    url = f"/api/v1/tenants/{team.slug}/workflows/"
    body = "name: bell\x07\ntasks: {}\n"
    response = api(team.tokens["editor"]).post(url, body, content_type=content_type)
    problem = assert_problem(response, 400)
    assert "character #x0007 at position 10" in problem["errors"][0]["message"]
    assert not Workflow.objects.dangerously_unscoped().filter(tenant=team.tenant).exists()
