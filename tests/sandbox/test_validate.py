"""The MCP validator against real sample servers, run under the real sandbox backend with a real uv environment."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from pydantic import ValidationError

from sandbox.backends import get_backend
from sandbox.cases import CasesError, load_cases, parse_cases
from sandbox.env import Environment, EnvManager
from sandbox.report import Check, ValidationReport
from sandbox.scan import ScanPolicy
from sandbox.spec import Limits
from sandbox.validate import ValidationTarget, requirements_of, validate_server

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Environment:
    """One uv venv with mcp==2.3.0, built once for every test in this module."""
    manager = EnvManager(tmp_path_factory.mktemp("validator-envs"))
    return anyio.run(manager.ensure, requirements_of(FIXTURES / "good_server"))


@pytest.fixture(scope="module")
def backend():
    """The default backend for this machine (bubblewrap here)."""
    return get_backend()


def run(target: ValidationTarget | str, backend, env, **kwargs) -> ValidationReport:
    if isinstance(target, str):
        target = ValidationTarget(directory=FIXTURES / target)
    kwargs.setdefault("cases", None)
    return anyio.run(lambda: validate_server(target, backend=backend, env=env, **kwargs))


def failed(report: ValidationReport) -> dict[str, Check]:
    return {c.name: c for c in report.failures()}


def test_backend_is_the_isolating_one(backend):
    assert backend.name == "bubblewrap" and backend.isolates


def test_good_server_passes_and_everything_is_recorded(backend, env):
    progress: list[tuple[float, str]] = []
    lines: list[str] = []
    report = run("good_server", backend, env, progress=lambda f, m: progress.append((f, m)), log=lines.append)
    assert report.verdict == "pass", report.render()
    assert report.backend == "bubblewrap"
    assert report.server_info and report.server_info["name"] == "good-server"
    assert report.protocol_version and report.capabilities.get("tools") is not None
    tools = {t.name: t for t in report.tools}
    assert set(tools) == {"add", "word_count", "reverse", "divide"}
    assert tools["add"].input_schema["properties"].keys() == {"a", "b"}
    assert tools["add"].annotations == {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True,
                                        "openWorldHint": False}
    assert [r.uri for r in report.resources] == ["info://about"]
    assert [p.name for p in report.prompts] == ["greet"] and report.prompts[0].arguments == ["name"]
    assert len(report.cases) == 7 and all(c.passed for c in report.cases)
    assert all(c.latency_ms > 0 for c in report.cases)
    zero = report.cases[-1]
    assert zero.is_error and zero.expected == {"error": "must not be zero"} and "must not be zero" in zero.actual
    assert report.cases[1].actual == {"words": 3, "chars": 13}
    assert "alive after divide error" in {c.name for c in report.checks}
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(line.startswith("PASS initialize") for line in lines)
    assert report.render().splitlines()[-1].startswith("VERDICT: PASS")


def test_import_error_is_classified_import(backend, env):
    report = run("import_error_server", backend, env)
    assert report.verdict == "fail" and report.failure_class == "import"
    assert "No module named 'mcp.server.fastmcp'" in failed(report)["initialize"].reason
    assert "ModuleNotFoundError" in report.stderr_tail


def test_missing_dependency_is_classified_dependency(backend, env):
    report = run("missing_dependency_server", backend, env)
    assert report.failure_class == "dependency"
    assert "humanize" in report.failures()[0].reason and "requirements.txt" in report.failures()[0].reason


def test_raising_tool_is_an_error_result_and_the_server_survives(backend, env):
    report = run("raising_tool_server", backend, env)
    assert report.verdict == "fail" and report.failure_class == "runtime"
    case = failed(report)["case #0 parse_int"]
    assert "Error executing tool parse_int" in case.reason and "KeyError" in case.reason
    assert report.cases[0].is_error and not report.cases[0].passed
    alive = next(c for c in report.checks if c.name == "alive after parse_int error")
    assert alive.passed
    assert report.cases[1].passed and report.cases[1].actual == "still here"


def test_server_that_never_answers_times_out(backend, env):
    report = run("no_init_server", backend, env, init_timeout=2)
    assert report.failure_class == "timeout"
    assert "no answer to initialize within 2 s" in failed(report)["initialize"].reason
    assert report.duration < 10


def test_wrong_result_is_an_assertion_failure(backend, env):
    report = run("wrong_result_server", backend, env)
    assert report.failure_class == "assertion"
    assert failed(report)["case #0 add"].reason == "expected 3, got 4"
    assert report.cases[0].actual == 4 and report.cases[0].expected == {"equals": 3}


def test_stdout_noise_is_a_protocol_failure(backend, env):
    report = run("stdout_noise_server", backend, env)
    assert report.verdict == "fail" and report.failure_class == "protocol"
    noise = failed(report)["stdout is JSON-RPC only"]
    assert "'loading tools...'" in noise.reason and "stderr" in noise.reason
    assert all(c.passed for c in report.cases)  # the calls work; only the stray line fails it


def test_bad_tool_names_are_protocol_failures(backend, env):
    report = run("bad_names_server", backend, env)
    assert report.failure_class == "protocol"
    reasons = " | ".join(c.reason for c in report.failures())
    assert "'math.add'" in reasons and "['.']" in reasons
    assert "72 characters long" in reasons


def test_syntax_error_names_file_and_line_and_nothing_runs(backend, env):
    report = run("syntax_error_server", backend, env)
    assert report.failure_class == "syntax"
    assert report.failures()[0].reason.startswith("server.py:7:")
    assert [c.name for c in report.checks] == ["syntax"]


def test_blocking_finding_stops_the_run(backend, env):
    report = run("insecure_server", backend, env)
    assert report.failure_class == "security"
    assert "server.py:13 os-system" in failed(report)["security scan"].reason
    assert "initialize" not in {c.name for c in report.checks}
    assert [f.rule for f in report.findings] == ["os-system"]


def test_policy_decides_what_blocks(backend, env):
    report = run("insecure_server", backend, env, policy=ScanPolicy(block_at="critical"))
    names = {c.name: c for c in report.checks}
    assert names["security scan"].passed and names["initialize"].passed
    assert [f.rule for f in report.findings] == ["os-system"]  # still reported


def test_command_target_is_run_without_scanning(backend, env):
    code = ("from mcp.server.mcpserver import MCPServer\nm = MCPServer('inline')\n"
            "@m.tool()\ndef echo(text: str) -> str:\n    return text\nm.run()\n")
    target = ValidationTarget(command=[str(env.python), "-c", code])
    cases = parse_cases({"cases": [{"tool": "echo", "arguments": {"text": "hi"}, "expect": {"equals": "hi"}}]})
    report = run(target, backend, env, cases=cases)
    assert report.verdict == "pass", report.render()
    assert report.checks[0].name == "initialize" and report.findings == []


def test_case_for_unlisted_tool_fails_with_the_listed_names(backend, env):
    cases = parse_cases({"cases": [{"tool": "sub", "arguments": {}}]})
    report = run("wrong_result_server", backend, env, cases=cases)
    check = failed(report)["case #0 sub"]
    assert check.failure_class == "assertion" and "listed: add" in check.reason


def test_bad_cases_file_in_directory_is_reported_not_run(backend, env, tmp_path):
    server = tmp_path / "srv"
    shutil.copytree(FIXTURES / "good_server", server)
    (server / "cases.json").write_text(json.dumps({"cases": [{"tool": "add", "expect": {"equal": 3}}]}))
    report = run(ValidationTarget(directory=server), backend, env)
    assert [c.name for c in report.checks] == ["cases file"]
    assert "case 0 (add)" in report.checks[0].reason and "'equal'" in report.checks[0].reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of 'directory'"),
        ({"directory": FIXTURES / "good_server", "command": ["x"]}, "exactly one of 'directory'"),
        ({"directory": FIXTURES / "good_server", "entry": "../x.py"}, "ValidationTarget.entry"),
        ({"directory": FIXTURES / "good_server", "entry": "main.py"}, "main.py' is not a regular file"),
        ({"directory": FIXTURES / "nope"}, "is not an existing directory"),
        ({"command": []}, "non-empty list"),
    ],
)
def test_bad_targets_are_refused_with_the_field(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        ValidationTarget(**kwargs)


def test_requirements_of_reads_txt_then_pyproject(tmp_path):
    (tmp_path / "requirements.txt").write_text("# pins\nmcp==2.3.0  # the sdk\n\n-r other.txt\nhttpx>=0.27\n")
    assert requirements_of(tmp_path) == ["mcp==2.3.0", "httpx>=0.27"]
    (tmp_path / "requirements.txt").unlink()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["mcp==2.3.0"]\n')
    assert requirements_of(tmp_path) == ["mcp==2.3.0"]
    (tmp_path / "pyproject.toml").unlink()
    assert requirements_of(tmp_path) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "top level must be an object"),
        ({"cases": {}}, "field 'cases' must be a list"),
        ({"cases": [], "extra": 1}, "unknown top-level field"),
        ({"cases": ["add"]}, "case 0: must be an object"),
        ({"cases": [{"arguments": {}}]}, "case 0: give exactly one of 'tool' .*, 'resource' .* or 'prompt'"),
        ({"cases": [{"tool": ""}]}, "case 0: field 'tool' must be a non-empty string"),
        ({"cases": [{"tool": "a", "prompt": "b"}]}, r"exactly one of .*got \['tool', 'prompt'\]"),
        ({"cases": [{"resource": "x://{id}", "arguments": {"id": "1"}}]}, "a resource case takes no 'arguments'"),
        ({"cases": [{"prompt": "p", "arguments": {"n": 3}}]}, r"prompt arguments are strings; \['n'\]"),
        ({"cases": [{"tool": "a", "arguments": {"f": {"$fixture": "../etc/passwd"}}}]}, "fixture name .* no '/'"),
        ({"cases": [{"tool": "a", "arguments": {"f": [{"$fixture": "a.png", "as": "url"}]}}]},
         r'"as": \'url\'; accepted: "path", "base64", "text"'),
        ({"cases": [{"tool": "a", "arguments": {"f": {"$fixture": "a.png", "mode": "rb"}}}]},
         r"unknown key\(s\) \['mode'\]"),
        ({"cases": [{"tool": "a", "args": {}}]}, r"case 0: unknown field\(s\) \['args'\]"),
        ({"cases": [{"tool": "a"}, {"tool": "b", "arguments": [1]}]}, r"case 1 \(b\): field 'arguments' must be"),
        ({"cases": [{"tool": "a", "expect": {}}]}, "exactly one of equals, contains"),
        ({"cases": [{"tool": "a", "expect": {"equals": 1, "contains": "1"}}]}, r"got \['contains', 'equals'\]"),
        ({"cases": [{"tool": "a", "expect": {"contains": 3}}]}, "'expect.contains' must be a string"),
        ({"cases": [{"tool": "a", "expect": {"matches": "("}}]}, "not a valid regular expression"),
        ({"cases": [{"tool": "a", "expect": {"schema": {"type": "nope"}}}]}, "not a valid JSON schema"),
        ({"cases": [{"tool": "a", "expect": {"error": 1}}]}, "'expect.error' must be true, false or a string"),
        ({"cases": [{"tool": "a", "name": 5}]}, "field 'name' must be a string"),
    ],
)
def test_bad_cases_name_index_and_field(data, message):
    with pytest.raises(CasesError, match=message):
        parse_cases(data, source="cases.json")


def test_load_cases_reports_json_position(tmp_path):
    path = tmp_path / "cases.json"
    path.write_text('{"cases": [\n  {"tool": "a",}\n]}')
    with pytest.raises(CasesError, match=r"cases.json: not valid JSON at line 2"):
        load_cases(path)
    with pytest.raises(CasesError, match="cannot read"):
        load_cases(tmp_path / "missing.json")


def test_fixture_cases_files_load():
    for path in sorted(FIXTURES.glob("*/cases.json")):
        load_cases(path)
    kinds = [c.expect.kind for c in load_cases(FIXTURES / "good_server" / "cases.json") if c.expect]
    assert set(kinds) == {"equals", "contains", "matches", "schema", "error"}


def _report(**changes) -> ValidationReport:
    now = datetime.now(UTC)
    base = dict(target="/srv/x", backend="bubblewrap", started=now, finished=now, duration=1.5, verdict="pass",
                checks=[Check(name="initialize", passed=True, reason="protocol 2025-11-25", seconds=0.25)])
    return ValidationReport(**(base | changes))


def test_render_lists_checks_and_verdict():
    text = _report(stderr_tail="boom").render()
    assert "PASS  initialize" in text and "250 ms" in text and "protocol 2025-11-25" in text
    assert text.splitlines()[-1] == "VERDICT: PASS (1/1 checks passed, 0 tools, 1.50 s)"
    assert "boom" not in text  # stderr only matters on failure


def test_render_of_a_failure_names_class_reason_and_stderr():
    checks = [Check(name="initialize", passed=True, reason="ok"),
              Check(name="case #0 add", passed=False, reason="expected 3, got 4", failure_class="assertion"),
              Check(name="case #1 add", passed=False, reason="expected 5, got 6", failure_class="assertion")]
    report = _report(checks=checks, verdict="fail", stderr_tail="line1\nTraceback: boom\n")
    text = report.render()
    assert "FAIL  case #0 add" in text and "[assertion]" in text
    assert "    | Traceback: boom" in text
    assert text.splitlines()[-1] == "VERDICT: FAIL [assertion] (1/3 checks passed, 1.50 s): expected 3, got 4"
    assert [c.name for c in report.failures()] == ["case #0 add", "case #1 add"]
    assert ValidationReport.model_validate_json(report.model_dump_json()) == report


PEEK_SERVER = '''"""Reads files of its own directory, as a server under test may."""
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("peek")


@mcp.tool()
def peek(name: str) -> str:
    """The text of a file in the work dir, or why it cannot be read."""
    try:
        with open(name) as f:
            return f.read()
    except OSError as exc:
        return f"unreadable: {type(exc).__name__}"


if __name__ == "__main__":
    mcp.run()
'''


def test_symlinks_in_the_server_directory_do_not_carry_outside_files_in(backend, env, tmp_path):
    secret = tmp_path / "builder-secret.txt"
    secret.write_text("outside-secret")
    server = tmp_path / "srv"
    server.mkdir()
    (server / "server.py").write_text(PEEK_SERVER)
    (server / "notes.txt").write_text("inside")
    (server / "leak.txt").symlink_to(secret)
    (server / "alias.txt").symlink_to("notes.txt")  # a link inside the directory keeps working
    (server / "dangling.txt").symlink_to(tmp_path / "gone")  # and a dangling one is no crash
    cases = parse_cases({"cases": [
        {"tool": "peek", "arguments": {"name": "leak.txt"}, "expect": {"contains": "unreadable"}},
        {"tool": "peek", "arguments": {"name": "alias.txt"}, "expect": {"equals": "inside"}},
    ]})
    report = run(ValidationTarget(directory=server), backend, env, cases=cases)
    assert "outside-secret" not in json.dumps(report.model_dump(mode="json"))
    assert report.verdict == "pass", report.render()


def test_a_silent_server_fails_as_timeout_at_the_initialize_limit_not_the_call_limit(backend):
    report = run(ValidationTarget(command=["sleep", "300"]), backend, None, init_timeout=4, call_timeout=1)
    init = failed(report)["initialize"]
    assert init.failure_class == "timeout" and "no answer to initialize within 4 s" in init.reason, report.render()
    assert 3.5 <= init.seconds < 10, init


def test_a_wall_clock_limit_below_the_initialize_limit_is_named_when_it_strikes(backend):
    report = run(ValidationTarget(command=["sleep", "300"]), backend, None, init_timeout=10,
                 limits=Limits(wall_seconds=2))
    wall = failed(report)["wall-clock limit"]
    assert wall.failure_class == "timeout" and "limits.wall_seconds=2 s" in wall.reason, report.render()
    assert "initialize timeout, 10 s" in wall.reason and report.duration < 8


WEATHER_SERVER = '''"""Reads its API key from the environment, by the variable's name, as the code prompt asks."""
import os

from mcp.server.mcpserver import MCPServer

KEY_VAR = "OPENWEATHER_API_KEY"
mcp = MCPServer("weather")


@mcp.tool()
def has_key() -> bool:
    """Whether the API key is configured."""
    return bool(os.environ.get(KEY_VAR))


if __name__ == "__main__":
    mcp.run()
'''


def test_the_name_of_an_environment_variable_passes_the_scan(backend, env, tmp_path):
    server = tmp_path / "weather"
    server.mkdir()
    (server / "server.py").write_text(WEATHER_SERVER)
    cases = parse_cases({"cases": [{"tool": "has_key", "expect": {"equals": False}}]})
    report = run(ValidationTarget(directory=server), backend, env, cases=cases)
    assert report.verdict == "pass" and report.findings == [], report.render()
