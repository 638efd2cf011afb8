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
