"""`mcp-foundry build` with live progress, then deployed servers from the CLI and over MCP."""

from __future__ import annotations

import json
import subprocess

import anyio

from tests.server.conftest import FOUNDRY, ROOT, foundry_env, stdio_foundry
from tests.server.test_build_e2e import DRAFT, REQUIREMENT, FakeOpenAI, FakeWeb


def _cli(env, *args, timeout=300):
    return subprocess.run([*FOUNDRY, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_cli_build_then_manage_versions_from_cli_and_mcp(data_dir):
    llm, web = FakeOpenAI().start(), FakeWeb().start()
    web.add_package("mcp", {"1.0.0": "2024-11-25T00:00:00Z", "2.3.0": "2026-06-01T00:00:00Z"}, summary="MCP SDK")
    llm.script([json.dumps(REQUIREMENT), json.dumps(DRAFT)])
    env = foundry_env(data_dir, MCP_FOUNDRY_LLM_PROVIDER="openai", MCP_FOUNDRY_LLM_BASE_URL=llm.base_url,
                      MCP_FOUNDRY_LLM_MODEL="fake", MCP_FOUNDRY_PYPI_URL=web.url, MCP_FOUNDRY_GITHUB_API_URL=web.url)
    try:
        first = _cli(env, "build", "a tool that upper-cases text")
        again = _cli(env, "build", "a tool that upper-cases text")
    finally:
        llm.stop()
        web.stop()
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.startswith("BUILT") and "deployed shout v1" in first.stdout
    assert "%] == analyze: " in first.stderr and "%] == loop: " in first.stderr  # live progress on stderr
    assert again.returncode == 0 and again.stdout.startswith("REUSED") and "deployed shout v2" in again.stdout
    assert llm.calls == 2  # the repeat needed no LLM

    listed = _cli(env, "servers")
    assert "shout" in listed.stdout and "current 2" in listed.stdout and "1, 2" in listed.stdout
    assert "now 1" in _cli(env, "servers", "rollback", "shout").stdout
    shown = json.loads(_cli(env, "servers", "show", "shout").stdout)
    assert shown["version"] == "1" and shown["client_config"]["mcpServers"]["shout"]["command"]
    missing = _cli(env, "servers", "show", "nosuch")
    assert missing.returncode == 2 and "name" in missing.stderr and "nosuch" in missing.stderr

    async def over_mcp():
        async with stdio_foundry(data_dir) as client:
            servers = (await client.call_tool("list_servers", {})).structured_content["servers"]
            assert [(s["name"], s["current"], s["versions"]) for s in servers] == [("shout", "1", ["1", "2"])]
            oldest = await client.call_tool("rollback_server", {"name": "shout"})
            assert oldest.is_error and "version" in oldest.content[0].text
            forward = await client.call_tool("rollback_server", {"name": "shout", "version": "2"})
            assert forward.structured_content["version"] == "2"
            manifest = (await client.call_tool("get_server", {"name": "shout"})).structured_content
            assert manifest["version"] == "2" and manifest["reused_case_id"]
            assert set(manifest["hashes"]) >= {"server.py", "requirements.txt"}
            removed = await client.call_tool("remove_server", {"name": "shout"})
            assert removed.structured_content["removed_versions"] == ["1", "2"]
            assert (await client.call_tool("list_servers", {})).structured_content["servers"] == []
            gone = await client.call_tool("get_server", {"name": "shout"})
            assert gone.is_error and "no deployed server" in gone.content[0].text

    anyio.run(over_mcp)
    assert not (data_dir / "servers" / "shout").exists()
