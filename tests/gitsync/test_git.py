"""Which remotes, branches and paths a git source may name (gitsync.git, pure): https,
ssh and scp-like remotes only, their hosts through the network guard; local ones only
where the platform allows them; nothing git would read as an option or a remote helper.
No database, no network (hosts are resolved by a stand-in resolver or are addresses)."""

from __future__ import annotations

import pytest

from gitsync.git import GitError, Remote, argv_verb, check_branch, check_path, check_remote


def resolver(host: str, port: int) -> list[str]:
    return {"git.internal": ["10.0.0.5"], "git.example.com": ["93.184.215.14"]}[host]


@pytest.mark.parametrize(
    ("url", "remote"),
    [
        ("https://git.example.com/acme/flows.git", Remote("https", "git.example.com", 443)),
        ("ssh://git@git.example.com:2222/acme/flows.git", Remote("ssh", "git.example.com", 2222)),
        ("git@git.example.com:acme/flows.git", Remote("ssh", "git.example.com", 22)),
        ("git.example.com:/srv/git/flows.git", Remote("ssh", "git.example.com", 22)),
    ],
)
def test_it_accepts_https_ssh_and_scp_like_remotes(url: str, remote: Remote) -> None:
    """With the addresses the guard checked, which git and ssh then connect to."""
    checked = Remote(remote.kind, remote.host, remote.port, ("93.184.215.14",))
    assert check_remote(url, allow_local=False, resolver=resolver) == checked
    assert check_remote(url, allow_local=False, check_network=False) == remote


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://git.example.com/acme/flows.git", "the scheme http:// is not allowed"),
        ("git://git.example.com/acme/flows.git", "the scheme git:// is not allowed"),
        ("ext::sh -c touch% /tmp/pwned", "is not a git URL"),
        ("ext::ssh git.example.com", "is not a git URL"),
        ("fd::17", "is not a git URL"),
        ("-oProxyCommand=touch /tmp/x", "is not a git URL"),
        ("--upload-pack=touch", "is not a git URL"),
        ("ssh://-oProxyCommand=x/flows", "has no host"),
        ("https://me:hunter2@git.example.com/flows.git", "holds credentials"),
        ("https://ghp_token@git.example.com/flows.git", "holds credentials"),
        # What ssh would read as another host than urlsplit does (after the last '@').
        ("ssh://93.184.216.34#@127.0.0.1:18999/x", "is not [user@]host[:port]"),
        ("ssh://93.184.216.34?@127.0.0.1/x", "is not [user@]host[:port]"),
        ("ssh://a@b@127.0.0.1/x", "is not [user@]host[:port]"),
        ("file:///srv/git/flows.git", "GITSYNC_ALLOW_LOCAL=1"),
        ("/srv/git/flows.git", "GITSYNC_ALLOW_LOCAL=1"),
        ("", "is not a git URL"),
        ("flows", "is not a git URL"),
    ],
)
def test_it_refuses_anything_else_saying_what_it_accepts(url: str, said: str) -> None:
    with pytest.raises(GitError) as refused:
        check_remote(url, allow_local=False, resolver=resolver)
    assert said in str(refused.value)


def test_local_remotes_need_the_platforms_setting() -> None:
    assert check_remote("file:///srv/git/flows.git", allow_local=True) == Remote("local", "", 0)
    assert check_remote("/srv/git/flows.git", allow_local=True).kind == "local"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("https://127.0.0.1/flows.git", "a loopback address"),
        ("git@10.1.2.3:flows.git", "a private address"),
        ("ssh://git@[::1]/flows.git", "the loopback address"),
        ("https://169.254.169.254/latest", "cloud metadata endpoint"),
        ("https://git.internal/flows.git", "git.internal (10.0.0.5) is a private address"),
    ],
)
def test_hosts_go_through_the_network_guard(url: str, said: str) -> None:
    with pytest.raises(GitError) as refused:
        check_remote(url, allow_local=False, resolver=resolver)
    assert said in str(refused.value)
    assert "GITSYNC_ALLOWED_HOSTS" in str(refused.value)


def test_an_allowed_private_host_passes() -> None:
    remote = check_remote(
        "git@git.internal:flows.git",
        allow_local=False,
        allowed_hosts=["git.internal"],
        resolver=resolver,
    )
    assert remote == Remote("ssh", "git.internal", 22, ("10.0.0.5",))
    assert check_remote("https://10.1.2.3/f.git", allow_local=False, allowed_hosts=["10.0.0.0/8"])


@pytest.mark.parametrize("branch", ["main", "release/1.2", "feature_x-y"])
def test_it_accepts_branch_names(branch: str) -> None:
    assert check_branch(branch) == branch


@pytest.mark.parametrize(
    "branch", ["", "-x", "--upload-pack=x", "a..b", "a b", "a~1", "a^", "a:b", "/a", "a/", "a.lock"]
)
def test_it_refuses_what_is_no_branch_name(branch: str) -> None:
    with pytest.raises(GitError, match="is not a branch name"):
        check_branch(branch)


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("", ""),
        ("prod", "prod"),
        ("/prod/", "prod"),
        ("a/b", "a/b"),
        (".github/orc", ".github/orc"),
    ],
)
def test_it_accepts_folders_of_the_repository(path: str, cleaned: str) -> None:
    assert check_path(path) == cleaned


@pytest.mark.parametrize("path", ["..", "../etc", "a/../../b", ".git", "a/.git/x", "a\\b", "a\nb"])
def test_it_refuses_paths_that_leave_the_repository(path: str) -> None:
    with pytest.raises(GitError, match="is not a folder of the repository"):
        check_path(path)


def test_errors_name_the_git_command() -> None:
    argv = ["git", "-c", "protocol.allow=never", "-C", "/x", "clone", "--depth", "1"]
    assert argv_verb(argv) == "clone"
