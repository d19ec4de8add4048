"""Package files without a database: what an upload is, what unpacking one refuses (paths
out of it, links out of it, device files, too many or too large members), what a wheel
declares, how dependencies are locked, and what the indexer finds."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from runs.tasktypes.environments import uv_binary
from runs.tasktypes.indexer import import_all
from runs.tasktypes.packages import (
    EXTRACTED_FACTOR,
    PackageError,
    extract,
    lock_dependencies,
    read_upload,
    wheel_info,
)
from runs.tasktypes.sandbox import interpreter
from tests.teamcode_support import (
    archive_tree,
    package_index,
    wheel_bytes,
    write_sdist,
    write_source_tree,
    write_wheel,
    zip_tree,
)

LIMIT = 1_000_000
FILES = {"acme_etl/__init__.py": "def hello():\n    pass\n"}


def a_tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member, data in members:
            member.size = len(data) if member.isreg() else 0
            archive.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def refused(data: bytes, filename: str = "acme.tar.gz") -> str:
    with pytest.raises(PackageError) as caught:
        read_upload(data, filename, max_bytes=LIMIT)
    return str(caught.value)


# --- what an upload is ---------------------------------------------------------------------


def test_it_tells_wheels_sdists_and_trees_apart(tmp_path: Path) -> None:
    tree = write_source_tree(tmp_path / "tree", "acme-etl", "1.0", FILES)
    sdist = write_sdist(tmp_path / "sdist", "acme-etl", "1.0", FILES)
    filename, wheel = wheel_bytes("acme-etl", "1.0", FILES)
    cases = {
        filename: (wheel, "wheel", ""),
        "acme-1.0.tar.gz": (sdist, "sdist", "acme-etl-1.0"),
        "tree.tgz": (archive_tree(tree), "tree", "acme-etl-1.0"),
        "tree.zip": (zip_tree(tree, top=None), "tree", ""),
        "C:\\Users\\me\\tree.zip": (zip_tree(tree), "tree", "acme-etl-1.0"),
    }
    for name, (data, kind, root) in cases.items():
        upload = read_upload(data, name, max_bytes=LIMIT)
        assert (upload.kind, upload.root) == (kind, root), name
    assert read_upload(wheel, "dir/" + filename, max_bytes=LIMIT).filename == filename


def test_it_unpacks_a_tree_with_its_links_inside(tmp_path: Path) -> None:
    data = a_tar(
        (member("acme/pyproject.toml"), b"[project]\n"),
        (member("acme/pkg/mod.py"), b"X = 1\n"),
        (member("acme/link.py", tarfile.SYMTYPE, "pkg/mod.py"), b""),
        (member("acme/copy.py", tarfile.LNKTYPE, "acme/pkg/mod.py"), b""),
    )
    upload = read_upload(data, "acme.tar.gz", max_bytes=LIMIT)

    root = extract(upload, tmp_path / "out", max_bytes=LIMIT)

    assert root == tmp_path / "out" / "acme"
    assert (root / "link.py").read_text() == (root / "copy.py").read_text() == "X = 1\n"
    assert os.readlink(root / "link.py") == "pkg/mod.py"
    assert not (root / "copy.py").is_symlink()


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        (
            [(member("/etc/cron.d/x"), b"")],
            "'acme.tar.gz': '/etc/cron.d/x' is an absolute path; members must be relative",
        ),
        (
            [(member("acme/../../x"), b"")],
            "'acme.tar.gz': 'acme/../../x' leads out of the archive ('..')",
        ),
        (
            [(member("acme/evil", tarfile.SYMTYPE, "../../etc/passwd"), b"")],
            "'acme.tar.gz': the link 'acme/evil' points to '../../etc/passwd', outside the "
            "archive; links must stay inside it",
        ),
        (
            [(member("acme/evil", tarfile.SYMTYPE, "/etc/passwd"), b"")],
            "'acme.tar.gz': the link 'acme/evil' points to '/etc/passwd', outside the "
            "archive; links must stay inside it",
        ),
        (
            [(member("acme/dev", tarfile.CHRTYPE), b"")],
            "'acme.tar.gz': 'acme/dev' is a device file or a pipe; archives may hold only "
            "files, directories and links",
        ),
        (
            [(member("acme/fifo", tarfile.FIFOTYPE), b"")],
            "'acme.tar.gz': 'acme/fifo' is a device file or a pipe; archives may hold only "
            "files, directories and links",
        ),
        (
            [(member("acme/hard", tarfile.LNKTYPE, "/etc/shadow"), b"")],
            "'acme.tar.gz': '/etc/shadow' is an absolute path; members must be relative",
        ),
    ],
)
def test_it_refuses_unsafe_members(
    members: list[tuple[tarfile.TarInfo, bytes]], expected: str
) -> None:
    data = a_tar((member("acme/pyproject.toml"), b"[project]\n"), *members)

    assert refused(data) == expected


def test_a_chain_of_links_resolving_outside_is_refused_at_unpacking(tmp_path: Path) -> None:
    """Each link looks inside on its own; together they lead out."""
    data = a_tar(
        (member("pyproject.toml"), b"[project]\n"),
        (member("sub", tarfile.SYMTYPE, "."), b""),
        (member("up", tarfile.SYMTYPE, "sub/.."), b""),
    )
    # "sub/.." is "." by its text, but sub is the root itself: "up" is the root's parent.
    upload = read_upload(data, "acme.tar.gz", max_bytes=LIMIT)

    with pytest.raises(PackageError) as caught:
        extract(upload, tmp_path / "out", max_bytes=LIMIT)

    assert str(caught.value) == (
        "'acme.tar.gz': the link 'up' resolves outside the archive; links must stay inside it"
    )


def test_it_caps_the_unpacked_size() -> None:
    big = b"\0" * (EXTRACTED_FACTOR * 1000 + 1)
    data = a_tar((member("acme/pyproject.toml"), b""), (member("acme/big.bin"), big))

    with pytest.raises(PackageError) as caught:
        read_upload(data, "acme.tar.gz", max_bytes=1000)

    assert str(caught.value) == (
        f"'acme.tar.gz' unpacks to {len(big)} bytes; at most {EXTRACTED_FACTOR * 1000} are "
        f"accepted ({EXTRACTED_FACTOR} times PACKAGE_MAX_BYTES)"
    )


def test_it_caps_the_number_of_members(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runs.tasktypes.packages.MAX_MEMBERS", 3)
    data = a_tar(*[(member(f"acme/{i}.py"), b"") for i in range(4)])

    assert refused(data) == "'acme.tar.gz' holds 4 files; at most 3 are accepted"


def test_a_member_below_a_link_is_refused(tmp_path: Path) -> None:
    data = a_tar(
        (member("pyproject.toml"), b""),
        (member("lib", tarfile.SYMTYPE, "pkg"), b""),
        (member("lib/x.py"), b""),
    )
    upload = read_upload(data, "acme.tar.gz", max_bytes=LIMIT)

    with pytest.raises(PackageError) as caught:
        extract(upload, tmp_path / "out", max_bytes=LIMIT)

    assert str(caught.value) == "'acme.tar.gz': 'lib/x.py' lies below a link or a file"


def test_a_zip_with_a_link_out_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pyproject.toml", "")
        link = zipfile.ZipInfo("evil")
        link.create_system = 3
        link.external_attr = (0o120777) << 16
        archive.writestr(link, "../../../etc/passwd")

    assert refused(buffer.getvalue(), "acme.zip") == (
        "'acme.zip': the link 'evil' points to '../../../etc/passwd', outside the archive; "
        "links must stay inside it"
    )


# --- what a wheel declares -----------------------------------------------------------------


def test_it_reads_a_wheel_normalised() -> None:
    files = {**FILES, "single.py": "", "ns/inner/mod.py": "", "acme_etl-1.0.data/scripts/x": ""}
    filename, data = wheel_bytes("Acme.ETL", "01.0", files, requires=["tinydep>=0.2"])

    info = wheel_info(data, filename)

    assert (info.name, info.version, info.requires_dist) == ("acme-etl", "1.0", ("tinydep>=0.2",))
    assert info.top_level == ("acme_etl", "ns", "single")


def test_it_refuses_a_wheel_needing_another_python() -> None:
    filename, data = wheel_bytes("acme-etl", "1.0", FILES, metadata=["Requires-Python: >=3.13"])

    with pytest.raises(PackageError) as caught:
        wheel_info(data, filename)

    running = ".".join(map(str, sys.version_info[:3]))
    assert str(caught.value) == (
        f"acme-etl 1.0 requires Python >=3.13; the workers run Python {running}"
    )


def test_it_refuses_invalid_metadata() -> None:
    filename, data = wheel_bytes("acme-etl", "1.0", FILES, metadata=["Requires-Dist: ???"])

    with pytest.raises(PackageError) as caught:
        wheel_info(data, filename)

    assert str(caught.value).startswith(f"'{filename}': its METADATA is invalid: ")


# --- locking -------------------------------------------------------------------------------


def test_it_locks_dependencies_by_version_and_hash(tmp_path: Path) -> None:
    index = package_index(tmp_path)
    wheel = write_wheel(tmp_path / "dist", "acme-etl", "1.0", FILES, requires=["TinyDep"])

    lock, log = lock_dependencies(
        wheel,
        uv=uv_binary(),
        python=interpreter(),
        index_url=None,
        find_links=[str(index)],
        timeout=60,
        cache_dir=str(tmp_path / "cache"),
    )

    [line] = lock
    assert re.fullmatch(r"tinydep==0\.3\.0 --hash=sha256:[0-9a-f]{64}", line)
    assert "Resolved 2 packages" in log


def test_a_package_without_dependencies_locks_to_nothing(tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path / "dist", "acme-etl", "1.0", FILES)

    lock, _ = lock_dependencies(
        wheel,
        uv=uv_binary(),
        python=interpreter(),
        index_url=None,
        find_links=[],
        timeout=60,
        cache_dir=str(tmp_path / "cache"),
    )

    assert lock == []


# --- the indexer ---------------------------------------------------------------------------

PACKAGE = {
    "teampkg/__init__.py": "from os.path import join\n\ndef top():\n    pass\n",
    "teampkg/good.py": "def a():\n    pass\n\ndef _hidden():\n    pass\n\nclass K:\n    pass\n",
    "teampkg/bad.py": "raise ImportError('needs a thing')\n",
    "teampkg/__main__.py": "raise SystemExit('must not run')\n",
    "teampkg/sub/__init__.py": "",
    "teampkg/sub/deep.py": "import sys\n\ndef b():\n    pass\n\nc = lambda: 1\n",
    "teamexit.py": "raise SystemExit(3)\n",
}


def test_the_indexer_imports_every_module_and_lists_its_own_functions(tmp_path: Path) -> None:
    for path, text in PACKAGE.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        modules, errors = import_all(["teampkg", "teamexit", "teammissing"])
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("team")]:
            del sys.modules[name]

    assert modules == {
        "teampkg": ["top"],
        "teampkg.good": ["a"],
        "teampkg.sub": [],
        "teampkg.sub.deep": ["b", "c"],
    }
    assert errors == {
        "teamexit": "SystemExit: 3",
        "teammissing": "ModuleNotFoundError: No module named 'teammissing'",
        "teampkg.bad": "ImportError: needs a thing",
    }


def test_the_indexer_script_keeps_the_packages_prints_out_of_its_result(tmp_path: Path) -> None:
    (tmp_path / "noisy.py").write_text("print('hello from import')\n\ndef f():\n    pass\n")
    script = Path(__file__).parents[2] / "runs" / "tasktypes" / "indexer.py"

    done = subprocess.run(
        [interpreter(), "-I", str(script), "noisy"],
        capture_output=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)},
        check=False,
    )
    # -I: neither PYTHONPATH nor the current directory is on sys.path.
    assert json.loads(done.stdout.decode().strip().splitlines()[-1]) == {
        "modules": {},
        "errors": {"noisy": "ModuleNotFoundError: No module named 'noisy'"},
    }
    done = subprocess.run(
        [interpreter(), "-P", str(script), "noisy"],
        capture_output=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)},
        check=False,
    )
    assert done.stdout.decode().strip().splitlines()[-1] == json.dumps(
        {"modules": {"noisy": ["f"]}, "errors": {}}
    )
    assert done.stderr.decode() == "hello from import\n"
