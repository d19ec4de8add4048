"""The live parts of the run pages: the run's part (graph, tasks, gantt) polls itself every
2 s with the fingerprint of what it shows and is answered 204 until something moved, then
re-rendered with the header's state swapped in out of band, and no longer polls once the
run has finished; a running attempt's log is followed from the byte the page has, 204 while
nothing was written, then the new text and a follower, and no follower once it finished.
Each answer costs a pinned number of queries, however many tasks the run has."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from portal.views.runs import LIVE_CLOCK_SECONDS, LOG_WINDOW, live_fingerprint
from runs.models import TaskAttempt, WorkflowRun
from tests.harness import Team
from tests.runs.run_states import (
    put,
    running_run,
    started_run,
    unscoped_attempts,
    unscoped_instances,
    unscoped_runs,
    write_log,
)

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def signed_in(client: Client, team: Team) -> Client:
    client.force_login(team.users["viewer"])
    return client


def waiting_run(team: Team) -> WorkflowRun:
    """A running run where nothing is queued or running yet: extract waits for a slot."""
    run = started_run(team)
    put(run, "extract", "scheduled")
    return run


def poll_of(body: str) -> str | None:
    """The URL the run's live part polls, or None when it does not poll."""
    div = re.search(r'<div id="run-live"([^>]*)>', body)
    assert div is not None, body[:500]
    attributes = div.group(1)
    if "hx-trigger" not in attributes:
        return None
    assert 'hx-trigger="every 2s" hx-swap="outerHTML"' in attributes
    found = re.search(r'hx-get="([^"]+)"', attributes)
    assert found is not None
    return found.group(1).replace("&amp;", "&")


def finish(run: WorkflowRun, state: str = "success") -> None:
    """Every task and attempt of the run ends in `state`, and so does the run."""
    now = timezone.now()
    unscoped_attempts().filter(task_instance__run=run).update(state=state, ended_at=now)
    unscoped_instances().filter(run=run).update(state=state, ended_at=now)
    unscoped_runs().filter(pk=run.pk).update(state=state, ended_at=now)


# --- the run's part ---------------------------------------------------------------------


def test_the_run_page_polls_its_live_part_while_the_run_is_active(
    client: Client, team: Team
) -> None:
    run = waiting_run(team)
    body = signed_in(client, team).get(f"/t/{team.slug}/runs/{run.pk}/").content.decode()
    url = poll_of(body)
    assert url is not None
    assert re.fullmatch(rf"/t/{team.slug}/runs/{run.pk}/live/\?seen=[0-9a-f]{{16}}", url)
    assert "hx-swap-oob" not in body  # the page renders the part in place, no swap


def test_its_live_part_answers_204_until_a_task_changes(client: Client, team: Team) -> None:
    run = waiting_run(team)
    signed_in(client, team)
    url = poll_of(client.get(f"/t/{team.slug}/runs/{run.pk}/").content.decode())
    assert url is not None
    for _ in range(2):
        same = client.get(url, headers=HX)
        assert same.status_code == 204
        assert same.content == b""
        assert same["Cache-Control"] == "no-store"
    put(run, "extract", "running")
    changed = client.get(url, headers=HX)
    assert changed.status_code == 200
    body = changed.content.decode()
    assert body.startswith('<div id="run-live"')
    assert "<html" not in body
    row = body.split('<tr data-task="extract">', 1)[1].split("</tr>", 1)[0]
    assert '<td class="state"><span class="badge st-running">' in row
    assert 'class="node st-running"' in body  # the graph
    assert 'class="bar bar-running st-running"' in body  # the gantt chart
    again = poll_of(body)
    assert again is not None
    assert again != url
    # The header's state and times come along, swapped in out of band.
    assert re.search(r'<span id="run-state" role="status" hx-swap-oob="true">', body)
    assert '<dl class="facts" id="run-timing" hx-swap-oob="true">' in body


def test_a_new_try_of_a_task_changes_the_part(client: Client, team: Team) -> None:
    run = running_run(team)
    signed_in(client, team)
    url = f"/t/{team.slug}/runs/{run.pk}/live/"
    seen = poll_of(client.get(url, headers=HX).content.decode())
    assert seen is not None
    unscoped_attempts().filter(task_instance__run=run, task_instance__task_id="transform").update(
        state="failed", ended_at=timezone.now()
    )
    unscoped_instances().filter(run=run, task_id="transform").update(state="up_for_retry")
    body = client.get(seen, headers=HX).content.decode()
    row = body.split('<tr data-task="transform">', 1)[1].split("</tr>", 1)[0]
    assert "badge st-up_for_retry" in row
    assert 'class="bar bar-running st-failed"' in body


