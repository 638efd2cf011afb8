"""The code writer's prompt tells the model what the Reason step and the validator will check."""

from __future__ import annotations

import json
import textwrap

from builder.draft import ServerDraft
from builder.prompts import render
from builder.reason import lint, parse
from sandbox.cases import CASE_FIELDS, EXPECT_KINDS, parse_cases


def _example_server(prompt: str) -> str:
    """The indented server.py example of the code prompt."""
    block = prompt.split("Rules for server.py", 1)[1].split("\n", 1)[1].split("\n- ", 1)[0]
    return textwrap.dedent(block)


def test_the_prompts_example_server_passes_the_reason_checks(tmp_path):
    prompt = render("code_system")
    server = _example_server(prompt)
    cases = {"cases": [{"tool": "word_count", "arguments": {"text": "a b"}, "expect": {"equals": 2}}]}
    draft = ServerDraft(files={"server.py": server, "requirements.txt": "mcp==2.3.0\n",
                               "cases.json": json.dumps(cases)})
    findings = parse(draft) + lint(draft, draft.write_to(tmp_path / "d"))
    assert [f for f in findings if f.blocking] == []  # a model copying the example must not be blocked


def test_the_code_prompt_names_every_cases_field_expectation_and_tool_name_rule():
    prompt = render("code_system")
    for word in (*CASE_FIELDS, *EXPECT_KINDS):
        assert f'"{word}"' in prompt or f" {word} " in prompt or f"{word}:" in prompt, word
    assert "64" in prompt and "A-Z a-z 0-9 _ -" in prompt  # the validator's tool name rule
    assert "every tool of the requirement" in prompt  # the Reason step blocks a draft that misses one
    line = next(x for x in prompt.splitlines() if x.startswith("cases.json:"))
    shape = line.split("cases.json: ", 1)[1].split(" where", 1)[0]
    filled = shape.replace("<name>", "t").replace("{...}", "{}").replace("<value>", "1")
    parse_cases(json.loads(filled), source="prompt")  # the shape the prompt shows is one the validator accepts
