"""git and ssh connect to the addresses the network guard checked, never to a second DNS
answer for the host (DNS rebinding: a name that resolves to a public address for the
check and to an internal one for git). The host here is under `.invalid`, which never
resolves: a connection that reaches the listener on 127.0.0.1 went to the pinned address.
Nothing leaves 127.0.0.1."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitsync.git import GitError, Remote, checkout


class Listener:
    """Accepts connections on 127.0.0.1, counts them and closes each at once."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.server.close()
        self.thread.join(5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.mark.parametrize("kind", ["https", "ssh"])
@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "unpinned"])
def test_git_connects_to_the_checked_address(kind: str, pinned: bool, listener: Listener) -> None:
    """Unpinned, the control: the name does not resolve, so nothing reaches the listener,
    and a connection that does came through the pinned address."""
    host, port = "pinned.invalid", listener.port
    user = "" if kind == "https" else "git@"
    addresses = ("127.0.0.1",) if pinned else ()
    with pytest.raises(GitError):
        checkout(
            f"{kind}://{user}{host}:{port}/acme/flows.git",
            "main",
            "",
            remote=Remote(kind, host, port, addresses),
            timeout=20,
        )
    assert (listener.accepted >= 1) is pinned


def test_ssh_looks_the_host_key_up_by_the_hosts_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host key is looked up under the host's name as known_hosts writes it ([host]:port
    off port 22; ssh takes an alias as it is), not under the address: what ssh is given,
    seen by an ssh of the test's that records its arguments."""
    bin_dir, said = tmp_path / "bin", tmp_path / "ssh-argv"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {said}\nexit 255\n')
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for port, alias in ((2222, "[git.example.com]:2222"), (22, "git.example.com")):
        with pytest.raises(GitError):
            checkout(
                f"ssh://git@git.example.com:{port}/acme/flows.git",
                "main",
                "",
                remote=Remote("ssh", "git.example.com", port, ("93.184.215.14",)),
                timeout=20,
            )
        argv = said.read_text().splitlines()
        assert "HostName=93.184.215.14" in argv
        assert f"HostKeyAlias={alias}" in argv
