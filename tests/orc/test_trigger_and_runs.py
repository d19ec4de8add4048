"""`orc trigger --wait`, `orc runs ...` and `orc logs --follow` against the real server:
the exit status says how a run ended, Ctrl-C leaves the run alone and says how to cancel
it, a log is streamed while it grows (across a retry too), and runs can be listed, shown,
cancelled and retried."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest

from tests.orc.support import ORC, OrcServer, orc

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("dev_workflows")]


def trigger(env: dict[str, str], workflow: str, *args: str) -> int:
    done = orc("trigger", workflow, *args, "-o", "json", env=env)
    assert done.code == 0, done
    return int(json.loads(done.out)["id"])


def test_trigger_wait_exits_0_when_the_run_succeeds(dev_env: dict[str, str]) -> None:
    done = orc("trigger", "hello", "-p", "who=orc", "--wait", env=dev_env)
    assert done.code == 0, done
    run = re.match(r"run (\d+) of hello: success in \d+\.\ds \(success 2\)\n$", done.out)
    assert run, done
    progress = done.err.splitlines()
    assert re.fullmatch(
        rf"run {run.group(1)} of hello \(version 1\): (queued|running)", progress[0]
    )
    assert progress[-1] == f"run {run.group(1)} success: success 2"
    shown = orc("runs", "show", run.group(1), "-o", "json", env=dev_env)
    detail = json.loads(shown.out)
    assert detail["params"] == {"who": "orc"}
    assert [(i["task_id"], i["state"]) for i in detail["task_instances"]] == [
        ("greet", "success"),
        ("done", "success"),
    ]
    listed = json.loads(orc("runs", "list", "--state", "success", "-o", "json", env=dev_env).out)
    assert int(run.group(1)) in [r["id"] for r in listed]
    assert {r["state"] for r in listed} == {"success"}


def test_trigger_wait_exits_1_when_the_run_fails(dev_env: dict[str, str]) -> None:
    done = orc("trigger", "failing", "--wait", "-o", "json", env=dev_env)
    assert done.code == 1, done
    run = json.loads(done.out)
    assert (run["state"], run["tasks"]) == ("failed", {"failed": 1})
    retried = orc("runs", "retry", str(run["id"]), "--wait", env=dev_env)
    assert retried.code == 1, retried
    assert f"run {run['id']} of failing: running; cleared fail\n" in retried.err
    assert f"task fail failed: exit code 3; its log: orc logs {run['id']} fail\n" in retried.err
    shown = orc("runs", "show", str(run["id"]), env=dev_env)
    assert f"task fail failed: exit code 3; its log: orc logs {run['id']} fail" in shown.out


def test_ctrl_c_leaves_the_run_going_and_says_how_to_cancel_it(
    server: OrcServer, dev_env: dict[str, str]
) -> None:
    waiting = subprocess.Popen(
        [str(ORC), "--tenant", "dev", "trigger", "sleeper", "--wait"],
        env=dev_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiting.stderr is not None
    first = waiting.stderr.readline()  # the run exists: it was triggered
    run_id = re.match(r"run (\d+) of sleeper", first)
    assert run_id, first
    waiting.send_signal(signal.SIGINT)
    out, err = waiting.communicate(timeout=20)
    assert (waiting.returncode, out) == (130, "")
    assert err.endswith(
        f"interrupted: run {run_id.group(1)} goes on without you; cancel it with: "
        f"orc --tenant dev runs cancel {run_id.group(1)}\n"
    ), err
    assert server.get(f"runs/{run_id.group(1)}/")["state"] in ("queued", "running")
    cancelled = orc("--tenant", "dev", "runs", "cancel", run_id.group(1), env=dev_env)
    assert (cancelled.code, cancelled.out) == (0, f"run {run_id.group(1)} of sleeper: cancelled\n")
    again = orc("runs", "cancel", run_id.group(1), env=dev_env)
    assert again.code == 3
    assert again.err.startswith("error: 409 Conflict: ")
    ended = orc("runs", "wait", run_id.group(1), env=dev_env)
    assert ended.code == 1
    assert ended.out.startswith(f"run {run_id.group(1)} of sleeper: cancelled in "), ended


def test_logs_follow_streams_lines_while_the_task_runs(dev_env: dict[str, str]) -> None:
    run_id = trigger(dev_env, "hello", "-p", "who=follower")
    started = time.monotonic()
    following = subprocess.Popen(
        [str(ORC), "logs", str(run_id), "greet", "--follow"],
        env=dev_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert following.stdout is not None
    arrivals = []
    for line in following.stdout:
        arrivals.append((line, time.monotonic() - started))
    following.wait(timeout=30)
    assert following.returncode == 0
    assert [line for line, _ in arrivals] == [f"hello follower {i}\n" for i in (1, 2, 3, 4)]
    # As the task wrote them (0.3 s apart), not all at once at its end: in two reads at
    # least. The task's log is flushed every 0.5 s and read every 0.3 s, and `orc` itself
    # takes most of a second to start, by which time a sandbox taken from those waiting has
    # run half of the task: the first read can hold two lines.
    assert arrivals[-1][1] - arrivals[0][1] > 0.2, arrivals


def test_logs_follow_goes_on_to_the_next_try(dev_env: dict[str, str]) -> None:
    run_id = trigger(dev_env, "flaky")
    done = orc("logs", str(run_id), "flap", "--follow", env=dev_env, timeout=60)
    assert done.code == 0, done
    assert (done.out, done.err) == ("try 1\ntry 2\n", "--- try 2 ---\n")
    first = orc("logs", str(run_id), "flap", "--try", "1", env=dev_env)
    assert first.out == "try 1\n"


def test_a_repeated_trigger_key_gives_the_first_run_which_others_cannot_see(
    server: OrcServer, dev_env: dict[str, str]
) -> None:
    first = trigger(dev_env, "hello", "--idempotency-key", "ci-job-17")
    assert trigger(dev_env, "hello", "--idempotency-key", "ci-job-17") == first
    outsider = {**dev_env, "ORC_TENANT": "globex", "ORC_TOKEN": server.tokens["globex:owner"]}
    done = orc("runs", "show", str(first), env=outsider)
    assert done.code == 3
    assert done.err.startswith("error: 404 Not Found: "), done


def test_a_mapped_tasks_instances_by_index(dev_env: dict[str, str]) -> None:
    done = orc("trigger", "fanout", "--wait", "-o", "json", env=dev_env)
    assert done.code == 0, done
    run_id = str(json.loads(done.out)["id"])
    shown = orc("runs", "show", run_id, env=dev_env).out.splitlines()
    # In the order they started: the mapped instances (made when `each` was ready, after
    # `after` was) by index, then what depends on them.
    assert [line.split()[:2] for line in shown[7:]] == [
        ["each[0]", "success"],
        ["each[1]", "success"],
        ["after", "success"],
    ]
    second = orc("logs", run_id, "each", "--map-index", "1", env=dev_env)
    assert (second.code, second.out) == (0, "item b\n")
    whole = orc("logs", run_id, "each", env=dev_env)
    assert whole.code == 3
    assert whole.err == (
        f"error: 404 Not Found: task 'each' of run {run_id} is mapped into 2 instances: "
        "name one with --map-index (0 to 1)\n"
    )
