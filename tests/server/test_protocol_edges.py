"""What a client sees at the edges of the protocol and of each tool's inputs, over real stdio."""

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from tests.server.conftest import FIXTURES, stdio_foundry


def test_capabilities_titles_descriptions_and_unknown_prompts(data_dir):
    async def main():
        async with stdio_foundry(data_dir) as client:
            caps = client.server_capabilities
            tools = (await client.list_tools()).tools
            with pytest.raises(MCPError) as unknown:
                await client.get_prompt("no_such_prompt")
            return caps, tools, unknown.value

    caps, tools, unknown = anyio.run(main)
    # Prompts come only from mounted servers: the capability says the list may change as servers are deployed
    # (with --no-mount it is not advertised at all: tests/server/test_gateway.py).
    assert caps.prompts is not None and caps.prompts.list_changed and caps.tools is not None
    assert unknown.code in (-32601, -32602), unknown  # not 0, not an internal error
    for tool in tools:
        assert tool.title and tool.title[0].isupper(), tool.name
        lines = (tool.description or "").splitlines()
        assert lines and not any(line.startswith(" ") for line in lines), (tool.name, tool.description)


REFUSED = [
    ({"path": "/tmp/x\0y"}, "path", "NUL byte"),
    ({"path": "/proc/1/root"}, "path", "kernel file system"),
    ({"path": "/proc/self/cwd"}, "path", "kernel file system"),
    ({"command": "python -c 'print(1)"}, "command", "unbalanced quote"),
    ({"command": "python -m x\0"}, "command", "NUL byte"),
    ({"path": str(FIXTURES / "good_server"), "needs_network": "yes"}, "needs_network", "must be true or false"),
    ({"path": str(FIXTURES / "good_server"), "needs_network": 1}, "needs_network", "must be true or false"),
    ({"path": str(FIXTURES / "good_server"), "cases_file": "/proc/self/environ"}, "cases_file", "kernel file"),
]


def test_validate_server_names_the_field_and_what_it_accepts(data_dir):
    async def main():
        async with stdio_foundry(data_dir) as client:
            answers = [(await client.call_tool("validate_server", arguments), field, words)
                       for arguments, field, words in REFUSED]
            jobs = (await client.call_tool("list_builds", {})).structured_content["jobs"]
            return answers, jobs

    answers, jobs = anyio.run(main)
    for res, field, words in answers:
        text = res.content[0].text
        assert res.is_error and text.startswith(f"validate_server: {field}: "), text
        assert words in text and "(accepted: " in text, text
    assert jobs == []  # nothing was started


def test_argument_errors_and_domain_errors_read_alike(data_dir):
    async def main():
        async with stdio_foundry(data_dir) as client:
            shapes = {}
            for label, tool, arguments in (
                ("schema", "build_status", {"job_id": "bad id!"}),
                ("type", "request_build", {"description": "word statistics of a text", "needs_network": "yes"}),
                ("domain", "build_status", {"job_id": "nosuchjob"}),
                ("domain-list", "list_builds", {"state": "sleeping"}),
                ("unknown tool", "no_such_tool", {}),
            ):
                res = await client.call_tool(tool, arguments)
                shapes[label] = (tool, res.is_error, res.content[0].text)
            return shapes

    for label, (tool, is_error, text) in anyio.run(main).items():
        assert is_error, (label, text)
        if label == "unknown tool":
            assert text.startswith("'no_such_tool': no such tool (accepted: ") and "validate_server" in text, text
            continue
        assert text.startswith(f"{tool}: ") and "(accepted: " in text, (label, text)
        assert "Error executing tool" not in text and "invalid arguments" not in text, (label, text)
