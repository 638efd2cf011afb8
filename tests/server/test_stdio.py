"""Acceptance through a real MCP client over real stdio against `mcp-foundry serve`."""

import json
import subprocess

import anyio
import pytest

from tests.proctree import sandboxed, workers_of
from tests.server.conftest import FIXTURES, FOUNDRY, ROOT, foundry_env, result_of, stdio_foundry

JOB_TOOLS = {"validate_server", "build_status", "build_result", "cancel_build", "list_builds"}


async def _validate(client, name, **extra):
    res = await client.call_tool("validate_server", {"path": str(FIXTURES / name), **extra})
    assert not res.is_error, res.content
    return res.structured_content["job_id"]


async def _result(client, job_id, progress=None):
    return await result_of(client, job_id, progress=progress)


def test_good_and_broken_samples_get_the_right_verdicts(data_dir):
    seen_progress = []

    async def progress(value, total, message):
        seen_progress.append((value, message))

    async def main():
        async with stdio_foundry(data_dir) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert JOB_TOOLS <= names
            good = await _validate(client, "good_server")
            broken = {name: await _validate(client, name) for name in
                      ("import_error_server", "raising_tool_server", "no_init_server", "wrong_result_server")}
            out = await _result(client, good, progress)
            assert out["state"] == "succeeded" and out["result"]["report"]["verdict"] == "pass"
            classes = {}
            for name, job_id in broken.items():
                out = await _result(client, job_id)
                report = out["result"]["report"]
                assert out["state"] == "failed" and report["verdict"] == "fail", name
                failed = [c for c in report["checks"] if not c["passed"]]
                assert all(c["reason"] for c in failed), name  # every failure says why
                classes[name] = {c["failure_class"] for c in failed}
                if name == "no_init_server":  # the configured initialize limit (MCP_FOUNDRY_INIT_TIMEOUT) applied
                    assert any("20 s" in c["reason"] for c in failed), failed
            status = await client.call_tool("build_status", {"job_id": good})
            assert status.structured_content["state"] == "succeeded" and status.structured_content["log_tail"]
            log = await client.read_resource(f"foundry://jobs/{good}/log")
            assert "verdict" in log.contents[0].text.lower() or "pass" in log.contents[0].text.lower()
            listed = await client.call_tool("list_builds", {"kind": "validate"})
            assert len(listed.structured_content["jobs"]) == 5
            return classes

    classes = anyio.run(main)
    assert "import" in classes["import_error_server"] or "dependency" in classes["import_error_server"]
    assert "runtime" in classes["raising_tool_server"]
    assert "timeout" in classes["no_init_server"]
    assert "assertion" in classes["wrong_result_server"]
    assert seen_progress, "a caller that sent a progress token got no progress notification"


def test_bad_input_gets_a_specific_error_and_writes_nothing(data_dir, tmp_path):
    async def main():
        async with stdio_foundry(data_dir) as client:
            bad_cases = tmp_path / "bad-cases.json"
            bad_cases.write_text('{"cases": [{"tool": "add", "expect": {"equalz": 1}}]}')
            cases = [
                ("validate_server", {"path": str(FIXTURES / "good_server"), "cases_file": str(bad_cases)},
                 "cases_file"),
                ("build_status", {"job_id": "doesnotexist"}, "job_id"),
                ("validate_server", {"path": str(tmp_path / "missing")}, "path"),
                ("validate_server", {}, "path/command"),
                ("validate_server", {"path": "x" * 5000}, "path"),
                ("validate_server", {"path": str(FIXTURES / "good_server"), "cases_file": "/no/such.json"},
                 "cases_file"),
                ("build_result", {"job_id": "abc", "wait_s": "soon"}, "wait_s"),
                ("build_result", {"job_id": "abc", "wait_s": 51}, "wait_s"),  # past 50 s a client gives up
                ("list_builds", {"state": "sleeping"}, "state"),
                ("list_builds", {"kind": "bake"}, "kind"),
            ]
            for tool, args, field in cases:
                res = await client.call_tool(tool, args)
                text = res.content[0].text
                assert res.is_error and field in text, (tool, args, text)
                assert "(accepted: " in text and "errors.pydantic.dev" not in text, text
            listed = await client.call_tool("list_builds", {})
            assert listed.structured_content["jobs"] == []

    anyio.run(main)


