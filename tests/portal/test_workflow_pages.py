"""The workflow pages: the list (schedules in words, next firings, the strip of the last
runs, search, tag filter and paging), a workflow (its graph, params, schedule and the grid
of recent runs x tasks) and its versions with a side-by-side diff. Who may see them, that
no other tenant's names appear, and a pinned number of SQL queries however many workflows,
runs, tasks or versions they show."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from portal.wording import DiffRow, cron_in_words, side_by_side
from runs.models import TaskInstance, WorkflowRun
from tests.harness import ROLES, Team
from workflows.models import Schedule, Workflow
from workflows.scheduling import upcoming
from workflows.services import apply_workflow, set_paused

pytestmark = pytest.mark.django_db

ETL: dict[str, Any] = {
    "name": "etl",
    "description": "Loads the day's sales into the warehouse",
    "tags": ["finance", "daily"],
    "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Berlin", "catchup": "none"},
    "params": {
        "table": {
            "type": "string",
            "required": True,
            "default": "sales",
            "description": "the table to load",
        },
        "format": {"type": "string", "enum": ["csv", "json"], "default": "csv"},
        "limit": {"type": "integer", "minimum": 1, "default": 100},
    },
    "tasks": {
        "extract": {"type": "noop"},
        "audit": {"type": "shell", "command": ["true"]},
        "load": {"type": "shell", "command": ["true"], "depends_on": ["extract", "audit"]},
        "report": {"type": "noop", "depends_on": ["load"], "trigger_rule": "all_done"},
    },
}
TASK_ORDER = ["audit", "extract", "load", "report"]  # upstream first, ties by name


# --- making things -----------------------------------------------------------------------


def apply(team: Team, spec: dict[str, Any] = ETL, **changes: Any) -> Workflow:
    with tenant_scope([team.tenant]):
        data = spec | changes
        return apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data).workflow


def plain(team: Team, name: str, **changes: Any) -> Workflow:
    """A one-task workflow without a schedule."""
    return apply(team, {"name": name, "tasks": {"only": {"type": "noop"}}}, **changes)


def run_of(
    workflow: Workflow, state: str = "success", tasks: dict[str, str] | None = None
) -> WorkflowRun:
    """A run with its task instances in the given states (every task of the current version
    in the run's state unless told), written as rows, as the engine would have left them."""
    version = workflow.current_version
    assert version is not None
    run = WorkflowRun.objects.dangerously_unscoped().create(
        tenant_id=workflow.tenant_id,
        workflow=workflow,
        version=version,
        state=state,
        logical_date=timezone.now(),
        trigger_source="api",
    )
    states = tasks or dict.fromkeys(version.spec["tasks"], state)
    TaskInstance.objects.dangerously_unscoped().bulk_create(
        TaskInstance(
            tenant_id=workflow.tenant_id,
            run=run,
            task_id=task_id,
            task_type="noop",
            state=task_state,
            try_number=2 if task_state == "failed" else 1,
        )
        for task_id, task_state in states.items()
    )
    return run


def signed_in(client: Client, team: Team, role: str = "viewer") -> Client:
    client.force_login(team.users[role])
    return client


def page(client: Client, url: str, **query: Any) -> str:
    response = client.get(url, query)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def list_url(team: Team) -> str:
    return f"/t/{team.slug}/workflows/"


def workflow_url(team: Team, name: str = "etl") -> str:
    return f"/t/{team.slug}/workflows/{name}/"


def versions_url(team: Team, name: str = "etl") -> str:
    return f"/t/{team.slug}/workflows/{name}/versions/"


def strip_of(body: str, name: str) -> list[tuple[str, str]]:
    """(state, href) of each square in the workflow's strip of runs, left to right."""
    match = re.search(rf'aria-label="Last \d+ runs of {name}, oldest first">(.*?)</span>', body)
    assert match, f"no strip for {name}"
    return re.findall(r'<a class="cell st-(\w+)" href="([^"]+)"', match.group(1))


# --- access ------------------------------------------------------------------------------


def test_it_sends_anonymous_readers_to_sign_in(client: Client, team: Team) -> None:
    apply(team)
    for url in (list_url(team), workflow_url(team), versions_url(team)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"] == f"/login/?next={url}"


def test_every_role_sees_the_workflow_pages(client: Client, team: Team) -> None:
    apply(team)
    for role in ROLES:
        signed_in(client, team, role)
        for url in (list_url(team), workflow_url(team), versions_url(team)):
            assert client.get(url).status_code == 200, (role, url)


def test_another_tenant_and_its_workflows_are_not_found(
    client: Client, team: Team, outsider: Team
) -> None:
    apply(team)
    apply(outsider, ETL, name="globex-secret")
    signed_in(client, outsider, "owner")
    for url in (list_url(team), workflow_url(team), versions_url(team)):
        assert client.get(url).status_code == 404, url
    signed_in(client, team, "owner")
    for name in ("globex-secret", "no-such-workflow"):
        assert client.get(workflow_url(team, name)).status_code == 404
        assert client.get(versions_url(team, name)).status_code == 404


def test_no_page_shows_another_tenants_names(client: Client, team: Team, outsider: Team) -> None:
    secret = apply(outsider, ETL, name="globex-secret", tags=["globex-tag"])
    run_of(secret, "failed")
    workflow = apply(team)
    run_of(workflow)
    signed_in(client, team)
    for url in (list_url(team), workflow_url(team), versions_url(team)):
        body = page(client, url)
        assert "globex" not in body.lower(), url


# --- the list ----------------------------------------------------------------------------


def test_the_list_shows_names_tags_schedules_and_next_fire_times(
    client: Client, team: Team
) -> None:
    etl = apply(team)
    plain(team, "adhoc", description="Run by hand")
    paused = plain(team, "frozen")
    with tenant_scope([team.tenant]):
        set_paused(actor=Actor.cli(), workflow=paused, paused=True)
    body = page(signed_in(client, team), list_url(team))
    assert f'href="{workflow_url(team)}"' in body
    assert f'href="{workflow_url(team, "adhoc")}"' in body
    assert "Loads the day&#x27;s sales into the warehouse" in body
    assert "Run by hand" in body
    assert '<a class="tag" href="?tag=finance"' in body
    assert '<a class="tag" href="?tag=daily"' in body
    assert "At 02:00, every day" in body
    assert "(Europe/Berlin)" in body
    schedule = Schedule.objects.dangerously_unscoped().get(workflow=etl)
    assert schedule.next_run_at is not None
    assert f'<time datetime="{schedule.next_run_at.astimezone(dt.UTC).isoformat()}"' in body
    assert "Triggered only" in body  # adhoc and frozen have no schedule
    frozen_row = body.split(f'href="{workflow_url(team, "frozen")}"', 1)[1].split("</tr>", 1)[0]
    assert "paused" in frozen_row


def test_the_strip_shows_the_last_20_runs_oldest_left(client: Client, team: Team) -> None:
    etl = apply(team)
    other = plain(team, "other")
    runs = [run_of(etl, "failed" if i % 5 == 0 else "success") for i in range(22)]
    run_of(other, "running")
    body = page(signed_in(client, team), list_url(team))
    strip = strip_of(body, "etl")
    assert strip == [(r.state, f"/t/{team.slug}/runs/{r.pk}/") for r in runs[2:]]
    assert strip[0][1] == reverse("portal:run", args=[team.slug, runs[2].pk])
    newest = runs[-1]
    assert f'title="run {newest.pk}: success, {newest.created_at:%Y-%m-%d %H:%M} UTC"' in body
    assert [state for state, _ in strip_of(body, "other")] == ["running"]
    assert "no runs yet" not in body
    plain(team, "fresh")
    assert "no runs yet" in page(client, list_url(team))


def test_the_list_searches_names_and_descriptions(client: Client, team: Team) -> None:
    apply(team)
    plain(team, "adhoc", description="Warehouse clean-up")
    plain(team, "mailer")
    signed_in(client, team)
    body = page(client, list_url(team), q="WAREHOUSE")
    assert f'href="{workflow_url(team)}"' in body  # by its description
    assert f'href="{workflow_url(team, "adhoc")}"' in body
    assert workflow_url(team, "mailer") not in body
    body = page(client, list_url(team), q="mail")
    assert workflow_url(team, "mailer") in body
    assert workflow_url(team) not in body
    assert 'value="mail"' in body  # the search box keeps it


def test_the_list_filters_by_tag_and_says_when_nothing_matches(client: Client, team: Team) -> None:
    apply(team)
    plain(team, "adhoc", tags=["ops"])
    signed_in(client, team)
    body = page(client, list_url(team), tag="ops")
    assert workflow_url(team, "adhoc") in body
    assert workflow_url(team) not in body
    assert "Clear filters" in body
    body = page(client, list_url(team), tag="nope")
    assert "No workflow matches" in body
    assert "manage.py apply" not in body


def test_an_empty_tenant_is_told_how_to_add_a_workflow(client: Client, team: Team) -> None:
    body = page(signed_in(client, team), list_url(team))
    assert "No workflows yet" in body
    assert f"python manage.py apply path/to/specs/ --tenant {team.slug}" in body
    assert f"PUT /api/v1/tenants/{team.slug}/workflows/&lt;name&gt;/" in body


def test_the_list_pages_by_name_keeping_the_filters(client: Client, team: Team) -> None:
    names = [f"wf-{i:03d}" for i in range(53)]
    Workflow.objects.dangerously_unscoped().bulk_create(
        Workflow(tenant=team.tenant, name=name, tags=["bulk"]) for name in names
    )
    plain(team, "untagged")
    signed_in(client, team)
    body = page(client, list_url(team), tag="bulk")
    shown = re.findall(rf'href="{list_url(team)}(wf-\d+)/"', body)
    assert shown == names[:50]
    next_link = re.search(r'<a href="\?([^"]+)" rel="next">Next page', body)
    assert next_link
    assert next_link.group(1) == "tag=bulk&amp;cursor=wf-049"
    body = page(client, list_url(team), tag="bulk", cursor="wf-049")
    assert re.findall(rf'href="{list_url(team)}(wf-\d+)/"', body) == names[50:]
    assert 'rel="next"' not in body
    assert "First page" in body
    assert "untagged" not in body


# --- a workflow --------------------------------------------------------------------------


def test_the_workflow_page_draws_the_graph_with_the_latest_runs_states(
    client: Client, team: Team
) -> None:
    etl = apply(team)
    run_of(etl, "success")
    latest = run_of(
        etl,
        "running",
        {"extract": "success", "audit": "failed", "load": "upstream_failed", "report": "running"},
    )
    body = page(signed_in(client, team), workflow_url(team))
    assert "<h1>etl</h1>" in body
    assert "version 1" in body
    assert '<a class="tag" href="/t/acme/workflows/?tag=finance"' in body
    graph = body.split('<svg xmlns="http://www.w3.org/2000/svg" class="dag"', 1)[1]
    graph = graph.split("</svg>\n", 1)[0]
    for task_id, state in [
        ("extract", "success"),
        ("audit", "failed"),
        ("load", "upstream_failed"),
        ("report", "running"),
    ]:
        assert f'<a href="#grid-{task_id}"><g class="node st-{state}"' in graph
    assert "shell · all_success" in graph
    assert "noop · all_done" in graph
    assert graph.count('class="edge"') == 3
    assert f'Coloured by the latest run, <a href="/t/acme/runs/{latest.pk}/">' in body


def test_a_workflow_without_runs_draws_a_graph_without_states(client: Client, team: Team) -> None:
    apply(team)
    body = page(signed_in(client, team), workflow_url(team))
    assert "No runs yet, so the tasks have no state." in body
    assert body.count('<g class="node"') == 4
    assert "#grid-" not in body
    assert "No runs yet." in body


def test_the_workflow_page_lists_the_params(client: Client, team: Team) -> None:
    apply(team)
    body = page(signed_in(client, team), workflow_url(team))
    params = body.split('<table class="params">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><th scope=\"row\" class=\"mono\">(\w+)</th>(.*?)</tr>", params)
    assert [name for name, _ in rows] == ["format", "limit", "table"]  # by name
    cells = {name: re.findall(r"<td[^>]*>(.*?)</td>", rest) for name, rest in rows}
    assert cells["table"][0] == "string"
    assert "required" in cells["table"][2]
    assert cells["table"][4] == "the table to load"
    assert cells["format"][1] == "&quot;csv&quot;"
    assert cells["format"][3] == "one of &quot;csv&quot;, &quot;json&quot;"
    assert cells["limit"][:2] == ["integer", "100"]
    assert cells["limit"][3] == "≥ 1"


def test_the_workflow_page_shows_the_schedule_and_its_next_10_fire_times(
    client: Client, team: Team
) -> None:
    etl = apply(team)
    body = page(signed_in(client, team), workflow_url(team))
    assert "At 02:00, every day" in body
    assert "<code>0 2 * * *</code>" in body
    assert "<dt>Catch-up</dt><dd>none</dd>" in body
    schedule = Schedule.objects.dangerously_unscoped().get(workflow=etl)
    fires = upcoming(schedule, count=10)
    assert len(fires) == 10
    table = body.split('<table class="fire-times">', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 11  # the header and 10 firings
    for fire in fires:
        assert fire.strftime("%a %Y-%m-%d 02:00 ") in table  # 02:00 in Berlin, CET or CEST
        assert fire.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") in table
    assert "Next 10 fire times" in body


def test_a_paused_workflow_shows_no_next_run_but_its_would_be_fire_times(
    client: Client, team: Team
) -> None:
    etl = apply(team)
    with tenant_scope([team.tenant]):
        set_paused(actor=Actor.cli(), workflow=etl, paused=True)
    signed_in(client, team)
    body = page(client, workflow_url(team))
    assert "<dt>Next run</dt><dd>paused</dd>" in body
    assert "Paused: the times it would fire once unpaused." in body
    assert body.count("02:00 CET") + body.count("02:00 CEST") == 10
    row = page(client, list_url(team)).split(f'href="{workflow_url(team)}"', 1)[1]
    row = row.split("</tr>", 1)[0]
    assert '<span class="badge st-paused">' in row
    assert '<span class="muted">paused</span>' in row
    assert "<time" not in row


def test_a_workflow_without_schedule_says_it_runs_when_triggered(
    client: Client, team: Team
) -> None:
    plain(team, "adhoc")
    body = page(signed_in(client, team), workflow_url(team, "adhoc"))
    assert "No schedule: the workflow runs only when triggered" in body
    assert "This workflow takes no params." in body


def test_the_grid_has_a_row_per_task_and_a_column_per_recent_run(
    client: Client, team: Team
) -> None:
    etl = apply(team)
    runs = [run_of(etl, "success") for _ in range(26)]
    runs.append(run_of(etl, "failed", dict.fromkeys(TASK_ORDER, "failed")))
    shown = runs[-25:]
    body = page(signed_in(client, team), workflow_url(team))
    grid = body.split('<table class="run-grid"', 1)[1].split("</table>", 1)[0]
    head, rows = grid.split("<tbody>", 1)
    assert re.findall(r'<th scope="col"><a class="cell st-\w+" href="([^"]+)"', head) == [
        f"/t/{team.slug}/runs/{r.pk}/" for r in shown
    ]
    assert f'title="run {runs[-1].pk}: failed, ' in head
    assert re.findall(r'<th scope="row" class="task" id="grid-(\w+)">', rows) == TASK_ORDER
    load_row = rows.split('id="grid-load">', 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r'<a class="cell st-(\w+)" href="([^"]+)" title="([^"]+)"', load_row)
    assert [state for state, _, _ in cells] == ["success"] * 24 + ["failed"]
    assert cells[0][1] == reverse("portal:task", args=[team.slug, shown[0].pk, "load"])
    assert cells[-1][2] == f"load · run {runs[-1].pk}: failed, try 2"


def test_the_grid_keeps_tasks_that_only_older_versions_had(client: Client, team: Team) -> None:
    etl = apply(team)
    old = run_of(etl)
    tasks = {k: v for k, v in ETL["tasks"].items() if k != "audit"}
    tasks["load"] = tasks["load"] | {"depends_on": ["extract"]}
    etl = apply(team, ETL, tasks=tasks)
    new = run_of(etl)
    body = page(signed_in(client, team), workflow_url(team))
    assert "version 2" in body
    rows = body.split('<table class="run-grid"', 1)[1].split("<tbody>", 1)[1]
    assert re.findall(r'id="grid-(\w+)">', rows) == ["extract", "load", "report", "audit"]
    audit = rows.split('id="grid-audit">', 1)[1].split("</tr>", 1)[0]
    assert "(not in version 2)" in audit
    assert f'href="/t/{team.slug}/runs/{old.pk}/tasks/audit/"' in audit
    assert f'<span class="cell st-none" title="audit · run {new.pk}: not in its version">' in audit


# --- versions ----------------------------------------------------------------------------


def three_versions(team: Team) -> Workflow:
    apply(team)
    apply(team, ETL, description="Loads sales")
    return apply(
        team, ETL, description="Loads sales", max_active_runs=2, tags=["finance", "daily", "eu"]
    )


def test_the_versions_page_lists_them_newest_first(client: Client, team: Team) -> None:
    three_versions(team)
    body = page(signed_in(client, team), versions_url(team))
    table = body.split('<table class="versions">', 1)[1]
    assert re.findall(r'<th scope="row" class="num">(\d+)', table) == ["3", "2", "1"]
    assert '3 <span class="tag">current</span>' in table
    assert '<a href="?a=1&amp;b=2">changes in version 2</a>' in table
    assert "first version" in table


def test_the_diff_defaults_to_the_previous_version_against_the_current(
    client: Client, team: Team
) -> None:
    three_versions(team)
    body = page(signed_in(client, team), versions_url(team))
    assert "Version 2 → version 3" in body
    diff = body.split('<table class="diff">', 1)[1].split("</table>", 1)[0]
    changed = re.findall(r'<tr class="(add|del|chg)">(.*?)</tr>', diff)
    texts = [re.findall(r'<td class="[ab]">(.*?)</td>', cells) for _, cells in changed]
    assert ("add", ["", "- eu"]) in [(kind, t) for (kind, _), t in zip(changed, texts, strict=True)]
    assert any(
        kind == "add" and t[1] == "max_active_runs: 2"
        for (kind, _), t in zip(changed, texts, strict=True)
    )
    assert '<option value="2" selected>version 2</option>' in body
    assert '<option value="3" selected>version 3 (current)</option>' in body


def test_the_diff_compares_any_two_versions(client: Client, team: Team) -> None:
    three_versions(team)
    body = page(signed_in(client, team), versions_url(team), a="1", b="3")
    assert "Version 1 → version 3" in body
    diff = body.split('<table class="diff">', 1)[1].split("</table>", 1)[0]
    chg = re.search(
        r'<tr class="chg"><td class="ln">(\d+)</td><td class="mark">\u2212</td>'
        r'<td class="a">(.*?)</td><td class="ln">(\d+)</td><td class="mark">\+</td>'
        r'<td class="b">(.*?)</td></tr>',
        diff,
    )
    assert chg
    assert chg.group(2) == "description: Loads the day&#x27;s sales into the warehouse"
    assert chg.group(4) == "description: Loads sales"
    same = page(client, versions_url(team), a="2", b="2")
    assert "The same version on both sides" in same
    assert 'class="chg"' not in same
    assert 'class="add"' not in same


def test_an_unknown_version_is_not_found(client: Client, team: Team) -> None:
    three_versions(team)
    signed_in(client, team)
    for query in ({"a": "4"}, {"b": "0"}, {"a": "x"}, {"b": "1.5"}, {"a": "99999999999"}):
        assert client.get(versions_url(team), query).status_code == 404, query


def test_side_by_side_pairs_changed_lines_and_folds_long_unchanged_stretches() -> None:
    a = [f"line {i}" for i in range(1, 21)]
    b = [*a[:9], "line ten", *a[10:], "line 21"]
    rows = side_by_side(a, b, context=2)
    assert rows == [
        DiffRow("fold", a_text="7 unchanged lines"),
        DiffRow("same", 8, "line 8", 8, "line 8"),
        DiffRow("same", 9, "line 9", 9, "line 9"),
        DiffRow("chg", 10, "line 10", 10, "line ten"),
        DiffRow("same", 11, "line 11", 11, "line 11"),
        DiffRow("same", 12, "line 12", 12, "line 12"),
        DiffRow("fold", a_text="6 unchanged lines"),
        DiffRow("same", 19, "line 19", 19, "line 19"),
        DiffRow("same", 20, "line 20", 20, "line 20"),
        DiffRow("add", None, "", 21, "line 21"),
    ]
    assert side_by_side(["x", "y"], ["y"]) == [
        DiffRow("del", 1, "x", None, ""),
        DiffRow("same", 2, "y", 1, "y"),
    ]
    assert side_by_side(["x"], ["x"]) == [DiffRow("same", 1, "x", 1, "x")]


def test_cron_in_words() -> None:
    assert cron_in_words("0 2 * * *") == "At 02:00, every day"
    assert cron_in_words("@daily") == "At 00:00, every day"
    assert cron_in_words("@hourly") == "Every hour"
    assert cron_in_words("*/15 * * * 1-5") == "Every 15 minutes, Monday through Friday"
    assert cron_in_words("0 6 1 * *") == "At 06:00, on day 1 of the month"


# --- the pages' markup ---------------------------------------------------------------------


def test_the_pages_need_no_inline_script_or_style(client: Client, team: Team) -> None:
    etl = three_versions(team)
    run_of(etl, "failed")
    signed_in(client, team)
    for url in (list_url(team), workflow_url(team), versions_url(team)):
        body = page(client, url)
        assert not re.search(r"<script(?![^>]*\bsrc=)", body), url
        assert " style=" not in body, url
        assert "<style" not in body, url
        assert not re.search(r"\son[a-z]+=", body), url
        assert "hx-on" not in body, url
        headings = [int(h) for h in re.findall(r"<h([1-6])\b", body)]
        assert headings[0] == 1, url
        assert headings.count(1) == 1, url
        assert all(b - a <= 1 for a, b in itertools.pairwise(headings)), url
        assert "<th>" not in body, url  # every header cell says what it heads


# --- SQL ---------------------------------------------------------------------------------


def test_the_list_page_count_of_queries_does_not_grow(
    client: Client, team: Team, django_assert_num_queries: Any
) -> None:
    def grow(count: int) -> None:
        for i in range(count):
            workflow = apply(
                team, ETL, name=f"etl-{Workflow.objects.dangerously_unscoped().count()}"
            )
            for state in ("success", "failed", "running")[: i % 3 + 1]:
                run_of(workflow, state)

    grow(2)
    signed_in(client, team)
    client.get(list_url(team))
    # session, user, memberships, the workflows with their schedules, the strips' runs
    with django_assert_num_queries(5):
        assert page(client, list_url(team)).count('class="strip"') == 2
    grow(28)
    with django_assert_num_queries(5):
        assert page(client, list_url(team)).count('class="strip"') == 30


def test_the_workflow_page_count_of_queries_does_not_grow(
    client: Client, team: Team, django_assert_num_queries: Any
) -> None:
    etl = apply(team)
    run_of(etl)
    run_of(etl, "failed")
    signed_in(client, team)
    client.get(workflow_url(team))
    # session, user, memberships, the workflow with its version, its schedule, the runs,
    # their task instances
    with django_assert_num_queries(7):
        assert page(client, workflow_url(team)).count('<td><a class="cell') == 2 * 4
    for _ in range(28):
        run_of(etl)
    with django_assert_num_queries(7):
        assert page(client, workflow_url(team)).count('<td><a class="cell') == 25 * 4


def test_the_versions_page_count_of_queries_does_not_grow(
    client: Client, team: Team, django_assert_num_queries: Any
) -> None:
    apply(team)
    apply(team, ETL, max_active_runs=2)
    signed_in(client, team)
    client.get(versions_url(team))
    # session, user, memberships, the workflow, its versions, the two compared
    with django_assert_num_queries(6):
        assert page(client, versions_url(team)).count('<th scope="row" class="num">') == 2
    for limit in range(3, 31):
        apply(team, ETL, max_active_runs=limit)
    with django_assert_num_queries(6):
        assert page(client, versions_url(team)).count('<th scope="row" class="num">') == 30
