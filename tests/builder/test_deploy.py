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
    # The snippet clients get runs the current version in the sandbox; the direct command is labelled unsandboxed.
    snippet = json.loads((d / "client_config.json").read_text())["mcpServers"]["text_stats"]
    assert snippet["args"][-4:] == ["--data-dir", str(tmp_path), "run", "text_stats"]
    assert Path(snippet["command"]).name in ("mcp-foundry", "python") and snippet == m.client_config["mcpServers"][
        "text_stats"]
    assert m.unsandboxed_client_config == {
        "mcpServers": {"text_stats": {"command": m.command[0], "args": [m.command[1]]}}}
    assert (m.needs_network, m.secrets) == (False, [])
    assert deploy.get_server(tmp_path / "servers", "text_stats") == m
    # The version's own venv is a hard-linked copy: same inode, and the env cache's marker is left out.
    assert (d / ".venv" / "lib.txt").stat().st_ino == (env / "lib.txt").stat().st_ino
    assert not (d / ".venv" / "foundry-env.json").exists()
    assert deploy.verify_files(m) == []
    (d / "server.py").write_text("tampered")
    assert deploy.verify_files(m) == ["server.py"]


def test_a_servers_dir_set_apart_is_named_by_its_variable_in_the_client_snippet(tmp_path, env):
    from builder.config import load_settings

    shared = tmp_path / "team" / "deployed"
    settings = load_settings(environ={"MCP_FOUNDRY_DATA_DIR": str(tmp_path / "data"),
                                      "MCP_FOUNDRY_SERVERS_DIR": str(shared)})
    assert settings.servers_dir == shared and settings.public()["servers_dir_path"] == str(shared)
    m = ship(settings.servers_dir, env)
    snippet = m.client_config["mcpServers"]["text_stats"]
    assert snippet["args"][-2:] == ["run", "text_stats"] and "--data-dir" not in snippet["args"]
    assert snippet["env"] == {"MCP_FOUNDRY_SERVERS_DIR": str(shared)}
    assert [s.name for s in deploy.list_servers(shared)] == ["text_stats"]


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


def test_every_change_moves_the_generation_and_state_is_shared_until_the_last_version_goes(tmp_path, env):
    servers = tmp_path / "servers"
    seen = [deploy.generation(servers)]
    for change in (lambda: ship(servers, env, "v1"), lambda: ship(servers, env, "v2"),
                   lambda: deploy.rollback_server(servers, "text_stats"),
                   lambda: deploy.remove_server(servers, "text_stats", "2")):
        change()
        seen.append(deploy.generation(servers))
    assert len(set(seen)) == len(seen) and seen[0] == ""  # each change, in whatever process, leaves a new value
    state = deploy.state_dir(servers, "text_stats")
    state.mkdir()
    (state / "data.db").write_text("kept")
    assert "state kept" in deploy.state_note(servers, "text_stats", "rollback")
    ship(servers, env, "v3")
    deploy.remove_server(servers, "text_stats", "1")
    assert "state kept" in deploy.state_note(servers, "text_stats", "remove") and (state / "data.db").exists()
    assert [s.name for s in deploy.list_servers(servers)] == ["text_stats"]  # the state dir is no version
    deploy.remove_server(servers, "text_stats")
    assert "state removed" in deploy.state_note(servers, "text_stats", "remove") and not state.exists()


def test_declared_secrets_are_variable_names_and_never_the_foundrys_own(tmp_path, env):
    files = dict(FILES)
    m = deploy.deploy(tmp_path / "servers", "weather", ServerDraft(files=files), env_path=env, needs_network=True,
                      secrets=["WEATHER_API_KEY", "WEATHER_API_KEY", "REGION"])
    assert (m.needs_network, m.secrets) == (True, ["REGION", "WEATHER_API_KEY"])
    for bad in ("OPENAI_API_KEY", "MCP_FOUNDRY_LLM_API_KEY", "MCP_FOUNDRY_ANYTHING", "1ABC", "A-B", ""):
        with pytest.raises(InputError) as e:
            deploy.deploy(tmp_path / "servers", "weather", ServerDraft(files=files), env_path=env, secrets=[bad])
        assert e.value.field == "secrets", bad
    assert deploy.list_servers(tmp_path / "servers")[0].versions == ["1"]  # refused deploys left nothing


def test_a_manifest_written_before_sandboxed_snippets_reads_as_unsandboxed_with_a_sandboxed_snippet(tmp_path, env):
    m = ship(tmp_path / "servers", env)
    old = json.loads(Path(m.directory, "manifest.json").read_text())
    for field in ("needs_network", "secrets", "unsandboxed_client_config"):
        old.pop(field)
    old["client_config"] = old_snippet = {"mcpServers": {"text_stats": {"command": m.command[0],
                                                                        "args": [m.command[1]]}}}
    Path(m.directory, "manifest.json").write_text(json.dumps(old))
    read = deploy.get_server(tmp_path / "servers", "text_stats")
    assert read.unsandboxed_client_config == old_snippet and read.client_config == m.client_config
    assert (read.needs_network, read.secrets) == (False, [])


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
