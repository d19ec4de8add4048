"""The runs list, a run's page and a task's page: who may see them, what they show (states,
the graph coloured by state, the task table, a gantt bar per attempt, the log with its
secrets masked), the list's filters and paging, and a pinned number of SQL queries however
many tasks or runs there are. The live parts are in test_run_live.py."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import TaskAttempt, WorkflowRun
from runs.services import trigger_run
from runs.tasktypes.masking import MASK, Masker
from tests.harness import Team
from tests.runs.run_states import (
    failed_run,
    put,
    running_run,
    started_run,
    succeeded_run,
    unscoped_attempts,
    unscoped_runs,
    write_log,
)
from workflows.models import Workflow
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db


def signed_in(client: Client, team: Team, role: str = "viewer") -> Client:
    client.force_login(team.users[role])
    return client


def page(client: Client, url: str, **query: Any) -> str:
    response = client.get(url, query)
    assert response.status_code == 200, response.content[:2000]
    return response.content.decode()


def text_of(html: str) -> str:
    """The page's words without its tags, spaces squeezed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def attempt(run: WorkflowRun, task_id: str, try_number: int = 1) -> TaskAttempt:
    return unscoped_attempts().get(
        task_instance__run=run, task_instance__task_id=task_id, try_number=try_number
    )


def wide_spec(name: str, tasks: int) -> dict[str, Any]:
    """`tasks` noop tasks: t000 first, every other one after it."""
    ids = [f"t{i:03d}" for i in range(tasks)]
    return {
        "name": name,
        "tasks": {
            task_id: {"type": "noop", **({"depends_on": [ids[0]]} if i else {})}
            for i, task_id in enumerate(ids)
        },
    }


