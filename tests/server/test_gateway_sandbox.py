"""What the sandbox of a deployed server contains, through real `mcp-foundry serve` and `mcp-foundry run` processes:
a hostile server's reach, and the secrets it is given (never on a command line)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from pathlib import Path

import anyio
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from builder import deploy
from sandbox.policy import SECRET_NAME_PATTERN
from server.gateway.launch import read_secrets_file
from tests.server.conftest import LAB_SECRET, ROOT, foundry_env
from tests.server.gateway_helpers import descendants, serve, value


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
