"""End to end: a real MCP client over stdio asks `mcp-foundry serve` for a build, follows it, and then calls a tool
of the server it deployed, started exactly as the returned client config says.

The LLM and PyPI are local fakes at the wire (the same scripted endpoint the builder tests use).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "builder")]
from fake_openai import FakeOpenAI  # noqa: E402
from fake_web import FakeWeb  # noqa: E402

from tests.server.conftest import result_of, stdio_foundry  # noqa: E402

REQUIREMENT = {
    "server_name": "shout", "summary": "Upper-cases text.", "category": "text",
    "tools": [{"name": "shout", "description": "Upper-case a text.",
               "params": [{"name": "text", "type": "string"}], "returns": "the text in capitals",
               "examples": [{"arguments": {"text": "hi"}, "expected": "HI"}]}],
}
SERVER = '''from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

mcp = MCPServer("shout")


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                      open_world_hint=False))
def shout(text: str) -> str:
    """Upper-case a text."""
    if len(text) > 1000:
        raise ToolError("text is longer than 1000 characters; send a shorter piece")
    return text.upper()


if __name__ == "__main__":
    mcp.run()
'''
DRAFT = {"files": {"server.py": SERVER, "requirements.txt": "mcp==2.3.0\n", "README.md": "# shout\n",
                   "Dockerfile": "FROM python:3.11-slim\n",
                   "cases.json": json.dumps({"cases": [{"tool": "shout", "arguments": {"text": "hi"},
                                                        "expect": {"equals": "HI"}}]})}}


def test_request_build_over_stdio_deploys_a_server_that_answers(data_dir):
    llm, web = FakeOpenAI().start(), FakeWeb().start()
    web.add_package("mcp", {"1.0.0": "2024-11-25T00:00:00Z", "1.9.0": "2025-06-01T00:00:00Z",
                            "2.3.0": "2026-06-01T00:00:00Z"}, summary="Model Context Protocol SDK")
    llm.script([json.dumps(REQUIREMENT), json.dumps(DRAFT)])
    extra = {"MCP_FOUNDRY_LLM_PROVIDER": "openai", "MCP_FOUNDRY_LLM_BASE_URL": llm.base_url,
             "MCP_FOUNDRY_LLM_MODEL": "fake-model", "MCP_FOUNDRY_PYPI_URL": web.url,
             "MCP_FOUNDRY_GITHUB_API_URL": web.url}

    async def main() -> tuple[dict, dict]:
        async with stdio_foundry(data_dir, **extra) as client:
            ticket = await client.call_tool("request_build", {"description": "a tool that upper-cases text"})
            assert not ticket.is_error, ticket.content
            job_id = ticket.structured_content["job_id"]
            status = await client.call_tool("build_status", {"job_id": job_id})
            assert status.structured_content["state"] in ("queued", "running", "succeeded")
            out = await result_of(client, job_id)
            assert out["state"] == "succeeded", out
            server = await client.call_tool("get_server", {"name": "shout"})
            assert not server.is_error, server.content
            return out["result"], server.structured_content

    try:
        result, manifest = anyio.run(main)
    finally:
        llm.stop()
        web.stop()
    assert result["outcome"] == "built" and len(result["turns"]) == 1 and llm.calls == 2
    assert manifest["version"] == result["deployment"]["version"] == "1"

    async def call_deployed() -> str:
        entry = manifest["client_config"]["mcpServers"]["shout"]
        async with Client(StdioServerParameters(command=entry["command"], args=entry["args"])) as client:
            res = await client.call_tool("shout", {"text": "it works"})
        assert not res.is_error, res.content
        return res.content[0].text

    assert anyio.run(call_deployed) == "IT WORKS"