def wide_run(team: Team, tasks: int) -> WorkflowRun:
    """A run of `tasks` tasks, half of them done with two tries each, the first running."""
    run = started_run(team, wide_spec(f"wide-{tasks}", tasks))
    for i in range(1, tasks // 2 + 1):
        put(run, f"t{i:03d}", "success", tries=2)
    put(run, "t000", "running")
    return run


def more_runs(workflow: Workflow, count: int, **fields: Any) -> list[WorkflowRun]:
    """`count` runs of the workflow as rows (no tasks), oldest first."""
    base = dict(
        tenant_id=workflow.tenant_id,
        workflow=workflow,
        version_id=workflow.current_version_id,
        state="success",
        trigger_source="api",
        logical_date=timezone.now(),
    )
    rows = [WorkflowRun(**(base | fields)) for _ in range(count)]
    return unscoped_runs().bulk_create(rows)


def workflow_of(run: WorkflowRun) -> Workflow:
    return Workflow.objects.dangerously_unscoped().get(pk=run.workflow_id)


# --- who may see them -------------------------------------------------------------------


def urls(team: Team, run: WorkflowRun) -> list[str]:
    base = f"/t/{team.slug}/runs/"
    return [
        base,
        f"{base}{run.pk}/",
        f"{base}{run.pk}/live/",
        f"{base}{run.pk}/tasks/transform/",
        f"{base}{run.pk}/tasks/transform/log/?try=1",
    ]


def test_it_sends_anonymous_readers_to_sign_in(client: Client, team: Team) -> None:
    run = running_run(team)
    for url in urls(team, run):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next="), url


@pytest.mark.parametrize("role", ["viewer", "operator", "owner"])
def test_every_member_sees_the_run_pages(client: Client, team: Team, role: str) -> None:
    run = running_run(team)
    write_log(attempt(run, "transform"), b"hello\n")
    signed_in(client, team, role)
    for url in urls(team, run):
        assert client.get(url).status_code == 200, url


def test_another_tenants_run_is_not_found(client: Client, team: Team, outsider: Team) -> None:
    theirs = running_run(outsider)
    signed_in(client, team)
    for url in urls(team, theirs):  # their run, under our tenant
        if url != f"/t/{team.slug}/runs/":
            assert client.get(url).status_code == 404, url
    for url in urls(outsider, theirs):  # their tenant: we are not members
        assert client.get(url).status_code == 404, url


def test_unknown_runs_tasks_and_tries_are_not_found(client: Client, team: Team) -> None:
    run = failed_run(team)
    signed_in(client, team)
    base = f"/t/{team.slug}/runs/"
    for url in (
        f"{base}999999/",
        f"{base}99999999999999999999999/",
        f"{base}999999/live/",
        f"{base}{run.pk}/tasks/nope/",
        f"{base}{run.pk}/tasks/transform/?try=3",
        f"{base}{run.pk}/tasks/transform/?try=x",
        f"{base}{run.pk}/tasks/transform/log/?try=3",
        f"{base}{run.pk}/tasks/transform/log/",
        f"{base}{run.pk}/tasks/nope/log/?try=1",
    ):
        assert client.get(url).status_code == 404, url


def test_no_page_names_another_tenants_things(client: Client, team: Team, outsider: Team) -> None:
    ours = failed_run(team)
    theirs = started_run(outsider, wide_spec("globex-secret-plan", 3))
    signed_in(client, team)
    for url in urls(team, ours):
        body = client.get(url).content.decode()
        assert "globex" not in body.lower(), url  # neither their tenant nor their workflow
    listed = page(client, f"/t/{team.slug}/runs/")
    assert f'data-run="{theirs.pk}"' not in listed


# --- the runs list ----------------------------------------------------------------------


def test_it_lists_runs_newest_first_with_their_task_counts(client: Client, team: Team) -> None:
    first = failed_run(team)
    second = succeeded_run(team)
    body = page(signed_in(client, team), f"/t/{team.slug}/runs/")
    assert body.index(f'data-run="{second.pk}"') < body.index(f'data-run="{first.pk}"')
    assert f'href="/t/{team.slug}/runs/{first.pk}/"' in body
    assert f'href="/t/{team.slug}/workflows/etl/"' in body
    row = body.split(f'data-run="{first.pk}"', 1)[1].split("</tr>", 1)[0]
    assert "badge st-failed" in row
    assert "2 ✓ 1 ✗ 2 ⊘" in text_of(row)  # extract, side; transform; load, report
    assert "cli" in row
    assert "by system" in text_of(row)
    second_row = body.split(f'data-run="{second.pk}"', 1)[1].split("</tr>", 1)[0]
    assert "5 ✓" in text_of(second_row)


def test_it_names_who_triggered_a_run(client: Client, team: Team) -> None:
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(
            actor=Actor.cli(), tenant=team.tenant, data=wide_spec("by-hand", 2)
        ).workflow
        actor = Actor(user=team.users["operator"], source="api")
        run = trigger_run(actor=actor, workflow=workflow, params={}).run
    body = page(signed_in(client, team), f"/t/{team.slug}/runs/")
    row = body.split(f'data-run="{run.pk}"', 1)[1].split("</tr>", 1)[0]
    assert "api" in row
    assert f"by {team.users['operator'].username}" in text_of(row)


def test_it_filters_runs_by_workflow_state_and_source(client: Client, team: Team) -> None:
    failed = failed_run(team)
    other = started_run(team, wide_spec("other", 2))
    [scheduled] = more_runs(workflow_of(failed), 1, trigger_source="schedule", state="success")
    signed_in(client, team)
    url = f"/t/{team.slug}/runs/"

    def listed(**query: str) -> set[int]:
        return {int(pk) for pk in re.findall(r'data-run="(\d+)"', page(client, url, **query))}

    assert listed() == {failed.pk, other.pk, scheduled.pk}
    assert listed(workflow="etl") == {failed.pk, scheduled.pk}
    assert listed(workflow="other") == {other.pk}
    assert listed(state="failed") == {failed.pk}
    assert listed(trigger_source="schedule") == {scheduled.pk}
    assert listed(workflow="etl", state="running") == set()
    assert "No runs match these filters" in page(client, url, workflow="nothing-like-it")


def test_it_filters_runs_by_creation_time_read_as_utc(client: Client, team: Team) -> None:
    old = failed_run(team)
    new = succeeded_run(team)
    unscoped_runs().filter(pk=old.pk).update(
        created_at=dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.UTC)
    )
    unscoped_runs().filter(pk=new.pk).update(
        created_at=dt.datetime(2026, 1, 2, 8, 0, tzinfo=dt.UTC)
    )
    signed_in(client, team)
    url = f"/t/{team.slug}/runs/"
    after = page(client, url, created_after="2026-01-01T09:00")
    assert f'data-run="{new.pk}"' in after
    assert f'data-run="{old.pk}"' not in after
    assert 'value="2026-01-01T09:00"' in after  # the form keeps what was asked
    before = page(client, url, created_before="2026-01-01T08:00:01")
    assert f'data-run="{old.pk}"' in before
    assert f'data-run="{new.pk}"' not in before
    between = page(client, url, created_after="2026-01-01T07:00", created_before="2026-01-01T09:00")
    assert re.findall(r'data-run="(\d+)"', between) == [str(old.pk)]


