"""Each containment promise, checked by running real code through the real bubblewrap sandbox."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import anyio
import pytest

from sandbox.errors import SandboxError
from sandbox.policy import SECRET_NAME_PATTERN, safe_env
from sandbox.run import run_sandboxed

pytestmark = pytest.mark.anyio

PYTHON = sys.executable  # a venv whose base interpreter lives under /root: the sandbox must make it usable

CONNECT = """
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    print("connected", s.recv(4).decode())
except OSError as exc:
    print("refused", type(exc).__name__)
"""


async def test_network_is_cut_unless_the_spec_allows_it(bwrap, make_spec, tcp_server):
    blocked = await run_sandboxed([PYTHON, "-c", CONNECT, str(tcp_server)], make_spec(), bwrap)
    allowed = await run_sandboxed([PYTHON, "-c", CONNECT, str(tcp_server)], make_spec(network=True), bwrap)
    assert blocked.stdout.startswith("refused"), blocked
    assert allowed.stdout.strip() == "connected pong", allowed  # the same probe does reach it when allowed


async def test_only_the_workdir_is_writable(bwrap, make_spec, workdir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o777)
    outside.chmod(0o777)  # so that only the sandbox, not file permissions, can stop the write
    private_tmp = Path("/tmp") / f"foundry-{uuid.uuid4().hex}"
    script = f"""
import pathlib
pathlib.Path("inside.txt").write_text("ok")
for target in ({str(outside / 'x')!r}, "/usr/x", "/etc/x", {str(Path(PYTHON).parent / 'x')!r}):
    try:
        pathlib.Path(target).write_text("escaped")
        print("WROTE", target)
    except OSError as exc:
        print("denied", target, type(exc).__name__)
pathlib.Path({str(private_tmp)!r}).write_text("stays inside")
"""
    result = await run_sandboxed([PYTHON, "-c", script], make_spec(), bwrap)
    assert result.returncode == 0, result
    assert "WROTE" not in result.stdout and result.stdout.count("denied") == 4, result.stdout
    assert (workdir / "inside.txt").read_text() == "ok"
    assert list(outside.iterdir()) == []
    assert not private_tmp.exists()  # /tmp inside is private


async def test_builders_home_and_root_cannot_be_read(bwrap, make_spec, tmp_path, monkeypatch):
    home = tmp_path / "builder-home"
    home.mkdir()
    (home / "credentials").write_text("home-secret")
    monkeypatch.setenv("HOME", str(home))
    planted = Path("/root") / f".foundry-test-{uuid.uuid4().hex}"
    if os.geteuid() != 0:
        pytest.skip("planting a file in /root needs root")
    planted.write_text("root-secret")
    try:
        script = f"""
for target in ({str(home / 'credentials')!r}, {str(planted)!r}):
    try:
        print("READ", open(target).read())
    except OSError as exc:
        print("hidden", type(exc).__name__)
"""
        result = await run_sandboxed([PYTHON, "-c", script], make_spec(), bwrap)
    finally:
        planted.unlink()
    assert result.stdout.split() == ["hidden", "FileNotFoundError", "hidden", "FileNotFoundError"], result


async def test_builder_secrets_in_the_environment_do_not_reach_the_code(bwrap, make_spec, monkeypatch):
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("GITHUB_TOKEN", secret)
    script = """
import glob, os, sys
secret = sys.argv[1][::-1]
seen = [k for k, v in os.environ.items() if secret in v]
for path in glob.glob("/proc/[0-9]*/environ") + glob.glob("/proc/[0-9]*/cmdline"):
    try:
        if secret.encode() in open(path, "rb").read():
            seen.append(path)
    except OSError:
        pass
