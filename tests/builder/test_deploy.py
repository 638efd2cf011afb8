"""Deploy: versions, the current pointer, rollback, removal, hashes, and registration that never loses a build."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from builder import deploy
from builder.draft import ServerDraft
from builder.errors import InputError

FILES = {"server.py": "print('v1')\n", "requirements.txt": "mcp==2.3.0\n", "cases.json": '{"cases": []}'}


@pytest.fixture
def env(tmp_path) -> Path:
    """A stand-in environment directory shaped like a venv (deploy only links it; running is tested elsewhere)."""
    root = tmp_path / "env"
    (root / "bin").mkdir(parents=True)
    os.symlink(sys.executable, root / "bin" / "python")
    (root / "lib.txt").write_text("site-packages stand-in\n")
    (root / "foundry-env.json").write_text("{}")
    return root


def ship(servers: Path, env: Path, text: str = "v1", name: str = "text_stats") -> deploy.Manifest:
    files = dict(FILES, **{"server.py": f"print({text!r})\n"})
    return deploy.deploy(servers, name, ServerDraft(files=files), env_path=env, summary=f"summary {text}")


def test_rebuild_adds_a_version_keeps_the_old_and_moves_current(tmp_path, env):
    servers = tmp_path / "servers"
    m1, m2 = ship(servers, env, "v1"), ship(servers, env, "v2")
    assert (m1.version, m2.version) == ("1", "2")
    assert deploy.current_version(servers, "text_stats") == "2"
    assert (Path(m1.directory) / "server.py").read_text() == "print('v1')\n"
    [summary] = deploy.list_servers(servers)
    assert summary.versions == ["1", "2"] and summary.current == "2" and summary.env_present


def test_manifest_records_hashes_command_and_client_config(tmp_path, env):
    m = ship(tmp_path / "servers", env)
    d = Path(m.directory)
    assert m.hashes["server.py"] == hashlib.sha256((d / "server.py").read_bytes()).hexdigest()
    assert m.command == [str(d / ".venv" / "bin" / "python"), str(d / "server.py")]
    assert json.loads((d / "client_config.json").read_text()) == {
        "mcpServers": {"text_stats": {"command": m.command[0], "args": [m.command[1]]}}}
    assert deploy.get_server(tmp_path / "servers", "text_stats") == m
    # The version's own venv is a hard-linked copy: same inode, and the env cache's marker is left out.
    assert (d / ".venv" / "lib.txt").stat().st_ino == (env / "lib.txt").stat().st_ino
    assert not (d / ".venv" / "foundry-env.json").exists()
    assert deploy.verify_files(m) == []
    (d / "server.py").write_text("tampered")
    assert deploy.verify_files(m) == ["server.py"]


def test_rollback_points_current_at_the_previous_or_a_named_version(tmp_path, env):
    servers = tmp_path / "servers"
    for v in ("v1", "v2", "v3"):
        ship(servers, env, v)
    assert deploy.rollback_server(servers, "text_stats").version == "2"
    assert deploy.rollback_server(servers, "text_stats").version == "1"
    with pytest.raises(InputError, match="oldest version"):
        deploy.rollback_server(servers, "text_stats")
    assert deploy.rollback_server(servers, "text_stats", "3").version == "3"
    assert deploy.get_server(servers, "text_stats").summary == "summary v3"


def test_remove_one_version_or_all(tmp_path, env):
    servers = tmp_path / "servers"
    ship(servers, env, "v1"), ship(servers, env, "v2")
    assert deploy.remove_server(servers, "text_stats", "2") == ["2"]
    assert deploy.current_version(servers, "text_stats") == "1"  # the pointer left the removed version
    assert deploy.remove_server(servers, "text_stats") == ["1"]
    assert deploy.list_servers(servers) == [] and not (servers / "text_stats").exists()


def test_unknown_names_and_versions_are_input_errors_naming_the_field(tmp_path, env):
    servers = tmp_path / "servers"
    with pytest.raises(InputError) as e:
        deploy.get_server(servers, "nope")
    assert e.value.field == "name"
    ship(servers, env)
    with pytest.raises(InputError) as e:
        deploy.get_server(servers, "text_stats", "7")
    assert e.value.field == "version" and "one of 1" in str(e.value)
    with pytest.raises(InputError) as e:
        deploy.get_server(servers, "../etc")
    assert e.value.field == "name"


class Registry:
    """A tool registry on 127.0.0.1 that answers `statuses` in order (then 201) and records bodies."""

    def __init__(self, statuses: list[int]):
        self.statuses, self.bodies = list(statuses), []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                registry.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                status = registry.statuses.pop(0) if registry.statuses else 201
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/servers"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.anyio
async def test_registration_retries_and_records_the_outcome(tmp_path, env):
    registry = Registry([500, 503])
    try:
        m = ship(tmp_path / "servers", env)
        reg = await deploy.register(m, registry.url, backoff_s=0.01)
    finally:
        registry.close()
    assert reg.ok and reg.attempts == 3 and reg.status == 201
    assert registry.bodies[-1]["name"] == "text_stats" and registry.bodies[-1]["hashes"] == m.hashes
    assert deploy.get_server(tmp_path / "servers", "text_stats").registration == reg


@pytest.mark.anyio
async def test_an_unreachable_registry_never_loses_the_build(tmp_path, env):
    registry = Registry([])
    url = registry.url
    registry.close()  # nothing listens there any more
    m = ship(tmp_path / "servers", env)
    logged: list[str] = []
    reg = await deploy.register(m, url, attempts=2, backoff_s=0.01, log=logged.append)
    assert not reg.ok and reg.attempts == 2 and "Connect" in reg.error and len(logged) == 2
    kept = deploy.get_server(tmp_path / "servers", "text_stats")
    assert kept.registration == reg and (Path(kept.directory) / "server.py").is_file()
