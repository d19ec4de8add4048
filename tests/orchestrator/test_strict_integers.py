"""Numbers in requests are ASCII decimal digits, nothing else: Unicode digits such as "²"
(which `str.isdigit()` accepts and `int()` refuses) and digit strings too long for `int()`
were 500s. A query parameter answers 400 naming the parameter; an id in the path, 404."""

from __future__ import annotations

import pytest

from orchestrator.integers import MAX_REQUEST_INT, ascii_int
from runs.models import WorkflowRun
from tests.harness import Team, assert_problem, send
from tests.runs.run_states import running_run

NOT_NUMBERS = ["²", "٣", "1²", "-1", "1.0", " 1", "9" * 5000, str(MAX_REQUEST_INT + 1)]


@pytest.mark.parametrize("text", NOT_NUMBERS, ids=repr)
def test_it_reads_no_number_from_anything_but_ascii_digits(text: str) -> None:
    assert ascii_int(text) is None


def test_it_reads_ascii_digits_up_to_the_maximum() -> None:
    assert [ascii_int("0"), ascii_int("042"), ascii_int(str(MAX_REQUEST_INT))] == [
        0,
        42,
        MAX_REQUEST_INT,
    ]
    assert ascii_int("11", maximum=10) is None


@pytest.fixture
def run(team: Team) -> WorkflowRun:
    return running_run(team)


@pytest.mark.parametrize("text", ["%C2%B2", "9" * 5000], ids=["superscript-two", "5000-digits"])
@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("runs/?limit={}", "limit"),
        ("runs/{run}/tasks/transform/logs/?offset={}", "offset"),
        ("runs/{run}/tasks/transform/logs/?try={}", "try"),
        ("runs/{run}/tasks/transform/logs/?limit={}", "limit"),
        ("workflows/{workflow}/versions/1/diff/?against={}", "against"),
    ],
)
def test_a_query_parameter_that_is_no_number_is_a_400_naming_it(
    team: Team, run: WorkflowRun, text: str, query: str, parameter: str
) -> None:
    path = query.replace("{run}", str(run.pk)).replace("{workflow}", run.workflow.name)
    url = f"/api/v1/tenants/{team.slug}/{path.format(text)}"
    body = assert_problem(send(team.tokens["viewer"], "GET", url), 400, parameter)
    assert "invalid literal" not in str(body)  # no Python exception's text
    assert "Exceeds the limit" not in str(body)


@pytest.mark.parametrize("text", ["%C2%B2", "1%C2%B2", "9" * 5000])
@pytest.mark.parametrize("path", ["runs/{}/", "runs/{}/tasks/", "backfills/{}/"])
def test_an_id_in_the_path_that_is_no_number_is_a_404(team: Team, text: str, path: str) -> None:
    url = f"/api/v1/tenants/{team.slug}/{path.format(text)}"
    assert_problem(send(team.tokens["viewer"], "GET", url), 404)
