"""docs/cli.md's terminal transcripts are real: every `$ orc ...` line of its `console`
blocks is run, in the order of the page, in one folder as a reader would (the spec files
its `yaml` blocks name with a first line `# file: PATH` written there first), against the
session's server as tenant `acme`; each must exit as shown (`# exit N` after a command;
0 otherwise) and print every line shown under it, in order (stdout and stderr as a
terminal interleaves them; progress lines may come in between).

Before comparing, what differs from run to run is made alike: times and durations, tokens
and digests, the home folder (`~`), the server's address (the docs say
`http://127.0.0.1:8000`), a just-triggered run's `queued` or `running`, and spaces that
align columns. Run ids are the server's: the ids the docs show stand for the ones the same
commands got here, learned from `run N` in each output and put into later commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.orc.support import ORC, OrcServer
from tests.teamcode_support import write_wheel

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
DOCUMENTED_SERVER = "http://127.0.0.1:8000"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
EXIT = re.compile(r"\s+#\s*exit (\d+)\s*$")
RUN_ID = re.compile(r"\brun (\d+)\b")
COMMANDS = (
    "login",
    "whoami",
    "context",
    "validate",
    "apply",
    "workflows",
    "trigger",
    "runs",
    "logs",
    "backfill",
    "tokens",
    "packages",
)

ALIKE = [
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"\b\d+(\.\d+)?s\b|\b\d+m\d\ds\b|\b\d+h\d\dm\b"), "<duration>"),
    (re.compile(r"\borc_[a-z0-9]+_\S+"), "<token>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<sha256>"),
    (re.compile(r"\b(queued|running)\b"), "<started>"),
    (re.compile(r"[ \t]+"), " "),
]


@dataclass(frozen=True)
class Step:
    command: str
    expected: list[str]
    code: int
    line: int

    def __str__(self) -> str:
        return f"docs/cli.md:{self.line}: $ {self.command}"


def steps(text: str) -> list[Step]:
    found: list[Step] = []
    for fence in FENCE.finditer(text):
        if fence.group(1) != "console":
            continue
        first = text.count("\n", 0, fence.start()) + 2
        for offset, line in enumerate(fence.group(2).splitlines()):
            if line.startswith("$ "):
                exit_ = EXIT.search(line)
                command = EXIT.sub("", line[2:])
                found.append(Step(command, [], int(exit_.group(1)) if exit_ else 0, first + offset))
            elif found and line.strip():
                found[-1].expected.append(line)
    return found


def spec_files(text: str) -> dict[str, str]:
    files = {}
    for fence in FENCE.finditer(text):
        body = fence.group(2)
        if fence.group(1) == "yaml" and body.startswith("# file: "):
            files[body.splitlines()[0].removeprefix("# file: ").strip()] = body
    return files


def alike(text: str, home: Path, server: str) -> str:
    text = text.replace(str(home), "~").replace(server, DOCUMENTED_SERVER)
    for pattern, replacement in ALIKE:
        text = pattern.sub(replacement, text)
    return "\n".join(line.strip() for line in text.strip().splitlines())


def in_order(expected: list[str], actual: list[str]) -> bool:
    remaining = iter(actual)
    return all(any(line == seen for seen in remaining) for line in expected)


def test_the_docs_show_every_command_and_spec_this_test_runs() -> None:
    text = DOC.read_text()
    shown = {m.group(1) for step in steps(text) for m in re.finditer(r"\borc (\w+)", step.command)}
    assert shown >= set(COMMANDS)
    assert set(spec_files(text)) >= {"specs/hello.yaml", "broken/load.yaml"}


def distinct(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def test_every_transcript_runs_as_shown(server: OrcServer, tmp_path: Path) -> None:
    text = DOC.read_text()
    home, folder = tmp_path / "home", tmp_path / "repo"
    home.mkdir()
    for name, body in spec_files(text).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(body)
    # The package the docs push, as the reader's build would have made it.
    source = {"acme_etl/__init__.py": "def clean(text):\n    return text.strip()\n"}
    write_wheel(folder / "dist", "acme-etl", "1.4.2", source)
    env = {
        "PATH": f"{ORC.parent}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(home),
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",  # stdout and stderr interleaved as on a terminal
        "TOKEN": server.tokens["acme:owner"],
    }
    runs: dict[str, str] = {}  # the docs' run ids -> this server's

    def ours(text: str) -> str:
        return re.sub(r"\b\d+\b", lambda m: runs.get(m.group(0), m.group(0)), text)

    failures = []
    for step in steps(text):
        done = subprocess.run(
            ["bash", "-c", ours(step.command.replace(DOCUMENTED_SERVER, server.base))],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=90,
        )
        documented = distinct(RUN_ID.findall("\n".join(step.expected)))
        for doc_id, real in zip(documented, distinct(RUN_ID.findall(done.stdout)), strict=False):
            runs.setdefault(doc_id, real)
        wanted = [alike(ours(line), home, server.base) for line in step.expected]
        actual = alike(done.stdout, home, server.base).splitlines()
        if done.returncode != step.code or not in_order(wanted, actual):
            failures.append(
                f"{step}\n  exit {done.returncode} (docs: {step.code}); output:\n{done.stdout}"
            )
    assert not failures, "\n".join(failures)


def section_block(title: str, language: str) -> str:
    section = DOC.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert block, f"docs/cli.md's {title} section has a {language} block"
    return block.group(1)


def test_the_python_client_example_runs(server: OrcServer, tmp_path: Path) -> None:
    """The example as written, against tenant `acme` with the docs' `hello` workflow."""
    for name, body in spec_files(DOC.read_text()).items():
        if name.startswith("specs/"):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(body)
    env = {"PATH": "/usr/bin:/bin", "ORC_SERVER": server.base, "ORC_TENANT": "acme"}
    env["ORC_TOKEN"] = server.tokens["acme:owner"]
    subprocess.run([str(ORC), "apply", "specs"], cwd=tmp_path, env=env, check=True, timeout=60)
    example = section_block("Python client", "python").replace(DOCUMENTED_SERVER, server.base)
    done = subprocess.run(
        [sys.executable, "-c", f"import os\ntoken = os.environ['ORC_TOKEN']\n{example}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "404 workflow 'missing' not found []"


def test_shell_completion_installs_and_completes(home: Path) -> None:
    env = {"PATH": f"{ORC.parent}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(home)}
    env["SHELL"] = "/bin/bash"
    for line in section_block("Shell completion", "sh").splitlines():
        command = line.split("#", 1)[0].strip()
        # Run from a bash that stays orc's parent, as a user's shell does (`bash -c` alone
        # would exec orc, whose parent is then whatever started the tests: sh under make).
        done = subprocess.run(
            ["bash", "-c", f"{command}\nexit $?"], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (command, done.stderr)
        if "--show-completion" in command:
            assert "_ORC_COMPLETE=complete_bash" in done.stdout
    script = home / ".bash_completions" / "orc.sh"
    assert f"source '{script}'" in (home / ".bashrc").read_text()
    completion = {"COMP_WORDS": "orc ru", "COMP_CWORD": "1", "_ORC_COMPLETE": "complete_bash"}
    done = subprocess.run([str(ORC)], env={**env, **completion}, capture_output=True, text=True)
    assert done.stdout.split() == ["runs"]