def test_it_names_each_bad_filter(client: Client, team: Team) -> None:
    failed_run(team)
    signed_in(client, team)
    body = page(
        client,
        f"/t/{team.slug}/runs/",
        state="exploded",
        trigger_source="pigeon",
        created_after="yesterday",
        created_before="2026-13-45T99:00",
    )
    errors = body.split('class="errors"', 1)[1].split("</div>", 1)[0]
    for field in ("state", "trigger_source", "created_after", "created_before"):
        assert f'<strong class="mono">{field}</strong>' in errors, field
    assert "&#x27;exploded&#x27; is not one; accepted: queued, running" in errors
    assert "data-run=" not in body  # no list under errors
    body = page(client, f"/t/{team.slug}/runs/", cursor="not-a-cursor")
    assert '<strong class="mono">cursor</strong>' in body


def test_it_pages_through_runs_by_id_keeping_the_filters(client: Client, team: Team) -> None:
    workflow = workflow_of(failed_run(team))
    more_runs(workflow, 54)
    started_run(team, wide_spec("other", 1))  # newest, filtered out
    signed_in(client, team)
    url = f"/t/{team.slug}/runs/"
    first = page(client, url, workflow="etl")
    ids = [int(pk) for pk in re.findall(r'data-run="(\d+)"', first)]
    assert len(ids) == 50
    assert ids == sorted(ids, reverse=True)
    older = re.search(r'href="(\?[^"]*)" rel="next">Older runs', first)
    assert older is not None
    link = older.group(1).replace("&amp;", "&")
    assert "workflow=etl" in link
    assert f"cursor={ids[-1]}" in link
    assert "Newest" not in first
    second = page(client, url + link)
    rest = [int(pk) for pk in re.findall(r'data-run="(\d+)"', second)]
    assert len(rest) == 5
    assert max(rest) < min(ids)
    assert "Older runs" not in second
    newest = re.search(r'href="(\?[^"]*)">« Newest', second)
    assert newest is not None
    assert newest.group(1) == "?workflow=etl"


def test_runs_list_count_of_queries_does_not_grow(
    client: Client, team: Team, django_assert_num_queries: Any
) -> None:
    run = wide_run(team, 3)
    signed_in(client, team)
    url = f"/t/{team.slug}/runs/"
    client.get(url)
    with django_assert_num_queries(5):  # session, user, memberships, runs, their task counts
        client.get(url)
    for _ in range(39):
        wide_run(team, 3)
    more_runs(workflow_of(run), 20)
    with django_assert_num_queries(5):
        assert page(client, url).count("data-run=") == 50


# --- a run ------------------------------------------------------------------------------


def test_it_shows_the_runs_facts_and_its_neighbours(client: Client, team: Team) -> None:
    before = failed_run(team)
    with tenant_scope([team.tenant]):
        actor = Actor(user=team.users["operator"], source="api")
        workflow = Workflow.objects.get(pk=before.workflow_id)
        run = trigger_run(actor=actor, workflow=workflow, params={}).run
    unscoped_runs().filter(pk=run.pk).update(params={"day": "monday"})  # as if declared
    other = started_run(team, wide_spec("other", 1))  # another workflow: not a neighbour
    after = succeeded_run(team)
    body = page(signed_in(client, team), f"/t/{team.slug}/runs/{run.pk}/")
    assert f"Run #{run.pk}" in body
    assert f'href="/t/{team.slug}/workflows/etl/"' in body
    assert re.search(r'id="run-state"[^>]*><span class="badge st-(queued|running)"', body)
    assert "version 1" in text_of(body)
    assert f"from api by {team.users['operator'].username}" in text_of(body)
    assert "&quot;day&quot;: &quot;monday&quot;" in body  # the params, as JSON
    assert f'rel="prev" href="/t/{team.slug}/runs/{before.pk}/"' in body
    assert f'rel="next" href="/t/{team.slug}/runs/{after.pk}/"' in body
    assert f"/runs/{other.pk}/" not in body
    first = page(client, f"/t/{team.slug}/runs/{before.pk}/")
    assert 'rel="prev"' not in first
    assert f'rel="next" href="/t/{team.slug}/runs/{run.pk}/"' in first