def test_cli_validate_status_and_doctor(data_dir):
    env = foundry_env(data_dir)
    run = subprocess.run([*FOUNDRY, "validate", str(FIXTURES / "good_server")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    assert "PASS" in run.stdout
    bad = subprocess.run([*FOUNDRY, "validate", str(FIXTURES / "wrong_result_server"), "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert bad.returncode == 1
    doc = json.loads(bad.stdout)
    assert doc["result"]["report"]["verdict"] == "fail"
    status = subprocess.run([*FOUNDRY, "status", doc["job_id"]], cwd=ROOT, env=env, capture_output=True, text=True)
    assert status.returncode == 0 and "failed" in status.stdout
    listing = subprocess.run([*FOUNDRY, "status"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert listing.returncode == 0 and doc["job_id"] in listing.stdout and listing.stdout.count("validate") == 2
    logged = (data_dir / "logs" / "mcp-foundry.log").read_text()
    assert f"[validate {doc['job_id']}] queued" in logged and f"[validate {doc['job_id']}] failed" in logged
    negative = subprocess.run([*FOUNDRY, "validate", str(FIXTURES / "good_server"), "--timeout", "-5"], cwd=ROOT,
                              env=env, capture_output=True, text=True)
    assert negative.returncode == 2 and "timeout_s" in negative.stderr and "more than 0" in negative.stderr
    missing = subprocess.run([*FOUNDRY, "validate", "/no/such/dir"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "path" in missing.stderr and "not an existing directory" in missing.stderr
    doctor = subprocess.run([*FOUNDRY, "doctor"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert doctor.returncode == 0
    assert "bubblewrap" in doctor.stdout and "docker" in doctor.stdout and "process" in doctor.stdout
    assert "in use: bubblewrap (setting sandbox_backend=auto)" in doctor.stdout
    assert "in force: bubblewrap, " in doctor.stdout.split("where it runs:", 1)[1]
    assert str(data_dir) in doctor.stdout


def test_invalid_setting_names_the_flag_or_variable_and_the_range(data_dir):
    run = subprocess.run([*FOUNDRY, "--max-jobs=-1", "doctor"], cwd=ROOT, env=foundry_env(data_dir),
                         capture_output=True, text=True)
    assert run.returncode == 2 and "--max-jobs" in run.stderr and "ge 0, le 32" in run.stderr
    run = subprocess.run([*FOUNDRY, "doctor"], cwd=ROOT, env=foundry_env(data_dir, MCP_FOUNDRY_MAX_JOBS="99"),
                         capture_output=True, text=True)
    assert run.returncode == 2 and "environment variable MCP_FOUNDRY_MAX_JOBS" in run.stderr


@pytest.mark.parametrize(("argv", "words"), [
    (["search", "word count", "--limit", "0"], ["--limit", "1..20"]),
    (["--data-dir", "/proc/no-such-dir", "doctor"], ["/proc/no-such-dir", "MCP_FOUNDRY_DATA_DIR"]),
])
def test_bad_cli_input_is_an_error_message_not_a_traceback(data_dir, argv, words):
    run = subprocess.run([*FOUNDRY, *argv], cwd=ROOT, env=foundry_env(data_dir), capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("mcp-foundry: error: ") and all(w in run.stderr for w in words), run.stderr


def test_the_sandbox_warning_that_nothing_is_isolated_reaches_the_log_file(data_dir):
    run = subprocess.run([*FOUNDRY, "--sandbox", "process", "validate", "--command", "true", "--json"], cwd=ROOT,
                         env=foundry_env(data_dir), capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr
    assert json.loads(run.stdout)["result"]["report"]["backend"] == "process"  # the worker took the flag over
    logged = (data_dir / "logs" / "mcp-foundry.log").read_text()
    assert "WARNING sandbox.backends" in logged and "does NOT isolate" in logged, logged
    assert "does NOT isolate" in run.stderr  # and it is still said loudly where the user looks


def test_cancel_stops_the_sandboxed_server_of_a_running_validation(data_dir):
    """Cancelled from a second front end: the worker stops the job and its sandbox (only the worker's own process
    tree is watched, so other validations on the machine do not matter)."""
    extra = {"MCP_FOUNDRY_INIT_TIMEOUT": "60"}  # the silent server runs until it is cancelled

    async def main():
        async with stdio_foundry(data_dir, **extra) as client:
            job_id = await _validate(client, "no_init_server")
            with anyio.fail_after(20):
                while not (workers := workers_of(data_dir)) or not sandboxed(workers[0][0]):
                    await anyio.sleep(0.05)
            worker = workers[0][0]
            doctor = subprocess.run([*FOUNDRY, "doctor"], cwd=ROOT, env=foundry_env(data_dir), capture_output=True,
                                    text=True, timeout=60)
            assert f"pid {worker} on " in doctor.stdout and f"jobs in hand: {job_id} (validate, running)" in \
                doctor.stdout, doctor.stdout
            async with stdio_foundry(data_dir, **extra) as other:
                st = (await other.call_tool("cancel_build", {"job_id": job_id})).structured_content
                assert st["state"] == "cancelled" and st["worker"], st
                with anyio.fail_after(5):
                    while sandboxed(worker):
                        await anyio.sleep(0.05)
                again = (await other.call_tool("cancel_build", {"job_id": job_id})).structured_content
                assert again["state"] == "cancelled"  # cancelling a final job changes nothing
            seen = (await client.call_tool("build_status", {"job_id": job_id})).structured_content
            assert seen["state"] == "cancelled" and seen["error"] == "cancelled by request"

    anyio.run(main)


def test_cli_envs_list_and_cleanup(data_dir, tmp_path):
    env = foundry_env(data_dir, MCP_FOUNDRY_ENV_CACHE=str(tmp_path / "envs"))
    assert subprocess.run([*FOUNDRY, "validate", str(FIXTURES / "good_server")], cwd=ROOT, env=env,
                          capture_output=True, timeout=240).returncode == 0
    listed = subprocess.run([*FOUNDRY, "envs", "list"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert "mcp==2.3.0" in listed.stdout
    kept = subprocess.run([*FOUNDRY, "envs", "cleanup", "--max-age-days", "30"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert "removed 0 environment(s)" in kept.stdout
    gone = subprocess.run([*FOUNDRY, "envs", "cleanup", "--max-age-days", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert "removed 1 environment(s)" in gone.stdout
    assert subprocess.run([*FOUNDRY, "envs", "list"], cwd=ROOT, env=env, capture_output=True,
                          text=True).stdout.strip() == ""
