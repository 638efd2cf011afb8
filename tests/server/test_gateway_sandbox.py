"""What the sandbox of a deployed server contains, through real `mcp-foundry serve` and `mcp-foundry run` processes:
a hostile server's reach, its fork and memory bombs (a cgroup per run), the secrets it is given (never on a command
line), and the sandbox's removal when the server ends."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import anyio
import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from builder import deploy
from sandbox.limits import cgroups
from sandbox.policy import SECRET_NAME_PATTERN
from server.gateway.launch import read_secrets_file
from tests.server.conftest import FOUNDRY, LAB_SECRET, ROOT, foundry_env
from tests.server.gateway_helpers import cli, descendants, serve, value

PROBE_NOWHERE = {"home_file": "/nonexistent/file", "outside_file": "/nonexistent/out", "port": 9}


class Listener:
    """A TCP listener on 127.0.0.1 that records whatever connects."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.received.append(conn.recv(200) or b"(connected)")
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def run_client(data_dir: Path, name: str, **env: str) -> Client:
    """A real MCP client of `mcp-foundry run NAME`, as the manifest's client config starts it."""
    entry = deploy.get_server(data_dir / "servers", name).client_config["mcpServers"][name]
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=foundry_env(data_dir, **env),
                                   cwd=str(ROOT))
    return Client(params, mode="legacy", cache=None)


def server_pids(name: str) -> list[int]:
    """This test's descendants that belong to deployed server `name`'s sandbox (their command lines name its dir)."""
    return [pid for pid, cmd in descendants(os.getpid()) if f"servers/{name}/" in cmd]


