"""Nothing a server directory links to leaks through the host-side checks (syntax, requirements, cases).

Each leak is planted as a link to a file only its owner can read (mode 600), holding a
unique secret; the foundry runs as that owner, so only the refusal to follow links can
keep it out of what the caller sees.
"""

import json
import os
import shutil
import subprocess
import uuid

import anyio
import pytest

from tests.server.conftest import FIXTURES, FOUNDRY, ROOT, foundry_env, result_of, stdio_foundry


@pytest.fixture
def secret():
    """A unique word (lower case: requirement names are normalized to lower case before they are shown)."""
    return f"topsecret{uuid.uuid4().hex}"


def _private(tmp_path, name: str, content: str):
    """A mode-600 file outside every server directory."""
    path = tmp_path / "private" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(content)
    path.chmod(0o600)
    return path


def _server_dir(tmp_path, name: str) -> "os.PathLike":
    directory = tmp_path / name
    shutil.copytree(FIXTURES / "good_server", directory)
    return directory


def _leaky_dirs(tmp_path, secret):
    """Server directories that each link one host-read file elsewhere, to content that would show the secret."""
    leak_py = _server_dir(tmp_path, "leak_py")
    os.symlink(_private(tmp_path, "leak.py", f"{secret} = (\n"), leak_py / "leak.py")  # its syntax error quotes it
    requirements = _server_dir(tmp_path, "requirements")
    (requirements / "requirements.txt").unlink()
    os.symlink(_private(tmp_path, "requirements.txt", f"{secret}==1.0\n"), requirements / "requirements.txt")
    cases = _server_dir(tmp_path, "cases")
    (cases / "cases.json").unlink()
    os.symlink(_private(tmp_path, "cases.json", json.dumps({"cases": [{"tool": secret}]})), cases / "cases.json")
    climbing = _server_dir(tmp_path, "climbing")
    os.symlink("../private/leak.py", climbing / "notes.py")
    return {"leak_py": ("leak.py", leak_py), "requirements": ("requirements.txt", requirements),
            "cases": ("cases.json", cases), "climbing": ("notes.py", climbing)}


def test_cli_validate_refuses_links_out_of_the_server_dir_and_prints_no_secret(data_dir, tmp_path, secret):
    leak = _server_dir(tmp_path, "leak")
    os.symlink(_private(tmp_path, "leak.py", f"{secret} = (\n"), leak / "leak.py")
    run = subprocess.run([*FOUNDRY, "validate", str(leak), "--json"], cwd=ROOT, env=foundry_env(data_dir),
                         capture_output=True, text=True, timeout=240)
    assert secret not in run.stdout + run.stderr
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "leak.py is a symbolic link" in run.stderr and "never read through a link" in run.stderr, run.stderr


def test_validate_server_refuses_each_kind_of_leaking_link(data_dir, tmp_path, secret):
    dirs = _leaky_dirs(tmp_path, secret)

    async def main():
        async with stdio_foundry(data_dir) as client:
            answers = {}
            for key, (entry, directory) in dirs.items():
                res = await client.call_tool("validate_server", {"path": str(directory)})
                answers[key] = (entry, res.is_error, res.content[0].text)
            listed = await client.call_tool("list_builds", {})
            return answers, listed.structured_content["jobs"]

    answers, jobs = anyio.run(main)
    for key, (entry, is_error, text) in answers.items():
        assert is_error and secret not in text, (key, text)
        assert text.startswith("validate_server: path: ") and f"{entry} is a symbolic link" in text, (key, text)
    assert jobs == []  # refused before any job started


def test_a_link_to_proc_1_root_is_copied_as_a_link_and_the_job_reports(data_dir, tmp_path):
    server = _server_dir(tmp_path, "proc")
    os.symlink("/proc/1/root", server / "rootfs")  # followed on the host, it is the whole machine

    async def main():
        async with stdio_foundry(data_dir) as client:
            ticket = await client.call_tool("validate_server", {"path": str(server)})
            assert not ticket.is_error, ticket.content
            return await result_of(client, ticket.structured_content["job_id"])

    out = anyio.run(main)
    assert out["state"] == "succeeded", out
    assert out["result"]["report"]["verdict"] == "pass" and "PermissionError" not in json.dumps(out)
