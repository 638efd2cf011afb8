"""The Reason stage's project rules on generated code."""

from __future__ import annotations

import json

import pytest

from builder.draft import ServerDraft
from builder.reason import lint

HEAD = "import sys\nfrom mcp.server.mcpserver import MCPServer\nmcp = MCPServer('s')\n"
TAIL = "\nif __name__ == '__main__':\n    mcp.run()\n"


def _stdout_findings(tmp_path, body: str) -> list[str]:
    draft = ServerDraft(files={"server.py": HEAD + body + TAIL, "requirements.txt": "mcp==2.3.0\n",
                               "cases.json": json.dumps({"cases": []})})
    directory = draft.write_to(tmp_path / "d")
    return [f.message for f in lint(draft, directory) if f.blocking and "stdout" in f.message]


@pytest.mark.parametrize("line", ["print('x')", "print('x', file=sys.stdout)", "print('x', file=None)",
                                  "sys.stdout.write('x')"])
def test_writes_to_stdout_are_blocked(tmp_path, line):
    assert _stdout_findings(tmp_path, line + "\n")


def test_printing_to_stderr_is_allowed(tmp_path):
    assert _stdout_findings(tmp_path, "print('x', file=sys.stderr)\n") == []


def test_a_tool_without_annotations_is_blocked(tmp_path):
    body = "@mcp.tool()\ndef shout(text: str) -> str:\n    return text.upper()\n"
    draft = ServerDraft(files={"server.py": HEAD + body + TAIL, "requirements.txt": "mcp==2.3.0\n",
                               "cases.json": json.dumps({"cases": [{"tool": "shout", "arguments": {"text": "a"}}]})})
    findings = lint(draft, draft.write_to(tmp_path / "d"))
    assert any(f.blocking and "tool shout has no annotations" in f.message for f in findings)


REQ = {"server_name": "http_status", "summary": "Status codes.",
       "tools": [{"name": "phrase", "description": "The phrase of a code."}],
       "resources": [{"uri": "http-status://{code}", "name": "status", "description": "One code."}],
       "prompts": [{"name": "explain_status", "description": "Explain a code."}]}
SERVER = '''from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

mcp = MCPServer(NAME)


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def phrase(code: int) -> str:
    """The phrase of a code."""
    return "OK"
RESOURCES
if __name__ == "__main__":
    mcp.run()
'''
DEFINED = '''

@mcp.resource("http-status://{code}", name="status", mime_type="text/plain")
def status(code: str) -> str:
    return code


@mcp.prompt(name="explain_status")
def explain(code: str) -> str:
    return code

'''


def _lint_requested(tmp_path, name: str = '"http_status"', resources: str = DEFINED, cases: list | None = None,
                    extra: dict | None = None) -> list[str]:
    from builder.requirement import Requirement

    cases = cases if cases is not None else [{"tool": "phrase", "arguments": {"code": 200}}]
    draft = ServerDraft(files={"server.py": SERVER.replace("NAME", name).replace("RESOURCES", resources),
                               "requirements.txt": "mcp==2.3.0\n", "cases.json": json.dumps({"cases": cases}),
                               **(extra or {})})
    found = lint(draft, draft.write_to(tmp_path / "d"), Requirement.model_validate(REQ))
    return [f"[{f.error_class}] {f.message}" for f in found if f.blocking]


def test_a_server_defining_the_requested_name_resources_and_prompts_passes(tmp_path):
    assert _lint_requested(tmp_path, cases=[
        {"resource": "http-status://404", "expect": {"contains": "404"}},
        {"prompt": "explain_status", "arguments": {"code": "404"}}]) == []


def test_a_server_named_otherwise_than_the_requirement_is_blocked(tmp_path):
    [finding] = _lint_requested(tmp_path, name='"HTTP Status Server"')
    assert finding.startswith("[protocol]") and "create it as MCPServer('http_status')" in finding


def test_requested_resources_and_prompts_missing_from_the_server_are_blocked(tmp_path):
    found = _lint_requested(tmp_path, resources="\n")
    assert "[assertion] requested resources not defined: http-status://{code}" in found[0]
    assert "[assertion] requested prompts not defined: explain_status" in found[1]


def test_cases_reading_unserved_resources_unknown_prompts_or_unmade_fixtures_are_blocked(tmp_path):
    found = _lint_requested(tmp_path, cases=[
        {"resource": "status://404"}, {"prompt": "explain"},
        {"tool": "phrase", "arguments": {"code": {"$fixture": "codes.txt", "as": "text"}}}])
    assert any("cases read resources ['status://404'] that no resource serves" in f for f in found)
    assert any("cases get undefined prompts ['explain']" in f for f in found)
    assert any("cases refer to fixtures ['codes.txt'], but there is no fixtures.py" in f for f in found)
    assert _lint_requested(tmp_path / "with", cases=[
        {"tool": "phrase", "arguments": {"code": {"$fixture": "codes.txt", "as": "text"}}}],
        extra={"fixtures.py": "open('fixtures/codes.txt', 'w').write('200')\n"}) == []
