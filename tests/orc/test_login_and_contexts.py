"""`orc login`, `orc whoami` and `orc context`: a token checked against the server and
saved in a config file only its owner can read; contexts chosen by option, environment or
the file; the environment over the file."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest

from tests.orc.support import OrcServer, orc

pytestmark = pytest.mark.slow


def shell(home: Path) -> dict[str, str]:
    """A user's shell with nothing of orc's in its environment."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LC_ALL": "C.UTF-8"}


def login(server: OrcServer, home: Path, token: str, *args: str) -> tuple[int, str]:
    done = orc(
        "login", "--server", server.base, "--token-stdin", *args, env=shell(home), stdin=token
    )
    return done.code, done.err


def test_it_logs_in_saves_a_private_context_and_uses_it(server: OrcServer, home: Path) -> None:
    code, said = login(server, home, server.tokens["dev:owner"])
    assert code == 0, said
    path = home / ".config" / "orc" / "config.toml"
    assert said == (
        f"Logged in to {server.base} as dana (tenant dev, role owner); context 'dev' saved in "
        f"{path} and made current\n"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert tomllib.loads(path.read_text()) == {
        "current": "dev",
        "contexts": {
            "dev": {"server": server.base, "tenant": "dev", "token": server.tokens["dev:owner"]}
        },
    }
    whoami = orc("whoami", "-o", "json", env=shell(home))
    assert whoami.code == 0, whoami
    me = json.loads(whoami.out)
    assert (me["username"], me["token"]["tenant"], me["context"]) == ("dana", "dev", "dev")


def test_contexts_are_chosen_by_option_environment_or_the_file(
    server: OrcServer, home: Path
) -> None:
    assert login(server, home, server.tokens["dev:owner"])[0] == 0
    assert login(server, home, server.tokens["globex:owner"], "--context", "other")[0] == 0
    listed = json.loads(orc("context", "list", "-o", "json", env=shell(home)).out)
    assert [(c["name"], c["tenant"], c["current"]) for c in listed] == [
        ("dev", "dev", False),
        ("other", "globex", True),
    ]

    def user(*args: str, **env: str) -> str:
        done = orc(*args, "whoami", "-o", "json", env={**shell(home), **env})
        assert done.code == 0, done
        return str(json.loads(done.out)["username"])

    assert user() == "gary"
    assert user("--context", "dev") == "dana"
    assert user(ORC_CONTEXT="dev") == "dana"
    assert user(ORC_TOKEN=server.tokens["dev:viewer"]) == "sa.dev.viewer"  # the env over the file
    used = orc("context", "use", "dev", env=shell(home))
    assert (used.code, used.err) == (0, "current context: dev\n")
    assert user() == "dana"
    unknown = orc("--context", "prod", "whoami", env=shell(home))
    assert unknown.code == 2
    path = home / ".config" / "orc" / "config.toml"
    assert unknown.err == f"error: no context 'prod' in {path}; contexts: dev, other\n"
    deleted = orc("context", "delete", "other", env=shell(home))
    assert (deleted.code, deleted.err) == (0, "context 'other' deleted\n")
    assert "other" not in tomllib.loads(path.read_text())["contexts"]


def test_a_config_file_others_can_read_is_refused(server: OrcServer, home: Path) -> None:
    assert login(server, home, server.tokens["dev:owner"])[0] == 0
    path = home / ".config" / "orc" / "config.toml"
    path.chmod(0o644)
    done = orc("whoami", env=shell(home))
    assert done.code == 2
    assert done.err == (
        f"error: {path} holds API tokens but its mode is 0644, so other users can read them; "
        f"make it readable by you only: chmod 600 {path}\n"
    )
    # CI sets everything in the environment and has no file to trust.
    env = {**shell(home), "ORC_SERVER": server.base, "ORC_TENANT": "dev"}
    assert orc("whoami", env={**env, "ORC_TOKEN": server.tokens["dev:owner"]}).code == 0


def test_login_refuses_a_bad_token_or_another_tenant(server: OrcServer, home: Path) -> None:
    code, said = login(server, home, server.tokens["dev:owner"], "--tenant", "globex")
    assert (code, said) == (2, "error: the token is bound to tenant 'dev', not 'globex'\n")
    code, said = login(server, home, server.tokens["dev:owner"][:-3] + "xyz")
    assert code == 3
    assert said.startswith("error: 401 Unauthorized: ")
    assert not (home / ".config").exists()


def test_without_any_configuration_it_says_how_to_get_one(home: Path) -> None:
    done = orc("runs", "list", env=shell(home))
    assert done.code == 2
    assert done.err == (
        "error: no server: run `orc login --server URL --tenant SLUG`, or set ORC_SERVER "
        "(with ORC_TENANT and ORC_TOKEN)\n"
    )


def test_a_contexts_token_is_never_sent_to_another_server(
    server: OrcServer, home: Path, loopback_listener: int
) -> None:
    assert login(server, home, server.tokens["dev:owner"])[0] == 0
    elsewhere = f"http://127.0.0.1:{loopback_listener}"
    for how in (["--server", elsewhere], []):
        env = shell(home) | ({} if how else {"ORC_SERVER": elsewhere})
        done = orc(*how, "workflows", "list", env=env, timeout=30)
        assert done.code == 2, str(done)
        assert done.err == (
            f"error: no token for {elsewhere}: run `orc login --server {elsewhere}`, or set "
            f"ORC_TOKEN (context 'dev' holds a token for {server.base}, which is not sent "
            "to another server)\n"
        )
    # The context's own server, named again, still gets it.
    done = orc("--server", server.base + "/", "workflows", "list", env=shell(home))
    assert done.code == 0, str(done)