def test_it_draws_the_graph_coloured_by_task_state(client: Client, team: Team) -> None:
    run = running_run(team)
    body = page(signed_in(client, team), f"/t/{team.slug}/runs/{run.pk}/")
    graph = body.split('<svg xmlns="http://www.w3.org/2000/svg" class="dag"', 1)[1]
    graph = graph.split("</svg>\n", 1)[0]
    expected = {
        "extract": "success",
        "side": "queued",
        "transform": "running",
        "load": "pending",
        "report": "pending",
    }
    for task_id, state in expected.items():
        node = re.search(
            rf'<a href="/t/{team.slug}/runs/{run.pk}/tasks/{task_id}/"><g class="node st-{state}"',
            graph,
        )
        assert node is not None, task_id
    assert graph.count('class="edge"') == 4


def test_it_lists_the_tasks_with_their_tries_and_results(client: Client, team: Team) -> None:
    run = failed_run(team)
    body = page(signed_in(client, team), f"/t/{team.slug}/runs/{run.pk}/")
    table = body.split('<table id="run-tasks">', 1)[1].split("</table>", 1)[0]
    rows = dict(re.findall(r'<tr data-task="([^"]+)">(.*?)</tr>', table, re.S))
    assert list(rows) == ["extract", "side", "transform", "load", "report"]  # graph order
    assert '<td class="state"><span class="badge st-failed">' in rows["transform"]
    assert ">2/2<" in rows["transform"]  # two tries of two
    assert '<td class="state"><span class="badge st-upstream_failed">' in rows["load"]
    assert "{&quot;rows&quot;: 3}" in rows["extract"]  # the result's preview
    assert f'href="/t/{team.slug}/runs/{run.pk}/tasks/transform/"' in rows["transform"]


def test_it_truncates_a_long_result_in_the_table(client: Client, team: Team) -> None:
    run = succeeded_run(team)
    with tenant_scope([team.tenant]):
        run.task_instances.filter(task_id="load").update(result={"text": "x" * 500})
    body = page(signed_in(client, team), f"/t/{team.slug}/runs/{run.pk}/")
    row = body.split('<tr data-task="load">', 1)[1].split("</tr>", 1)[0]
    assert "x" * 60 in row
    assert "x" * 100 not in row
    assert "…" in row


def test_its_gantt_chart_has_a_bar_for_every_attempt(client: Client, team: Team) -> None:
    run = failed_run(team)  # extract 1 try, side 1, transform 2; load and report none
    body = page(signed_in(client, team), f"/t/{team.slug}/runs/{run.pk}/")
    chart = body.split('class="gantt"', 1)[1].split("</svg>", 1)[0]
    bars = re.findall(r'<rect class="bar bar-running st-(\w+)"[^>]*><title>([^<]*)</title>', chart)
    assert sorted((title.split(" ·")[0], state) for state, title in bars) == [
        ("extract", "success"),
        ("side", "success"),
        ("transform", "failed"),
        ("transform", "failed"),
    ]
    assert "transform · try 2" in chart
    assert "transform · try 1" in chart


def test_a_run_waiting_for_a_slot_shows_its_tasks_pending(client: Client, team: Team) -> None:
    run = started_run(team)
    unscoped_runs().filter(pk=run.pk).update(state="queued", started_at=None)
    with tenant_scope([team.tenant]):
        run.task_instances.update(state="pending", try_number=0, queued_at=None)
    body = page(signed_in(client, team), f"/t/{team.slug}/runs/{run.pk}/")
    assert "Nothing ran yet." in body
    assert body.count('<td class="state"><span class="badge st-pending">') == 5


def test_run_page_count_of_queries_does_not_grow_with_its_tasks(
    client: Client, team: Team, django_assert_num_queries: Any
) -> None:
    small, large = wide_run(team, 3), wide_run(team, 40)
    signed_in(client, team)
    for run, tasks in ((small, 3), (large, 40)):
        url = f"/t/{team.slug}/runs/{run.pk}/"
        client.get(url)  # the version's graph is read once per process
        # session, user, memberships, the run, its neighbours, its tasks, their attempts
        with django_assert_num_queries(7):
            body = page(client, url)
        assert body.count("<tr data-task=") == tasks


# --- a task -----------------------------------------------------------------------------


