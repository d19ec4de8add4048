"""How `orc` fails (docs/cli.md, "Exit codes"): the server's problem with the paths of
its field errors, and an exit code per kind of failure: 2 usage, 3 refused by the server
(4xx), 4 the server failed (5xx) or could not be reached."""

from __future__ import annotations

import pytest

from tests.orc.support import Answer, ScriptedServer, orc
from tests.subprocesses import free_port

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("dev_workflows")]


def test_a_refused_request_shows_the_problem_and_its_paths(dev_env: dict[str, str]) -> None:
    done = orc("trigger", "hello", "-p", "who=5", "-p", "what=x", env=dev_env)
    assert done.code == 3
    lines = done.err.splitlines()
    assert lines[0] == "error: 400 Bad Request"
    assert any(line.startswith("  params.what: ") for line in lines[1:]), done
    assert any(line.startswith("  params.who: ") for line in lines[1:]), done


def test_a_missing_object_is_a_404(dev_env: dict[str, str]) -> None:
    done = orc("workflows", "show", "nope", env=dev_env)
    assert done.code == 3
    assert done.err.startswith("error: 404 Not Found: "), done


def test_usage_errors_exit_2(dev_env: dict[str, str]) -> None:
    assert orc("runs", "show", "not-a-number", env=dev_env).code == 2
    bad_param = orc("trigger", "hello", "-p", "who", env=dev_env)
    assert (bad_param.code, bad_param.err) == (
        2,
        "error: -p 'who': expected key=value, e.g. -p region=eu\n",
    )


def test_a_server_error_or_no_server_exits_4() -> None:
    failing = Answer(500, {"title": "Internal Server Error", "status": 500, "detail": "boom"})
    with ScriptedServer([failing]) as scripted:
        env = {
            "PATH": "/usr/bin:/bin",
            "ORC_SERVER": scripted.base,
            "ORC_TENANT": "dev",
            "ORC_TOKEN": "orc_x_y",
        }
        done = orc("runs", "list", env=env)
    assert (done.code, done.err) == (4, "error: 500 Internal Server Error: boom\n")
    nobody = f"http://127.0.0.1:{free_port()}"
    env = {
        "PATH": "/usr/bin:/bin",
        "ORC_SERVER": nobody,
        "ORC_TENANT": "dev",
        "ORC_TOKEN": "orc_x_y",
        "ORC_RETRIES": "1",
    }
    done = orc("whoami", env=env, timeout=120)
    assert done.code == 4
    assert done.err.startswith(f"error: GET {nobody}/api/v1/me: "), done
    assert done.err.endswith("(after 2 tries)\n")
    wrong = orc("whoami", env={**env, "ORC_RETRIES": "many"})
    assert (wrong.code, wrong.err) == (
        2,
        "error: ORC_RETRIES='many': expected a whole number, 0 or more\n",
    )
