"""The prompts are complete and self-contained: they tell whoever answers (a model, or an agent) what the
Reason step and the validator will check, and what the test environment really is."""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import pytest

from builder.analyze import requirement_notes
from builder.draft import ServerDraft
from builder.loop import LoopDeps, code_messages
from builder.patterns import excerpt
from builder.prompts import render
from builder.reason import lint, parse
from builder.requirement import Requirement
from sandbox.cases import CASE_FIELDS, EXPECT_KINDS, parse_cases
from sandbox.spec import Limits

STARTERS = Path(__file__).resolve().parents[2] / "knowledge" / "starters"
REQ = {"server_name": "http_status", "summary": "Reason phrases of HTTP status codes.",
       "tools": [{"name": "phrase", "description": "The phrase of a code.",
                  "params": [{"name": "code", "type": "integer"}],
                  "examples": [{"arguments": {"code": 404}, "expect": {"equals": "Not Found"}}]}]}


def _example_code(prompt: str, after: str) -> str:
    """The indented code block that follows the line starting with `after`."""
    block = prompt.split(after, 1)[1].split("\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).split("\n- ", 1)[0]


def _deps(**kw) -> LoopDeps:
    return LoopDeps(provider=None, usage=None, backend=None, envs=None, pypi=None,  # type: ignore[arg-type]
                    strategy_stats=lambda c: [], work_dir=Path("/nonexistent"), max_turns=1, deadline=0.0, **kw)


def _code_question(req: dict | None = None, **deps) -> str:
    """The whole code question as one text: system rules, then the user message."""
    system, user = code_messages(Requirement.model_validate(req or REQ), "", "", "", _deps(**deps))
    return system.content + "\n" + user.content


def test_the_prompts_example_server_passes_the_reason_checks(tmp_path):
    prompt = render("code_system")
    server = _example_code(prompt, "Rules for server.py")
    cases = {"cases": [{"tool": "word_count", "arguments": {"text": "a b"}, "expect": {"equals": 2}}]}
    draft = ServerDraft(files={"server.py": server, "requirements.txt": "mcp==2.3.0\n",
                               "cases.json": json.dumps(cases)})
    findings = parse(draft) + lint(draft, draft.write_to(tmp_path / "d"))
    assert [f for f in findings if f.blocking] == []  # a model copying the example must not be blocked


def test_the_prompts_resource_and_prompt_example_defines_what_a_requirement_asks(tmp_path):
    prompt = render("code_system")
    server = _example_code(prompt, "Rules for server.py")
    extra = _example_code(prompt, "- Define every resource and prompt")
    head, tail = server.split('if __name__ == "__main__":')
    source = head + "PHRASES = {'404': 'Not Found'}\n" + extra + '\nif __name__ == "__main__":' + tail
    req = Requirement.model_validate(REQ | {
        "server_name": "srv", "tools": [{"name": "word_count", "description": "Count words."}],
        "resources": [{"uri": "http-status://{code}", "name": "status", "description": "One code."}],
        "prompts": [{"name": "explain_status", "description": "Explain a code."}]})
    cases = {"cases": [{"tool": "word_count", "arguments": {"text": "a"}},
                       {"resource": "http-status://404", "expect": {"contains": "Not Found"}},
                       {"prompt": "explain_status", "arguments": {"code": "404"}}]}
    draft = ServerDraft(files={"server.py": source.replace("<server_name>", "srv"), "cases.json": json.dumps(cases),
                               "requirements.txt": "mcp==2.3.0\n"})
    assert [f for f in lint(draft, draft.write_to(tmp_path / "d"), req) if f.blocking] == []


def test_the_code_prompt_names_every_cases_field_expectation_and_tool_name_rule():
    prompt = render("code_system")
    for word in (*CASE_FIELDS, *EXPECT_KINDS):
        assert f'"{word}"' in prompt or f" {word} " in prompt or f"{word}:" in prompt, word
    assert "64" in prompt and "A-Z a-z 0-9 _ -" in prompt  # the validator's tool name rule
    assert "every tool of the requirement" in prompt  # the Reason step blocks a draft that misses one
    assert "every resource and prompt of the requirement" in prompt  # ... and one that misses these
    assert 'exactly the requirement\'s server_name: MCPServer("<server_name>")' in prompt  # ... or renames it
    line = next(x for x in prompt.splitlines() if x.startswith("cases.json:"))
    shape = line.split("cases.json: ", 1)[1].split(" where", 1)[0]
    filled = shape.replace("<name>", "t").replace("{...}", "{}").replace("<value>", "1")
    parse_cases(json.loads(filled), source="prompt")  # the shape the prompt shows is one the validator accepts


def test_the_fixture_references_the_prompt_shows_are_ones_the_cases_accept():
    prompt = " ".join(render("code_system").split())
    for ref in ('{"$fixture": "<file>"}', '{"$fixture": "<file>", "as": "base64"}',
                '{"$fixture": "<file>", "as": "text"}'):
        assert ref in prompt
        arg = json.loads(ref.replace("<file>", "sample.xlsx"))
        [case] = parse_cases({"cases": [{"tool": "t", "arguments": {"f": arg}}]})
        assert case.fixtures() == ["sample.xlsx"]
    assert "fixtures/" in prompt and "never any network" in prompt and "before the server starts" in prompt


def test_the_analyst_prompt_offers_every_matcher_resources_prompts_fixtures_and_the_language():
    prompt = render("analyze_system")
    for kind in EXPECT_KINDS:
        assert f'{{"{kind}":' in prompt, kind
    for word in ("resources:", "prompts:", "fixtures:", '{"$fixture": "sample.xlsx"}', "http-status://{code}",
                 "language:", "BCP 47"):
        assert word in prompt, word
    assert "Never invent precision" in prompt  # floats are matched, not rounded into equals


@pytest.mark.parametrize("network, needs, expected", [
    (False, False, "Network: off: every connection attempt fails."),
    (True, True, "Network: on: the build allows it."),
    (False, True, "Network: off. The requirement needs the network, but this build does not allow it"),
])
def test_the_code_question_states_the_network_the_cases_will_really_have(network, needs, expected):
    text = " ".join(_code_question(REQ | {"needs_network": needs}, network=network).split())
    assert expected in text


def test_the_code_question_states_order_session_work_dir_secrets_and_limits():
    text = " ".join(_code_question(REQ | {"secrets": ["STATUS_API_KEY"]}, init_timeout=12, call_timeout=7).split())
    # sandbox/validate.py runs the cases one after another on one client session, against one server process
    # started in a fresh copy of the draft (tests/sandbox/test_validate_cases.py sees state kept between cases).
    assert "One server process and one session" in text and "in the order of cases.json" in text
    assert "The working directory starts with only your files" in text
    assert "Secrets: none is set, not even STATUS_API_KEY" in text
    limits = Limits()
    assert (f"initialize answered within 12 s, each call within 7 s, the whole run within 120 s; per process "
            f"{limits.cpu_seconds} CPU seconds, {limits.memory_mb} MiB of memory, files of at most "
            f"{limits.file_size_mb} MiB, {limits.processes} processes") in text
    assert "Secrets: none is set: the environment holds only PATH" in " ".join(_code_question().split())


def test_the_code_question_says_in_which_language_descriptions_and_errors_are_written():
    text = _code_question(REQ | {"language": "zh", "tools": [
        {"name": "phrase", "description": "返回 HTTP 状态码的含义。"}]})
    assert '"language": "zh"' in text and "返回 HTTP 状态码的含义" in text
    assert "Write descriptions, docstrings, ToolError/ResourceError messages and the README in the requirement's " \
           "`language`" in " ".join(text.split())


def test_a_server_name_imposed_by_the_build_request_is_explained_in_the_code_question():
    req = Requirement.model_validate(REQ | {"server_name": "my_codes"})
    notes = requirement_notes(req, {"description": "x", "name": "my_codes", "dependencies": ["requests==2.32.3"]})
    text = _code_question(req.model_dump(), notes=notes)
    assert "Note: server_name is 'my_codes' because the build request named the server explicitly" in text
    assert "dependencies ['requests==2.32.3']" in text
    assert "Note:" not in _code_question()  # nothing imposed, nothing to explain


def test_repository_patterns_are_whole_functions_within_the_budget():
    sources = [p.read_text() for p in sorted(STARTERS.glob("*/server.py"))]
    long = [s for s in sources if len(s) > 3000]
    assert long, "no starter is long enough to need cutting"
    for source in long:
        cut = excerpt(source, 3000)
        assert len(cut) <= 3000 and len(cut) < len(source)
        kept = ast.parse(cut)  # parses: nothing is cut mid-body
        originals = {n.name: ast.get_source_segment(source, n) for n in ast.parse(source).body
                     if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        for node in kept.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert ast.get_source_segment(cut, node) == originals[node.name]
        omitted = [name for name in originals if f" {name}(" not in cut and f"def {name}(" not in cut]
        assert omitted == []  # every function is either whole or named in an omission note
        assert 'if __name__ == "__main__":' in cut and "MCPServer(" in cut
