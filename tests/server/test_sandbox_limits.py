"""Per-sandbox limits as a user meets them: doctor, the validation report, settings, a silent server, kill -9."""

import json
import os
import signal
import subprocess
import time

import anyio

from sandbox.limits import cgroups, workspace
from sandbox.limits.workspace import default_parent
from sandbox.report import ValidationReport
from tests.proctree import alive, workers_of
from tests.server.conftest import FOUNDRY, ROOT, foundry_env, result_of, stdio_foundry


def _cli(data_dir, *argv, **env):
    return subprocess.run([*FOUNDRY, *argv], cwd=ROOT, env=foundry_env(data_dir, **env), capture_output=True,
                          text=True, timeout=240)


def test_doctor_says_which_limits_are_in_force(data_dir):
    on = _cli(data_dir, "doctor")
    off = _cli(data_dir, "doctor", MCP_FOUNDRY_SANDBOX_CGROUPS="off", MCP_FOUNDRY_SANDBOX_DISK_MB="64")
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    support = cgroups.detect()
    section = on.stdout.split("sandbox limits (each sandbox on its own):\n")[1].split("optional parts:")[0]
    for controller, name in (("memory", "memory"), ("pids", "processes"), ("cpu", "cpu")):
        (line,) = [line for line in section.splitlines() if line[16:].startswith(f"{name} ")]
        assert line.strip().startswith("in force") == (controller in support.bases), line
        assert f"NOT in force  {name:<10} not limited per sandbox (cgroups are turned off" in off.stdout, off.stdout
    assert "tmpfs of 512 MiB" in on.stdout and "tmpfs of 64 MiB" in off.stdout
    assert "MCP_FOUNDRY_SANDBOX_DISK_MB" in on.stdout and "MCP_FOUNDRY_SANDBOX_CGROUPS" in on.stdout


def test_a_bad_limit_setting_names_its_variable_and_range(data_dir):
    run = _cli(data_dir, "doctor", MCP_FOUNDRY_SANDBOX_DISK_MB="1")
    assert run.returncode == 2 and "MCP_FOUNDRY_SANDBOX_DISK_MB" in run.stderr and "ge 8" in run.stderr, run.stderr
    run = _cli(data_dir, "doctor", MCP_FOUNDRY_SANDBOX_CGROUPS="maybe")
    assert run.returncode == 2 and "MCP_FOUNDRY_SANDBOX_CGROUPS" in run.stderr and "off" in run.stderr, run.stderr


def test_a_validation_report_says_which_limits_were_not_in_force(data_dir):
    run = _cli(data_dir, "validate", "--command", "true", "--json", MCP_FOUNDRY_SANDBOX_CGROUPS="off")
    report = json.loads(run.stdout)["result"]["report"]
    limits = {state["name"]: state for state in report["limits"]}
    assert set(limits) == {"disk", "memory", "processes", "cpu"}, limits
    assert not limits["processes"]["in_force"] and "shared by every sandbox" in limits["processes"]["detail"]
    assert limits["disk"]["in_force"] == (os.geteuid() == 0)
    text = ValidationReport.model_validate(report).render()  # what `mcp-foundry validate` prints
    assert "limits NOT in force for this sandbox:" in text and "memory: not limited per sandbox" in text, text


def test_a_silent_server_fails_as_timeout_at_the_configured_initialize_limit(data_dir):
    async def main():
        async with stdio_foundry(data_dir, MCP_FOUNDRY_INIT_TIMEOUT="4", MCP_FOUNDRY_CASE_TIMEOUT="1") as client:
            ticket = await client.call_tool("validate_server", {"command": "sleep 300"})
            return await result_of(client, ticket.structured_content["job_id"])

    out = anyio.run(main)
    init = next(c for c in out["result"]["report"]["checks"] if c["name"] == "initialize")
    assert init["failure_class"] == "timeout" and "no answer to initialize within 4 s" in init["reason"], init
    assert 3.5 <= init["seconds"] < 10 and "[timeout]" in out["error"], out["error"]


def test_kill_9_leaves_debris_that_the_next_start_cleans_without_touching_live_sandboxes(data_dir):
    parent = default_parent()
    env = foundry_env(data_dir, MCP_FOUNDRY_INIT_TIMEOUT="120")
    with workspace(16, prefix="mcpf-live") as live:  # held by this test: no cleaning may touch it
        front = subprocess.Popen([*FOUNDRY, "validate", "--command", "sleep 300"], cwd=ROOT, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        worker = None
        try:
            mine = []
            for _ in range(600):  # the job runs in the data dir's worker: its workspace names the worker's pid
                workers = workers_of(data_dir)
                worker = workers[0][0] if workers else None
                mine = sorted(parent.glob(f"mcpf-validate-{worker}-*[!k]")) if worker else []
                if mine and any(p.exists() for p in _cgroups_of(worker)):
                    break
                time.sleep(0.05)
            assert mine, "the validation never made its workspace"
        finally:
            if worker is not None:
                os.kill(worker, signal.SIGKILL)  # the worker only: what it leaves is the point
            front.kill()
            front.wait(10)
        deadline = time.monotonic() + 10
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        debris, groups = mine[0], _cgroups_of(worker)
        assert debris.is_dir() and (os.geteuid() != 0 or os.path.ismount(debris)), "kill -9 left nothing to clean"
        run = _cli(data_dir, "status")  # any start cleans
        assert run.returncode == 0, run.stderr
        assert not debris.exists() and not (parent / f"{debris.name}.lock").exists()
        assert not any(path.exists() for path in groups), groups
        assert live.root.is_dir() and (parent / f"{live.root.name}.lock").exists()


def _cgroups_of(pid: int):
    """Sandbox cgroups made by process `pid` (their names carry the owner's pid)."""
    found = []
    for base in cgroups.detect().bases.values():
        found += [path for path in base.glob("sb-*") if path.name.split("-")[2] == str(pid)]
    return found
