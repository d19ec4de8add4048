"""Following a task's log over REST and GraphQL: byte offsets across the stored chunks,
pages that never end inside a UTF-8 character (so a reader gets every byte exactly once),
`running` while the attempt runs, one attempt per `try`. Viewers read; other tenants see
nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from tests.harness import Team, assert_problem, audit_count, gql, send
from tests.runs.run_states import failed_run, running_run, write_log

LOG = """
query($t: String!, $run: Int!, $task: String!, $try: Int, $offset: Int!, $limit: Int!) {
  taskLog(tenant: $t, run: $run, taskId: $task, tryNumber: $try, offset: $offset,
          limit: $limit) {
    tryNumber offset nextOffset text running totalBytes capBytes
  }
}"""


def log_url(team: Team, run: WorkflowRun, task_id: str = "transform", query: str = "") -> str:
    return f"/api/v1/tenants/{team.slug}/runs/{run.pk}/tasks/{task_id}/logs/{query}"


def read(team: Team, run: WorkflowRun, query: str = "", task_id: str = "transform") -> Any:
    response = send(team.tokens["viewer"], "GET", log_url(team, run, task_id, query))
    assert response.status_code == 200, response.content
    return response.json()


def attempt(run: WorkflowRun, task_id: str = "transform", try_number: int = 1) -> TaskAttempt:
    return TaskAttempt.objects.dangerously_unscoped().get(
        task_instance__run=run, task_instance__task_id=task_id, try_number=try_number
    )


def finish(run: WorkflowRun, task_id: str = "transform") -> None:
    TaskAttempt.objects.dangerously_unscoped().filter(
        task_instance__run=run, task_instance__task_id=task_id
    ).update(state="success")
    TaskInstance.objects.dangerously_unscoped().filter(run=run, task_id=task_id).update(
        state="success"
    )


def follow(team: Team, run: WorkflowRun, limit: int) -> tuple[bytes, list[int]]:
    """Read the whole log from offset 0, page by page; the bytes and the page offsets."""
    data, offsets, offset = b"", [], 0
    for _ in range(200):
        page = read(team, run, f"?offset={offset}&limit={limit}")
        assert page["offset"] == offset
        if page["next_offset"] == offset:
            break
        offsets.append(offset)
        data += page["text"].encode()
        assert page["next_offset"] == offset + len(page["text"].encode())
        offset = page["next_offset"]
    return data, offsets


@pytest.fixture
def run(team: Team) -> WorkflowRun:
    """transform is running with a 16-byte log stored in three chunks."""
    run = running_run(team)
    write_log(attempt(run), b"hello ", b"world", b"\nbye\n")
    return run


# --- pages -------------------------------------------------------------------------------


def test_it_returns_the_whole_log_by_default(team: Team, run: WorkflowRun) -> None:
    page = read(team, run)
    assert page == {
        "try_number": 1,
        "offset": 0,
        "next_offset": 16,
        "text": "hello world\nbye\n",
        "running": True,
        "total_bytes": 16,
        "cap_bytes": settings.TASK_LOG_MAX_BYTES,
    }


@pytest.mark.parametrize(
    ("offset", "limit", "text"),
    [
        (0, 6, "hello "),
        (4, 5, "o wor"),
        (3, 10, "lo world\nb"),
        (6, 5, "world"),
        (10, 6, "d\nbye\n"),
        (15, 100, "\n"),
        (16, 10, ""),
        (40, 10, ""),
    ],
    ids=[
        "first-chunk",
        "across-a-boundary",
        "across-two-boundaries",
        "one-chunk-exactly",
        "to-the-end",
        "past-the-end",
        "at-the-end",
        "beyond-the-end",
    ],
)
def test_it_slices_bytes_across_chunks(
    team: Team, run: WorkflowRun, offset: int, limit: int, text: str
) -> None:
    page = read(team, run, f"?offset={offset}&limit={limit}")
    assert page["text"] == text
    assert page["offset"] == offset
    assert page["next_offset"] == offset + len(text.encode())
    assert page["total_bytes"] == 16


def test_it_reads_running_until_the_attempt_ends(team: Team, run: WorkflowRun) -> None:
    assert read(team, run, "?offset=16")["running"] is True
    write_log(attempt(run), b"more\n")
    page = read(team, run, "?offset=16")
    assert (page["text"], page["next_offset"], page["running"]) == ("more\n", 21, True)
    finish(run)
    page = read(team, run, "?offset=21")
    assert (page["text"], page["next_offset"], page["running"]) == ("", 21, False)
    assert read(team, run)["text"] == "hello world\nbye\nmore\n"


# --- whole characters --------------------------------------------------------------------

# 1-, 2-, 3- and 4-byte characters, stored in chunks that cut some of them in two.
TEXT = "a\u00e9\u20acb\U0001f600c\u00e9\u00e9\u20ac\U0001f600\U0001f600d"
DATA = TEXT.encode()
CHUNKS = (DATA[:2], DATA[2:5], DATA[5:11], DATA[11:12], DATA[12:])


def test_it_never_cuts_a_character_at_the_limit(team: Team) -> None:
    run = running_run(team)
    write_log(attempt(run), *CHUNKS)
    # "a" is 1 byte, "é" 2 (bytes 1-2), "€" 3 (bytes 3-5): a limit of 4 ends inside "€".
    page = read(team, run, "?offset=0&limit=4")
    assert (page["text"], page["next_offset"]) == ("a\u00e9", 3)
    page = read(team, run, "?offset=3&limit=4")
    assert (page["text"], page["next_offset"]) == ("\u20acb", 7)
    page = read(team, run, "?offset=7&limit=3")  # the emoji is 4 bytes
    assert page["text"] == "\U0001f600"
    assert page["next_offset"] == 11


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 7, 64])
def test_it_reassembles_the_exact_bytes_page_by_page(team: Team, limit: int) -> None:
    run = running_run(team)
    write_log(attempt(run), *CHUNKS)
    data, offsets = follow(team, run, limit)
    assert data == DATA
    # Every page starts on a character: decoding from any page offset works.
    for offset in offsets:
        DATA[offset:].decode()


def test_it_returns_a_character_cut_by_the_end_of_a_finished_log(team: Team) -> None:
    run = running_run(team)
    write_log(attempt(run), b"ok ", "\u20ac".encode()[:2])
    page = read(team, run, "?offset=0")
    assert (page["text"], page["next_offset"]) == ("ok ", 3)  # the rest may still come
    finish(run)
    page = read(team, run, "?offset=3")
    assert (page["text"], page["next_offset"]) == ("\ufffd", 5)


def test_it_replaces_bytes_that_are_not_utf8_and_moves_on(team: Team) -> None:
    run = running_run(team)
    write_log(attempt(run), b"a\xffb\xfe\xfdc")
    page = read(team, run)
    assert (page["text"], page["next_offset"]) == ("a\ufffdb\ufffd\ufffdc", 6)


# --- tries -------------------------------------------------------------------------------


def test_it_reads_the_attempt_of_the_try_asked_and_the_latest_by_default(team: Team) -> None:
    run = failed_run(team)  # transform failed twice
    write_log(attempt(run, try_number=1), b"first try\n")
    write_log(attempt(run, try_number=2), b"second ", b"try\n")
    latest = read(team, run)
    assert (latest["try_number"], latest["text"], latest["running"]) == (2, "second try\n", False)
    first = read(team, run, "?try=1")
    assert (first["try_number"], first["text"], first["total_bytes"]) == (1, "first try\n", 10)
    assert read(team, run, "?try=2&offset=7")["text"] == "try\n"


def test_it_answers_404_for_an_unknown_try(team: Team, run: WorkflowRun) -> None:
    problem = assert_problem(
        send(team.tokens["viewer"], "GET", log_url(team, run, query="?try=9")), 404
    )
    assert "try 9" in problem["detail"]


@pytest.mark.parametrize("task_id", ["load", "side"], ids=["pending", "queued"])
def test_it_reads_an_empty_running_log_before_the_first_attempt(
    team: Team, run: WorkflowRun, task_id: str
) -> None:
    page = read(team, run, task_id=task_id)
    assert page["try_number"] is None
    assert (page["text"], page["offset"], page["next_offset"]) == ("", 0, 0)
    assert (page["running"], page["total_bytes"]) == (True, 0)


def test_it_reads_no_log_of_a_task_that_never_ran_and_never_will(team: Team) -> None:
    run = failed_run(team)
    page = read(team, run, task_id="load")  # upstream_failed
    assert (page["try_number"], page["text"], page["running"]) == (None, "", False)


def test_it_reads_an_attempt_without_output(team: Team) -> None:
    run = running_run(team)
    page = read(team, run)
    assert (page["try_number"], page["text"], page["next_offset"], page["running"]) == (
        1,
        "",
        0,
        True,
    )


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("?offset=-1", "offset"),
        ("?offset=abc", "offset"),
        ("?offset=1.5", "offset"),
        ("?limit=-5", "limit"),
        ("?limit=lots", "limit"),
        ("?try=first", "try"),
        ("?try=-1", "try"),
    ],
)
def test_it_refuses_a_bad_parameter_with_its_path(
    team: Team, run: WorkflowRun, query: str, path: str
) -> None:
    response = send(team.tokens["viewer"], "GET", log_url(team, run, query=query))
    assert_problem(response, 400, path=path)


def test_it_caps_a_page_at_one_mebibyte(team: Team) -> None:
    run = running_run(team)
    write_log(attempt(run), b"x" * (1024 * 1024), b"y" * 10)
    page = read(team, run, "?limit=99999999")
    assert page["next_offset"] == 1024 * 1024
    assert page["total_bytes"] == 1024 * 1024 + 10


def test_it_answers_404_for_an_unknown_task(team: Team, run: WorkflowRun) -> None:
    assert_problem(send(team.tokens["viewer"], "GET", log_url(team, run, "nope")), 404)


def test_it_does_not_audit_reading_a_log(team: Team, run: WorkflowRun) -> None:
    count = audit_count(team.tenant)
    read(team, run)
    assert audit_count(team.tenant) == count


def test_it_hides_another_tenants_log(team: Team, outsider: Team) -> None:
    theirs = running_run(outsider)
    write_log(attempt(theirs), b"secret\n")
    mine = team.tokens["owner"]
    for tenant in (team, outsider):
        problem = assert_problem(send(mine, "GET", log_url(tenant, theirs)), 404)
        assert "secret" not in str(problem)


# --- GraphQL -----------------------------------------------------------------------------


def gql_log(team: Team, run: WorkflowRun, **variables: Any) -> Any:
    defaults = {"t": team.slug, "run": run.pk, "task": "transform", "offset": 0, "limit": 1024}
    return gql(team.tokens["viewer"], LOG, {**defaults, **variables}).json()


def test_it_reads_a_log_page_over_graphql(team: Team, run: WorkflowRun) -> None:
    body = gql_log(team, run, offset=4, limit=5)
    assert "errors" not in body, body
    assert body["data"]["taskLog"] == {
        "tryNumber": 1,
        "offset": 4,
        "nextOffset": 9,
        "text": "o wor",
        "running": True,
        "totalBytes": 16,
        "capBytes": settings.TASK_LOG_MAX_BYTES,
    }


def test_it_never_cuts_a_character_over_graphql(team: Team) -> None:
    run = running_run(team)
    write_log(attempt(run), *CHUNKS)
    page = gql_log(team, run, offset=3, limit=4)["data"]["taskLog"]
    assert (page["text"], page["nextOffset"]) == ("\u20acb", 7)


def test_it_reads_a_try_over_graphql_and_not_an_unknown_one(team: Team) -> None:
    run = failed_run(team)
    write_log(attempt(run, try_number=1), b"first\n")
    page = gql_log(team, run, **{"try": 1})["data"]["taskLog"]
    assert (page["tryNumber"], page["text"], page["running"]) == (1, "first\n", False)
    body = gql_log(team, run, **{"try": 7})
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_it_hides_another_tenants_log_over_graphql(team: Team, outsider: Team) -> None:
    theirs = running_run(outsider)
    write_log(attempt(theirs), b"secret\n")
    for slug in (team.slug, outsider.slug):
        body = gql(
            team.tokens["owner"],
            LOG,
            {"t": slug, "run": theirs.pk, "task": "transform", "offset": 0, "limit": 10},
        ).json()
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
