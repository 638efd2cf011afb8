"""A server directory read on the host: no link followed, no special file opened, links inside copied as links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.cases import CasesError, load_cases
from sandbox.serverdir import ServerDirError, copy_tree, kernel_fs, read_bytes, requirements_of, walk


@pytest.fixture
def server(tmp_path: Path) -> Path:
    directory = tmp_path / "srv"
    (directory / "pkg").mkdir(parents=True)
    (directory / "server.py").write_text("print('hi')\n")
    (directory / "pkg" / "__init__.py").write_text("")
    (directory / "requirements.txt").write_text("mcp==2.3.0  # pinned\n-e .\n")
    return directory


def test_links_inside_are_kept_as_links_and_caches_skipped(server, tmp_path):
    os.symlink("server.py", server / "alias.py")
    os.symlink("../outside.txt", server / "notes.txt")  # leaves, but nothing reads it on the host
    (server / "__pycache__").mkdir()
    (server / "__pycache__" / "x.pyc").write_bytes(b"\0")
    entries = {str(e.rel): e for e in walk(server)}
    assert set(entries) == {"alias.py", "notes.txt", "pkg", "pkg/__init__.py", "requirements.txt", "server.py"}
    assert entries["alias.py"].kind == "link" and entries["server.py"].kind == "file"
    copy_tree(server, list(entries.values()), tmp_path / "copy")
    assert os.readlink(tmp_path / "copy" / "alias.py") == "server.py"
    assert (tmp_path / "copy" / "pkg" / "__init__.py").is_file()
    assert requirements_of(server) == ["mcp==2.3.0"]


@pytest.mark.parametrize("name", ["leak.py", "pkg/leak.py", "requirements.txt", "cases.json"])
def test_host_read_files_that_link_out_are_refused_by_name(server, tmp_path, name):
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    (server / name).unlink(missing_ok=True)
    os.symlink(secret, server / name)
    with pytest.raises(ServerDirError, match=f"{name} is a symbolic link") as refused:
        walk(server)
    assert "s3cret" not in str(refused.value)


def test_reads_never_follow_a_link_anywhere_on_the_path(server, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "cases.json").write_text('{"cases": []}')
    os.symlink(tmp_path / "elsewhere", server / "linked")
    with pytest.raises(ServerDirError, match="symbolic link"):
        read_bytes(server, "linked/cases.json")
    os.symlink(tmp_path / "elsewhere" / "cases.json", server / "cases.json")
    with pytest.raises(ServerDirError, match="symbolic link"):
        read_bytes(server, "cases.json")


def test_special_files_are_refused_without_blocking(server):
    os.mkfifo(server / "cases.json")  # opening it for reading would wait for a writer forever
    with pytest.raises(ServerDirError, match="FIFO"):
        walk(server)
    with pytest.raises(ServerDirError, match="FIFO, not a regular file"):
        read_bytes(server, "cases.json")
    with pytest.raises(CasesError, match="FIFO"):
        load_cases(server / "cases.json")


def test_kernel_file_systems_are_recognised_also_through_links(tmp_path):
    os.symlink("/proc/self", tmp_path / "me")
    assert kernel_fs("/proc/1/root") == "/proc" and kernel_fs("/sys/kernel") == "/sys"
    assert kernel_fs(tmp_path / "me") == "/proc" and kernel_fs(tmp_path) is None
    with pytest.raises(CasesError, match="kernel file system"):
        load_cases("/proc/self/environ")
