"""Resource, prompt and fixture cases, validated over real MCP under the real sandbox backend."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import anyio
import pytest

from sandbox.backends import get_backend
from sandbox.env import Environment, EnvManager
from sandbox.report import ValidationReport
from sandbox.validate import ValidationTarget, requirements_of, validate_server

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SERVER = FIXTURES / "resources_server"
ENV_CACHE = Path(tempfile.gettempdir()) / f"mcp-foundry-test-envs-{os.getuid()}"


@pytest.fixture(scope="module")
def env() -> Environment:
    return anyio.run(EnvManager(ENV_CACHE).ensure, requirements_of(SERVER))


@pytest.fixture(scope="module")
def backend():
    backend = get_backend()
    if backend.name != "bubblewrap":
        pytest.skip(f"these checks need the bubblewrap backend, this machine offers {backend.name}")
    return backend


def server_copy(tmp_path: Path, cases: list[dict] | None = None, fixtures: str | None = None) -> Path:
    """The sample server in a directory of its own, with other cases or another fixtures.py."""
    directory = tmp_path / "server"
    shutil.copytree(SERVER, directory)
    if cases is not None:
        (directory / "cases.json").write_text(json.dumps({"cases": cases}))
    if fixtures is not None:
        (directory / "fixtures.py").write_text(fixtures)
    return directory


def validate(directory: Path, backend, env, **kwargs) -> ValidationReport:
    return anyio.run(lambda: validate_server(ValidationTarget(directory=directory), backend=backend, env=env,
                                             cases=None, **kwargs))


def test_resource_template_static_resource_prompt_and_fixture_cases_pass_in_one_session(backend, env):
    report = validate(SERVER, backend, env)
    assert report.verdict == "pass", report.render()
    checks = [c.name for c in report.checks]
    # Fixtures are made before the server starts, and every case ran, in the file's order.
    assert checks.index("fixtures") < checks.index("initialize")
    assert [c.name for c in report.checks if c.name.startswith("case")][:3] == [
        "case #0 resource http-status://404", "case #1 resource http-status://all",
        "case #2 resource http-status://999 (unknown code)"]
    fixtures = next(c for c in report.checks if c.name == "fixtures")
    assert "note.txt (15 B), sample.bin (1000 B)" in fixtures.reason
    by_call = {c.call(): c for c in report.cases}
    assert by_call["resource http-status://all"].actual == {"200": "OK", "404": "Not Found", "418": "I'm a teapot"}
    assert by_call["resource http-status://999"].is_error and by_call["resource http-status://999"].passed
    # A fixture reference is kept as written in the report; the server saw the file's path.
    sizes = [c for c in report.cases if c.tool == "file_size"]
    assert sizes[0].arguments == {"path": {"$fixture": "sample.bin"}} and sizes[0].actual == 1000
    assert [c.actual for c in report.cases if c.tool == "add_note"] == [1, 2]  # state kept between cases


def test_unlisted_resource_and_prompt_and_an_unmade_fixture_fail_naming_what_exists(tmp_path, backend, env):
    directory = server_copy(tmp_path, cases=[
        {"resource": "status://404", "expect": {"contains": "404"}},
        {"prompt": "explain", "arguments": {"code": "404"}},
        {"tool": "file_size", "arguments": {"path": {"$fixture": "missing.bin"}}},
        {"resource": "http-status://404", "expect": {"equals": "404 Found"}},
    ])
    report = validate(directory, backend, env)
    assert report.verdict == "fail"
    reasons = {c.call(): c.reason for c in report.cases}
    assert "matches no resource or resource template" in reasons["resource status://404"]
    assert "http-status://{code}" in reasons["resource status://404"]
    assert "prompt 'explain' is not listed" in reasons['prompt explain({"code": "404"})']
    assert "'missing.bin' was not made: fixtures.py wrote note.txt, sample.bin" in \
        reasons['file_size({"path": {"$fixture": "missing.bin"}})']
    assert "expected 404 Found, got 404 Not Found" in reasons["resource http-status://404"]
    assert {c.failure_class for c in report.failures()} == {"assertion"}


def test_a_failing_fixtures_script_stops_before_the_server_starts(tmp_path, backend, env):
    directory = server_copy(tmp_path, fixtures="import openpyxl\n")
    report = validate(directory, backend, env)
    [check] = report.failures()
    assert check.name == "fixtures" and check.failure_class == "dependency"
    assert "No module named 'openpyxl'" in check.reason and "requirements.txt" in check.reason
    assert "initialize" not in [c.name for c in report.checks]


def test_fixtures_get_no_network_even_when_the_server_does(tmp_path, backend, env, tcp_server):
    probe = f"""import socket
from pathlib import Path
try:
    socket.create_connection(("127.0.0.1", {tcp_server}), timeout=2).close()
    seen = "reached"
except OSError:
    seen = "blocked"
Path("fixtures/net.txt").write_text(seen)
"""
    directory = server_copy(tmp_path, fixtures=probe, cases=[
        {"tool": "echo", "arguments": {"text": {"$fixture": "net.txt", "as": "text"}}, "expect": {"equals": "blocked"}},
    ])
    report = validate(directory, backend, env, network=True)
    assert report.verdict == "pass", report.render()


def test_a_fixture_planted_as_a_link_to_a_host_file_is_not_read(tmp_path, backend, env):
    secret = tmp_path / "host-secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    secret.chmod(0o600)
    plant = f'import os\nos.symlink({str(secret)!r}, "fixtures/leak.txt")\n'
    directory = server_copy(tmp_path, fixtures=plant, cases=[
        {"tool": "add_note", "arguments": {"text": {"$fixture": "leak.txt", "as": "text"}}}])
    report = validate(directory, backend, env)
    assert report.verdict == "fail"
    assert "'leak.txt' was not made" in report.cases[0].reason
    assert "TOP-SECRET-VALUE" not in report.model_dump_json()


def test_fixture_files_shipped_in_the_directory_serve_without_a_fixtures_script(tmp_path, backend, env):
    directory = server_copy(tmp_path)
    (directory / "fixtures.py").unlink()
    (directory / "fixtures").mkdir()
    (directory / "fixtures" / "sample.bin").write_bytes(b"x" * 1000)
    (directory / "fixtures" / "note.txt").write_text("shipped\n")
    report = validate(directory, backend, env)
    assert report.verdict == "pass", report.render()
    assert "fixtures" not in [c.name for c in report.checks]  # nothing was run to make them
