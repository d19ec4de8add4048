"""`orc tokens create` (the token alone on stdout, for scripts) and `orc packages push` of
a wheel and of a source tree's folder (team code, docs/team-code.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.orc.support import OrcServer, orc
from tests.teamcode_support import write_source_tree, write_wheel

pytestmark = pytest.mark.slow

SOURCE = {"acme_etl/__init__.py": "def clean(text):\n    return text.strip()\n"}


def test_a_token_made_by_orc_works_with_its_role(
    server: OrcServer, dev_env: dict[str, str]
) -> None:
    made = orc("tokens", "create", "--name", "ci", "--role", "viewer", env=dev_env)
    assert made.code == 0, made
    token = made.out.strip()
    assert made.out == f"{token}\n"
    assert token.startswith("orc_")
    assert "role viewer; it is shown once" in made.err
    me = json.loads(orc("whoami", "-o", "json", env={**dev_env, "ORC_TOKEN": token}).out)
    assert (me["username"], me["token"]["role"]) == ("dana", "viewer")
    listed = json.loads(orc("tokens", "list", "-o", "json", env=dev_env).out)
    assert any(t["name"] == "ci" and t["token"] is None for t in listed)  # never shown again
    refused = orc(
        "tokens", "create", "--name", "x", "--role", "viewer", env={**dev_env, "ORC_TOKEN": token}
    )
    assert refused.code == 3
    assert refused.err.startswith("error: 403 Forbidden: ")


def test_packages_push_a_wheel_and_a_source_tree(dev_env: dict[str, str], tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path / "dist", "acme-etl", "1.4.2", SOURCE)
    pushed = orc("packages", "push", str(wheel), env=dev_env)
    assert pushed.code == 0, pushed
    first, functions = pushed.out.splitlines()
    assert first.startswith("acme-etl 1.4.2: sha256:")
    assert functions == "functions: 1 in 1 modules"
    again = json.loads(orc("packages", "push", str(wheel), "-o", "json", env=dev_env).out)
    assert (again["name"], again["index"]) == ("acme-etl", {"acme_etl": ["clean"]})
    assert first.endswith(again["digest"])  # the same package: nothing new

    tree = write_source_tree(
        tmp_path / "src", "acme-tree", "0.2.0", {"acme_tree/core.py": "def hi():\n    return 1\n"}
    )
    (tree / "__pycache__").mkdir()
    (tree / "__pycache__" / "junk.pyc").write_bytes(b"\0")
    from_tree = json.loads(orc("packages", "push", str(tree), "-o", "json", env=dev_env).out)
    assert (from_tree["name"], from_tree["source_kind"]) == ("acme-tree", "tree")
    assert from_tree["index"]["acme_tree.core"] == ["hi"]
    listed = orc("packages", "list", env=dev_env).out.splitlines()
    assert listed[0].split() == ["ID", "NAME", "VERSION", "DIGEST", "UPLOADED"]
    assert [line.split()[1:3] for line in listed[1:3]] == [
        ["acme-tree", "0.2.0"],
        ["acme-etl", "1.4.2"],
    ]


def test_packages_push_refuses_what_is_not_a_package(
    dev_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    done = orc("packages", "push", str(tmp_path / "notes.txt"), env=dev_env)
    assert done.code == 2
    assert done.err.startswith(f"error: {tmp_path / 'notes.txt'}: not a package; accepted: ")
    empty = orc("packages", "push", str(tmp_path), env=dev_env)
    assert (empty.code, empty.err) == (
        2,
        f"error: {tmp_path}: no pyproject.toml; a source tree to push needs one at its top\n",
    )