def test_it_shows_a_tasks_facts_attempts_and_latest_log(client: Client, team: Team) -> None:
    run = failed_run(team)
    TaskAttempt.objects.dangerously_unscoped().filter(pk=attempt(run, "transform", 2).pk).update(
        error="Traceback (most recent call last):\n  line 1\n  line 2\nValueError: no rows",
        rendered={"type": "shell", "command": ["load.sh", "--day", "2026-01-01"]},
    )
    write_log(attempt(run, "transform", 1), b"first try\n")
    write_log(attempt(run, "transform", 2), b"second try <b>bold</b>\n")
    body = page(signed_in(client, team), f"/t/{team.slug}/runs/{run.pk}/tasks/transform/")
    facts = text_of(body.split('id="task-facts-h"', 1)[1].split("</section>", 1)[0])
    assert "Type shell" in facts
    assert "Trigger rule all_success" in facts
    assert "Tries 2 of 2" in facts
    assert f'href="/t/{team.slug}/runs/{run.pk}/"' in body  # back to the run
    attempts = body.split('<table id="attempts">', 1)[1].split("</table>", 1)[0]
    assert attempts.count("<tr data-try=") == 2
    assert 'href="?try=1"' in attempts
    assert 'href="?try=2"' in attempts
    assert "worker-1" in attempts
    assert "pid 1002" in attempts
    assert "Traceback (most recent call last):<br>  line 1<br>  line 2<br>…" in attempts
    assert "ValueError" not in attempts  # the first lines only
    assert "&quot;load.sh&quot;" in body  # what the try ran
    log = body.split('<pre class="log" id="log" data-follow', 1)[1].split("</pre>", 1)[0]
    assert "second try &lt;b&gt;bold&lt;/b&gt;" in log  # escaped
    assert "log-follow" not in log  # finished: nothing to follow
    assert "finished: failed" in body


def test_it_shows_the_log_of_the_try_asked_for(client: Client, team: Team) -> None:
    run = failed_run(team)
    write_log(attempt(run, "transform", 1), b"first try\n")
    write_log(attempt(run, "transform", 2), b"second try\n")
    body = page(signed_in(client, team), f"/t/{team.slug}/runs/{run.pk}/tasks/transform/?try=1")
    log = body.split('id="log" data-follow', 1)[1].split("</pre>", 1)[0]
    assert "first try" in log
    assert "second try" not in log
    assert "Log of try 1" in body
    assert '<tr data-try="1" aria-current="true">' in body


def test_its_log_has_the_secrets_masked(client: Client, team: Team) -> None:
    run = running_run(team)
    masker = Masker()
    masker.add("hunter2-very-secret")  # as the executor masks what the task used
    write_log(attempt(run, "transform"), masker.mask_bytes(b"password=hunter2-very-secret\n"))
    body = page(signed_in(client, team), f"/t/{team.slug}/runs/{run.pk}/tasks/transform/")
    assert f"password={MASK}" in body
    assert "hunter2" not in body


def test_it_opens_a_large_log_at_its_end(client: Client, team: Team) -> None:
    run = succeeded_run(team)
    lines = [f"line {i:06d} ".ljust(99, ".").encode() + b"\n" for i in range(4000)]  # 400 kB
    write_log(attempt(run, "extract"), *(b"".join(lines[i : i + 500]) for i in range(0, 4000, 500)))
    signed_in(client, team)
    url = f"/t/{team.slug}/runs/{run.pk}/tasks/extract/"
    body = page(client, url)
    log = body.split('id="log" data-follow tabindex="0">', 1)[1].split("</pre>", 1)[0]
    assert log.startswith("line 00")  # a whole first line
    assert log.endswith("line 003999 " + "." * 87 + "\n")
    assert "line 000000" not in log
    assert len(log.encode()) <= 256 * 1024
    assert 'href="?try=1&amp;offset=0">Show from the start' in body
    start = page(client, url, **{"try": "1", "offset": "0"})
    log = start.split('tabindex="0">', 1)[1].split("</pre>", 1)[0]
    assert log.startswith("line 000000")
    assert "line 003999" not in log
    more = re.search(r'href="\?try=1&amp;offset=(\d+)" rel="next"', start)
    assert more is not None
    assert int(more.group(1)) == 256 * 1024


def test_a_task_not_run_yet_has_no_log(client: Client, team: Team) -> None:
    run = running_run(team)
    body = page(signed_in(client, team), f"/t/{team.slug}/runs/{run.pk}/tasks/load/")
    assert "Not run yet." in body
    assert 'id="log"' not in body


def test_task_page_count_of_queries_does_not_grow(
    client: Client, team: Team, django_assert_num_queries: Any
) -> None:
    small, large = wide_run(team, 3), wide_run(team, 40)
    signed_in(client, team)
    for run in (small, large):
        write_log(attempt(run, "t001", 2), b"a log\n" * 100)
        url = f"/t/{team.slug}/runs/{run.pk}/tasks/t001/"
        client.get(url)
        # session, user, memberships, the run, the task, its attempts, and the log:
        # the attempt, its chunk at the offset, the chunks after it
        with django_assert_num_queries(9):
            assert "a log" in page(client, url)