print(sorted(os.environ), "SEEN" if seen else "clean", seen)
"""
    # The probe gets the value reversed, so the secret itself appears in no command line.
    result = await run_sandboxed([PYTHON, "-c", script, secret[::-1]], make_spec(), bwrap)
    assert result.returncode == 0, result
    assert "clean" in result.stdout and "OPENAI_API_KEY" not in result.stdout, result.stdout


async def test_code_runs_as_nobody_when_the_builder_is_root(bwrap, make_spec):
    if os.geteuid() != 0:
        pytest.skip("the uid drop only happens when the builder is root")
    result = await run_sandboxed([PYTHON, "-c", "import os; print(os.getuid(), os.getgid(), os.getgroups())"],
                                 make_spec(), bwrap)
    assert result.stdout.split() == ["65534", "65534", "[]"], result


async def test_fork_bomb_is_stopped_by_the_process_limit(bwrap, make_spec, marker, processes_with):
    script = f"""
import os, time
born = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)  # {marker}
            os._exit(0)
        born += 1
except OSError as exc:
    print("stopped after", born, exc.__class__.__name__)
"""
    result = await run_sandboxed([PYTHON, "-c", script], make_spec(processes=16), bwrap)
    words = result.stdout.split()
    assert words[:2] == ["stopped", "after"] and int(words[2]) < 16, result
    assert processes_with(marker) == []  # the sleeping children died with the sandbox


async def test_shell_fork_bomb_leaves_no_process_behind(bwrap, make_spec, marker, processes_with):
    bomb = f"b() {{ b | b & }}; b # {marker}"
    result = await run_sandboxed(["/bin/sh", "-c", bomb], make_spec(processes=32, wall_seconds=2), bwrap)
    assert result.duration_s < 10, result
    await anyio.sleep(0.2)
    assert processes_with(marker) == []


async def test_memory_bomb_is_stopped_by_the_memory_limit(bwrap, make_spec):
    script = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))"
    result = await run_sandboxed([PYTHON, "-c", script], make_spec(memory_mb=256), bwrap)
    assert result.returncode != 0 and "MemoryError" in result.stderr, result
    assert not result.timed_out


async def test_cpu_and_file_size_limits_apply(bwrap, make_spec):
    spin = await run_sandboxed([PYTHON, "-c", "while True: pass"], make_spec(cpu_seconds=1), bwrap)
    big = await run_sandboxed([PYTHON, "-c", "open('big', 'wb').write(b'x' * (3 * 1024 * 1024))"],
                              make_spec(file_size_mb=1), bwrap)
    # bwrap reports a signal death as 128+n: SIGXCPU at the soft limit, or SIGKILL as soft == hard.
    assert not spin.timed_out and spin.returncode in (128 + 24, 128 + 9), spin
    assert big.returncode != 0, big


async def test_endless_loop_is_killed_at_the_wall_clock_timeout(bwrap, make_spec, marker, processes_with):
    result = await run_sandboxed([PYTHON, "-c", f"while True: pass  # {marker}"], make_spec(wall_seconds=1), bwrap)
    assert result.timed_out and result.killed_by == "timeout", result
    assert 1 <= result.duration_s < 5
    assert processes_with(marker) == []


async def test_cancelling_the_caller_kills_the_whole_tree(bwrap, make_spec, marker, processes_with):
    with anyio.move_on_after(0.5):
        await run_sandboxed(["/bin/sh", "-c", f"sleep 100 & sleep 100; # {marker}"], make_spec(), bwrap)
    await anyio.sleep(0.2)
    assert processes_with(marker) == []


def test_safe_env_copies_nothing_secret_and_refuses_secret_extras(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-leak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "leak")
    env = safe_env({"GREETING": "hi"})
    assert env["GREETING"] == "hi" and env["HOME"] == "/tmp/home"
    assert "sk-leak" not in env.values() and not any(SECRET_NAME_PATTERN.search(name) for name in env)
    with pytest.raises(SandboxError, match="DB_PASSWORD.*allow_secret_names"):
        safe_env({"DB_PASSWORD": "x"})
    assert safe_env({"DB_PASSWORD": "x"}, allow_secret_names=["DB_PASSWORD"])["DB_PASSWORD"] == "x"
    with pytest.raises(SandboxError, match="not a valid environment variable name"):
        safe_env({"1BAD": "x"})