def cgroup_dirs(pid: int) -> dict[str, Path]:
    """controller -> the sandbox cgroup that process `pid` is in (none when it is in no sandbox cgroup)."""
    support, found = cgroups.detect(), {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        group = path.rstrip("/").rsplit("/", 1)[-1]
        for controller, base in support.bases.items():
            in_line = names == "" if support.versions[controller] == 2 else controller in names.split(",")
            if in_line and group.startswith("sb-"):
                found[controller] = base / group
    return found


def tmp_of(name: str) -> Path | None:
    """The host dir shown as /tmp in deployed server `name`'s bubblewrap sandbox (from bwrap's command line)."""
    for pid in server_pids(name):
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        for i in range(len(args) - 2):
            if args[i] == b"--bind" and args[i + 2] == b"/tmp":
                return Path(args[i + 1].decode())
    return None


def read(path: Path) -> str:
    return path.read_text().strip()


def wait_until(check, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not true within {timeout} s: {check.__doc__ or check}"
        time.sleep(0.1)


def test_a_hostile_server_is_contained_through_the_gateway_and_under_run(deployed, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("the user's private notes")
    outside = tmp_path / "escaped.txt"
    secrets = {"GITHUB_TOKEN": "ghp_" + "q" * 36, "MY_SERVICE_PASSWORD": "hunter2-hunter2", "OPENAI_API_KEY": "sk-x"}
    env = {"HOME": str(home), **secrets}
    listener = Listener()
    manifest = deploy.get_server(deployed / "servers", "hostile")
    args = {"home_file": str(home / "notes.txt"), "outside_file": str(outside), "port": listener.port}

    async def through_gateway():
        async with serve(deployed, **env) as client:
            return value(await client.call_tool("hostile__probe", args))

    async def under_run():
        async with run_client(deployed, "hostile", **env) as client:
            return value(await client.call_tool("probe", args))

    try:
        reports = {"gateway": anyio.run(through_gateway), "run": anyio.run(under_run)}
    finally:
        listener.close()
    for how, report in reports.items():
        dump = json.dumps(report)
        assert not report["home"]["ok"] and "private notes" not in dump, (how, report["home"])
        assert not report["write_outside"]["ok"] and not report["write_code"]["ok"], (how, report)
        assert not report["connect"]["ok"], (how, report["connect"])
        assert not [k for k in report["env"] if SECRET_NAME_PATTERN.search(k)], (how, report["env"])
        assert not any(v in dump for v in secrets.values()), how  # not in its env, nor in pid 1's
        assert report["env"]["PWD"] == str(deployed / "servers" / "hostile" / "state"), how
    assert listener.received == [] and not outside.exists()
    assert deploy.verify_files(manifest) == []  # its code is as deployed
    assert (home / "notes.txt").read_text() == "the user's private notes" and len(list(home.iterdir())) == 1


def test_a_deployed_servers_memory_and_fork_bombs_stay_in_its_cgroup_while_the_rest_answers(deployed):
    support = cgroups.detect()
    if not {"memory", "pids"} <= set(support.bases):
        pytest.skip(f"no per-sandbox memory and pids cgroups here: {support.describe('memory')}; "
                    f"{support.describe('pids')}")
    limits = {"MCP_FOUNDRY_SANDBOX_MEMORY_MB": "256", "MCP_FOUNDRY_SANDBOX_PROCESSES": "48",
              "MCP_FOUNDRY_IDLE_TIMEOUT": "8", "MCP_FOUNDRY_INIT_TIMEOUT": "30"}
    mib = 1024 * 1024

    async def still_answering(client: Client) -> None:
        """The foundry's own tools and another mounted server answer."""
        with anyio.fail_after(30):
            assert value(await client.call_tool("lab__echo", {"text": "still here"})) == "still here"
            assert not (await client.call_tool("list_builds", {})).is_error

    async def main():
        async with serve(deployed, **limits) as client:
            value(await client.call_tool("hostile__probe", PROBE_NOWHERE))  # harmless: it starts the server
            (first, *_) = server_pids("hostile")
            groups = cgroup_dirs(first)
            # Checked before any bomb goes off: without its own cgroup, a fork bomb would share uid 65534's budget.
            assert {"memory", "pids"} <= set(groups), f"hostile runs in no sandbox cgroup: {groups}"
            assert read(groups["pids"] / "pids.max") == "48"
            v2 = support.versions["memory"] == 2
            assert int(read(groups["memory"] / ("memory.max" if v2 else "memory.limit_in_bytes"))) == 256 * mib
            shown = (await client.call_tool("get_server", {"name": "hostile"})).structured_content
            states = {s["name"]: s for s in shown["limits"]}
            assert states["processes"]["in_force"] and "48 processes" in states["processes"]["detail"], states
            assert states["memory"]["in_force"] and "256 MiB" in states["memory"]["detail"], states
            assert "state dir" in states["disk"]["detail"] and shown["state_dir_bytes"] >= 0

            bombed = value(await client.call_tool("hostile__memory_bomb",
                                                  {"processes": 6, "megabytes": 100, "seconds": 3}))
            peak = int(read(groups["memory"] / ("memory.peak" if v2 else "memory.max_usage_in_bytes")))
            assert "signal 9" in bombed["children"], bombed  # out-of-memory kills, inside its cgroup only
            assert peak <= 256 * mib, peak / mib

            value(await client.call_tool("hostile__fork_bomb", {}))
            events = groups["pids"] / "pids.events"
            with anyio.fail_after(20):
                while int(read(events).split()[-1]) == 0:  # "max N": forks refused at the limit
                    await anyio.sleep(0.1)
            assert int(read(groups["pids"] / "pids.current")) <= 48 and len(server_pids("hostile")) <= 48
            await still_answering(client)  # while the bomb goes on
            # Idle, it is stopped; its cgroup goes with everything the bomb made.
            with anyio.fail_after(30):
                while server_pids("hostile") or any(path.exists() for path in groups.values()):
                    await anyio.sleep(0.2)
            await still_answering(client)

    anyio.run(main)


def test_a_declared_secret_is_on_no_command_line_through_the_gateway_or_under_run(deployed):
    """lab declares LAB_API_KEY, set in secrets.env: while lab runs, no process of this test's tree shows the value."""
    secret = read_secrets_file(deployed / "secrets.env")[LAB_SECRET]
    digest = hashlib.sha256(secret.encode()).hexdigest()

    async def look(client: Client, tool: str) -> list[str]:
        assert value(await client.call_tool(tool, {"name": LAB_SECRET})) == digest  # lab did receive it
        return [cmd for _, cmd in descendants(os.getpid())]

    async def through_gateway():
        async with serve(deployed) as client:
            return await look(client, "lab__secret_digest")

    async def under_run():
        async with run_client(deployed, "lab") as client:
            return await look(client, "secret_digest")

    for how, cmdlines in (("gateway", anyio.run(through_gateway)), ("run", anyio.run(under_run))):
        assert [cmd for cmd in cmdlines if "servers/lab/" in cmd], (how, cmdlines)  # lab's sandbox was looked at
        assert not [cmd for cmd in cmdlines if secret in cmd], how


def test_run_removes_its_servers_sandbox_when_the_server_ends(deployed):
    """`run` supervises its server: closing the client's stdin, or SIGTERM to `run`, ends the server, and the cgroup
    and /tmp of its sandbox go with it."""

    def sandbox_of(name: str) -> tuple[dict[str, Path], Path]:
        pids, tmp = server_pids(name), tmp_of(name)
        assert pids and tmp is not None and tmp.is_dir(), (pids, tmp)
        return cgroup_dirs(pids[0]), tmp

    async def closed_by_the_client():
        async with run_client(deployed, "lab") as client:
            assert value(await client.call_tool("echo", {"text": "alone"})) == "alone"
            return sandbox_of("lab")

    groups, tmp = anyio.run(closed_by_the_client)
    assert set(groups) == set(cgroups.detect().bases), groups  # it did run in a cgroup of its own
    wait_until(lambda: not tmp.exists() and not [path for path in groups.values() if path.exists()], 10)

    run = subprocess.Popen([*FOUNDRY, "run", "lab"], cwd=ROOT, env=foundry_env(deployed), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: server_pids("lab") and tmp_of("lab") and cgroup_dirs(server_pids("lab")[-1]))
        groups, tmp = sandbox_of("lab")
        run.send_signal(signal.SIGTERM)
        assert run.wait(20) == 128 + signal.SIGTERM
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    assert not server_pids("lab") and not tmp.exists()
    assert not [path for path in groups.values() if path.exists()]


def test_doctor_says_which_limits_a_mounted_server_gets_and_its_state_dirs_size(deployed):
    doctor = cli(deployed, "doctor", MCP_FOUNDRY_SANDBOX_PROCESSES="40")
    assert doctor.returncode == 0, doctor.stderr
    section = doctor.stdout.split("limits of each mounted server")[1].split("worker:")[0]
    support = cgroups.detect()
    (line,) = [line for line in section.splitlines() if " processes " in line]
    assert line.strip().startswith("in force") == ("pids" in support.bases), line
    assert "40 processes/threads" in line or "pids" not in support.bases, line
    assert "state dir is on the host's disk with no quota" in section and "KiB" in section
    shown = cli(deployed, "servers", "show", "lab")
    details = json.loads(shown.stdout)
    assert {s["name"] for s in details["limits"]} == {"disk", "memory", "processes", "cpu"}
    assert details["state_dir"].endswith("servers/lab/state") and isinstance(details["state_dir_bytes"], int)