def test_a_finished_run_stops_polling(client: Client, team: Team) -> None:
    run = running_run(team)
    signed_in(client, team)
    url = poll_of(client.get(f"/t/{team.slug}/runs/{run.pk}/").content.decode())
    assert url is not None
    finish(run)
    body = client.get(url, headers=HX).content.decode()
    assert poll_of(body) is None  # no hx-trigger: htmx stops asking
    assert "hx-get" not in body.split(">", 1)[0]
    state = body.split('<span id="run-state"', 1)[1].split("</span></span>", 1)[0]
    assert 'hx-swap-oob="true"' in state
    assert "badge st-success" in state
    assert body.count("badge st-success") >= 6  # the header and the five tasks
    page = client.get(f"/t/{team.slug}/runs/{run.pk}/").content.decode()
    assert poll_of(page) is None
    assert "hx-trigger" not in page


def test_the_fingerprint_moves_with_the_clock_only_while_a_task_is_open() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    later = now + dt.timedelta(seconds=LIVE_CLOCK_SECONDS)
    waiting = [("a", "success", 1, 1), ("b", "pending", 0, 0)]
    running = [("a", "success", 1, 1), ("b", "running", 1, 1)]
    assert live_fingerprint("running", waiting, now) == live_fingerprint("running", waiting, later)
    assert live_fingerprint("running", running, now) != live_fingerprint("running", running, later)
    assert live_fingerprint("running", running, now) == live_fingerprint(
        "running", running, now + dt.timedelta(seconds=LIVE_CLOCK_SECONDS - 1)
    )
    # What is compared: the run's state, and each task's state, try and attempts.
    assert live_fingerprint("running", waiting, now) != live_fingerprint("failed", waiting, now)
    assert live_fingerprint("running", waiting, now) != live_fingerprint(
        "running", [("a", "success", 1, 2), ("b", "pending", 0, 0)], now
    )
    assert live_fingerprint("running", waiting, now) == live_fingerprint(
        "running", list(reversed(waiting)), now
    )


