"""A run with a mapped task in the portal: the run page shows the task once, as a group
row (its count, its count per state in the state colours, its span) that expands into its
instances (index, element, state, tries, duration, a link to each one's page, Clear for
operators only); the graph draws it as one node with a count badge and the group's state;
the gantt chart gives it one lane once it has many instances; an instance's page shows its
element and its own log. The page's SQL count does not grow with the instances."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from tests.harness import Team
from tests.runs.mapping.mapped_runs import mapped_run, write_log

pytestmark = pytest.mark.django_db


def signed_in(client: Client, team: Team, role: str = "viewer") -> Client:
    client.force_login(team.users[role])
    return client


def page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.content[:2000]
    return response.content.decode()


def test_the_run_page_shows_a_mapped_task_once_as_a_group(client: Client, team: Team) -> None:
    run = mapped_run(team, ["success"] * 3 + ["failed"])
    body = page(signed_in(client, team), f"/t/{team.slug}/runs/{run.pk}/")
    assert body.count('<tr data-task="process"') == 1
    group = body.split('<tr data-task="process" data-group', 1)[1].split("</tr>", 1)[0]
    assert "4 instances" in group
    assert '<span class="badge st-success" title="3 success">3' in group
    assert '<span class="badge st-failed" title="1 failed">1' in group
    assert '<span class="badge st-failed">' in group  # the group's state: failed
    instances = body.split('<details id="instances-process">', 1)[1].split("</details>", 1)[0]
    assert "4 instances of <code>process</code>" in instances
    assert re.findall(r'data-map-index="(\d+)"', instances) == ["0", "1", "2", "3"]
    assert "&quot;file-2.csv&quot;" in instances
    assert f'href="/t/{team.slug}/runs/{run.pk}/tasks/process/?map_index=3"' in instances
    assert "Clear" not in instances  # a viewer


def test_operators_get_a_clear_button_per_finished_instance(client: Client, team: Team) -> None:
    run = mapped_run(team, ["success", "failed", "running"])
    body = page(signed_in(client, team, "operator"), f"/t/{team.slug}/runs/{run.pk}/")
    clear = f"/t/{team.slug}/runs/{run.pk}/tasks/process/clear/?map_index="
    assert f'href="{clear}0"' in body
    assert f'href="{clear}1"' in body
    assert f'href="{clear}2"' not in body  # still running


def test_the_graph_draws_a_mapped_task_as_one_node_with_its_count(
    client: Client, team: Team
) -> None:
    run = mapped_run(team, ["success"] * 5 + ["running"])
    body = page(signed_in(client, team), f"/t/{team.slug}/runs/{run.pk}/")
    svg = body.split('<svg xmlns="http://www.w3.org/2000/svg" class="dag"', 1)[1].split("</svg>")
    drawing = "</svg>".join(svg[:2])
    assert drawing.count("<title>process") == 1
    assert '<g class="node st-running"' in drawing.split("<title>process", 1)[0].rsplit("<a", 1)[1]
    assert '<text class="node-badge"' in drawing
    assert "\N{MULTIPLICATION SIGN}6</text>" in drawing


def test_the_gantt_gives_many_instances_one_lane_and_few_a_lane_each(
    client: Client, team: Team
) -> None:
    signed_in(client, team)
    few = page(client, f"/t/{team.slug}/runs/{mapped_run(team, ['success'] * 3).pk}/")
    chart = few.split('class="gantt"', 1)[1].split("</svg>", 1)[0]
    assert chart.count('<g class="gantt-row">') == 2 + 3  # list_files, report, 3 instances
    assert "process[2]" in chart
    many = page(client, f"/t/{team.slug}/runs/{mapped_run(team, ['success'] * 30).pk}/")
    chart = many.split('class="gantt"', 1)[1].split("</svg>", 1)[0]
    assert chart.count('<g class="gantt-row">') == 3
    assert "process \N{MULTIPLICATION SIGN}30" in chart
    assert "process[29] · try 1" in chart  # each bar titled with its instance


def test_an_instances_page_shows_its_element_and_its_own_log(client: Client, team: Team) -> None:
    run = mapped_run(team, ["success", "failed"])
    write_log(run, "process", 0, b"index zero\n")
    write_log(run, "process", 1, b"index one\n")
    url = f"/t/{team.slug}/runs/{run.pk}/tasks/process/?map_index=1"
    body = page(signed_in(client, team, "operator"), url)
    assert "<code>process[1]</code>" in body
    assert "&quot;file-1.csv&quot;" in body
    assert "index one" in body
    assert "index zero" not in body
    assert 'href="?try=1&amp;map_index=1"' in body
    assert "/tasks/process/clear/?map_index=1" in body


def test_a_missing_index_is_not_found(client: Client, team: Team) -> None:
    run = mapped_run(team, ["success", "failed"])
    signed_in(client, team)
    base = f"/t/{team.slug}/runs/{run.pk}/tasks/process/"
    assert client.get(base + "?map_index=5").status_code == 404
    assert client.get(base).status_code == 404  # a mapped task's page needs its index
    assert client.get(base + "log/?try=1&map_index=5").status_code == 404


def test_another_tenant_cannot_see_the_instances(
    client: Client, team: Team, outsider: Team
) -> None:
    run = mapped_run(team, ["success"])
    client.force_login(outsider.users["owner"])
    url = f"/t/{outsider.slug}/runs/{run.pk}/tasks/process/?map_index=0"
    assert client.get(url).status_code == 404


def test_the_run_page_costs_the_same_statements_for_3_or_300_instances(
    client: Client, team: Team, django_assert_num_queries: Any
) -> None:
    signed_in(client, team)
    for count in (3, 300):
        run = mapped_run(team, ["success"] * count)
        url = f"/t/{team.slug}/runs/{run.pk}/"
        client.get(url)  # the version's graph is read once per process
        # session, user, memberships, the run, its neighbours, its tasks, their attempts
        with django_assert_num_queries(7):
            body = page(client, url)
        assert body.count("<tr data-map-index=") == min(count, 200)  # the first 200 listed
    assert "and 100 more" in body
