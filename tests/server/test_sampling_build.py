"""With no LLM configured, a build's questions are answered by the connected client's own model (MCP sampling):
the front end that took the request relays each stored question to its client while the session lives."""

from __future__ import annotations

import json

import anyio
import mcp_types as types
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from tests.server.conftest import FOUNDRY, ROOT, foundry_env, result_of
from tests.server.test_build_e2e import DRAFT, REQUIREMENT, FakeWeb


def test_build_uses_the_clients_model_through_sampling(data_dir):
    web = FakeWeb().start()
    web.add_package("mcp", {"1.0.0": "2024-11-25T00:00:00Z", "2.3.0": "2026-06-01T00:00:00Z"}, summary="MCP SDK")
    # An answer is checked against its schema, which names the matcher `expect` (not the legacy `expected`).
    tool = {**REQUIREMENT["tools"][0], "examples": [{"arguments": {"text": "hi"}, "expect": {"equals": "HI"}}]}
    replies = [json.dumps({**REQUIREMENT, "tools": [tool]}), json.dumps(DRAFT)]
    asked: list[str] = []
    systems: list[str] = []

    async def sampling_callback(context, params: types.CreateMessageRequestParams):
        asked.append(params.messages[-1].content.text)
        systems.append(params.system_prompt or "")
        return types.CreateMessageResult(role="assistant", model="client-model",
                                         content=types.TextContent(type="text", text=replies[len(asked) - 1]))

    env = foundry_env(data_dir, MCP_FOUNDRY_PYPI_URL=web.url, MCP_FOUNDRY_GITHUB_API_URL=web.url)
    env = {k: v for k, v in env.items() if not k.startswith("MCP_FOUNDRY_LLM") and k != "OPENAI_API_KEY"}
    params = StdioServerParameters(command=FOUNDRY[0], args=[*FOUNDRY[1:], "serve"], env=env, cwd=str(ROOT))

    async def main() -> tuple[dict, str]:
        # The handshake-era protocol is the one on which a server may send requests to its client.
        async with Client(params, sampling_callback=sampling_callback, mode="legacy",
                          read_timeout_seconds=240) as client:
            ticket = await client.call_tool("request_build", {"description": "make any text shout in capitals"})
            assert not ticket.is_error, ticket.content
            job_id = ticket.structured_content["job_id"]
            out = await result_of(client, job_id)
            log = await client.read_resource(f"foundry://jobs/{job_id}/log")
            return out, log.contents[0].text

    try:
        out, log = anyio.run(main)
    finally:
        web.stop()
    assert out["state"] == "succeeded", out
    assert out["result"]["outcome"] == "built" and out["result"]["deployment"]["name"] == "shout"
    assert len(asked) == 2  # analysis, then one draft: both answered by the client's model
    assert "make any text shout in capitals" in asked[0] and '"server_name": "shout"' in asked[1]
    assert "JSON schema" in systems[1]  # the answer schema travels with the question
    assert out["result"]["usage"]["calls"] == 2 and out["result"]["coder"] == "client"
    assert log.count("answered by the client's model (MCP sampling)") == 2


def test_a_build_for_the_configured_model_only_says_how_to_configure_one(data_dir):
    """coder "server" with no endpoint configured fails at once, saying how to configure one (or answer yourself)."""
    env = {k: v for k, v in foundry_env(data_dir).items() if not k.startswith("MCP_FOUNDRY_LLM")
           and k != "OPENAI_API_KEY"}
    params = StdioServerParameters(command=FOUNDRY[0], args=[*FOUNDRY[1:], "serve"], env=env, cwd=str(ROOT))

    async def main() -> dict:
        async with Client(params, mode="legacy", read_timeout_seconds=120) as client:
            ticket = await client.call_tool("request_build", {"description": "make any text shout in capitals",
                                                              "coder": "server"})
            job_id = ticket.structured_content["job_id"]
            return await result_of(client, job_id, timeout=120)

    out = anyio.run(main)
    assert out["state"] == "failed"
    assert "MCP_FOUNDRY_LLM_BASE_URL" in out["error"] and "answer_build" in out["error"]