def wide_run(team: Team, tasks: int) -> WorkflowRun:
    """`tasks` tasks after one root that is scheduled; half of them with two tries."""
    ids = [f"t{i:03d}" for i in range(tasks)]
    spec = {
        "name": f"wide-{tasks}",
        "tasks": {
            t: {"type": "noop", **({"depends_on": ["t000"]} if i else {})}
            for i, t in enumerate(ids)
        },
    }
    run = started_run(team, spec)
    put(run, "t000", "scheduled")
    for task_id in ids[1 : tasks // 2 + 1]:
        put(run, task_id, "success", tries=2)
    return run


def test_live_part_count_of_queries_does_not_grow_with_the_tasks(
    client: Client, team: Team, django_assert_num_queries: Any
) -> None:
    signed_in(client, team)
    for tasks in (3, 40):
        run = wide_run(team, tasks)
        url = poll_of(client.get(f"/t/{team.slug}/runs/{run.pk}/").content.decode())
        assert url is not None
        with django_assert_num_queries(4):  # session, user, memberships, the run's progress
            assert client.get(url, headers=HX).status_code == 204
        put(run, "t000", "running")
        # ... then the run, its tasks and their attempts, read again to draw the part
        with django_assert_num_queries(7):
            body = client.get(url, headers=HX).content.decode()
        assert body.count("<tr data-task=") == tasks


# --- the log ----------------------------------------------------------------------------


def transform_attempt(run: WorkflowRun, try_number: int = 1) -> TaskAttempt:
    return unscoped_attempts().get(
        task_instance__run=run, task_instance__task_id="transform", try_number=try_number
    )


def follower_of(body: str) -> str | None:
    """The URL the log's follower polls, or None when there is no follower."""
    found = re.search(
        r'<span id="log-follow" hx-get="([^"]+)" hx-trigger="every 1s" hx-swap="outerHTML">'
        r"</span>",
        body,
    )
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.fixture
def followed(team: Team) -> WorkflowRun:
    """transform is running, with 16 bytes of log written."""
    run = running_run(team)
    write_log(transform_attempt(run), b"hello ", b"world", b"\nbye\n")
    return run


def test_a_running_attempts_log_ends_with_a_follower(
    client: Client, team: Team, followed: WorkflowRun
) -> None:
    url = f"/t/{team.slug}/runs/{followed.pk}/tasks/transform/"
    body = signed_in(client, team).get(url).content.decode()
    log = body.split('<pre class="log" id="log" data-follow tabindex="0">', 1)[1]
    log = log.split("</pre>", 1)[0]
    assert log.startswith('hello world\nbye\n<span id="log-follow"')
    assert follower_of(log) == f"{url}log/?try=1&offset=16"
    assert "running: following the log live" in body


def test_the_follower_gets_204_until_new_bytes_then_the_text(
    client: Client, team: Team, followed: WorkflowRun
) -> None:
    signed_in(client, team)
    url = f"/t/{team.slug}/runs/{followed.pk}/tasks/transform/log/?try=1&offset=16"
    for _ in range(2):
        nothing = client.get(url, headers=HX)
        assert nothing.status_code == 204
        assert nothing.content == b""
    write_log(transform_attempt(followed), b"more <b>\n")
    part = client.get(url, headers=HX)
    assert part.status_code == 200
    body = part.content.decode()
    follower = follower_of(body)
    assert follower is not None
    assert follower.endswith("/log/?try=1&offset=25")
    assert body == "more &lt;b&gt;\n" + body[len("more &lt;b&gt;\n") :]  # text first, escaped
    assert body.endswith("</span>")  # nothing after the follower: no stray newline
    assert "log-status" not in body
    assert client.get(follower, headers=HX).status_code == 204


def test_the_follower_stops_once_the_attempt_has_finished(
    client: Client, team: Team, followed: WorkflowRun
) -> None:
    signed_in(client, team)
    url = f"/t/{team.slug}/runs/{followed.pk}/tasks/transform/log/?try=1&offset=16"
    write_log(transform_attempt(followed), b"last words\n")
    finish(followed)
    body = client.get(url, headers=HX).content.decode()
    assert body.startswith("last words\n")
    assert follower_of(body) is None
    assert (
        '<p id="log-status" class="log-status" role="status" hx-swap-oob="true">'
        "finished: success</p>"
    ) in body
    # Asked again from the end: nothing more, still no follower.
    end = client.get(url.replace("offset=16", "offset=27"), headers=HX)
    assert end.status_code == 200
    assert follower_of(end.content.decode()) is None
    assert "finished: success" in end.content.decode()
    page = client.get(f"/t/{team.slug}/runs/{followed.pk}/tasks/transform/").content.decode()
    assert follower_of(page) is None
    assert "finished: success" in page


def test_the_follower_reads_a_large_backlog_in_windows(
    client: Client, team: Team, followed: WorkflowRun
) -> None:
    signed_in(client, team)
    write_log(transform_attempt(followed), b"x" * (LOG_WINDOW + 1000))
    finish(followed, "failed")
    url = f"/t/{team.slug}/runs/{followed.pk}/tasks/transform/log/?try=1&offset=16"
    first = client.get(url, headers=HX).content.decode()
    follower = follower_of(first)
    assert first.startswith("x" * LOG_WINDOW)
    assert "x" * (LOG_WINDOW + 1) not in first
    assert follower is not None
    assert follower.endswith(f"offset={16 + LOG_WINDOW}")
    rest = client.get(follower, headers=HX).content.decode()
    assert rest.startswith("x" * 1000)
    assert follower_of(rest) is None
    assert "finished: failed" in rest


def test_an_earlier_window_of_a_running_log_pages_instead_of_following(
    client: Client, team: Team, followed: WorkflowRun
) -> None:
    write_log(transform_attempt(followed), b"y" * LOG_WINDOW)
    url = f"/t/{team.slug}/runs/{followed.pk}/tasks/transform/"
    body = signed_in(client, team).get(url, {"try": "1", "offset": "0"}).content.decode()
    assert follower_of(body) is None
    assert f'href="?try=1&amp;offset={LOG_WINDOW}" rel="next"' in body
    tail = client.get(url).content.decode()
    assert follower_of(tail) == f"{url}log/?try=1&offset={16 + LOG_WINDOW}"


def test_log_part_count_of_queries_is_pinned(
    client: Client, team: Team, followed: WorkflowRun, django_assert_num_queries: Any
) -> None:
    signed_in(client, team)
    url = f"/t/{team.slug}/runs/{followed.pk}/tasks/transform/log/?try=1&offset=16"
    client.get(url)
    with django_assert_num_queries(4):  # session, user, memberships, the attempt
        assert client.get(url, headers=HX).status_code == 204
    write_log(transform_attempt(followed), b"more\n")
    # ... then the log read: its attempt, the chunk at the offset, the chunks after it
    with django_assert_num_queries(7):
        assert client.get(url, headers=HX).content.decode().startswith("more\n")
