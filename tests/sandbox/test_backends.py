"""Choosing a backend, the plain-process backend's limits and warning, and run_sandboxed's mechanics."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import anyio
import pytest

from sandbox.backends import BubblewrapBackend, DockerBackend, backend_report, get_backend
from sandbox.errors import BackendUnavailable, SandboxError
from sandbox.run import run_sandboxed
from sandbox.spec import RunSpec

pytestmark = pytest.mark.anyio

PYTHON = sys.executable


def _docker_or_skip() -> DockerBackend:
    backend = DockerBackend()
    works, why = backend.available()
    if not works:
        pytest.skip(f"no Docker engine: {why}")
    return backend


def test_unknown_backend_name_lists_the_accepted_ones():
    with pytest.raises(SandboxError, match="unknown sandbox backend 'vm'; accepted: auto, bubblewrap, docker, process"):
        get_backend("vm")


def test_auto_picks_bubblewrap_where_it_runs(bwrap):
    assert get_backend("auto").name == "bubblewrap"


def test_an_unavailable_named_backend_says_why():
    backend = DockerBackend()
    if backend.available()[0]:
        pytest.skip("a Docker engine answers here")
    with pytest.raises(BackendUnavailable, match="'docker' cannot run here: no Docker engine answers"):
        get_backend("docker")


def test_backend_report_covers_every_backend_with_a_reason():
    report = {name: (works, why) for name, works, why in backend_report()}
    assert set(report) == {"bubblewrap", "docker", "process"}
    assert report["process"][0] is True and "does NOT isolate" in report["process"][1]
    assert all(why for _works, why in report.values())


def test_missing_bwrap_binary_is_reported_not_crashed():
    works, why = BubblewrapBackend(bwrap="/nonexistent/bwrap").available()
    assert not works and "/nonexistent/bwrap" in why


def test_bad_paths_in_the_spec_are_refused_with_the_field_named(bwrap, process_backend, tmp_path):
    relative = RunSpec(workdir=Path("work"))
    missing_ro = RunSpec(workdir=tmp_path, readonly_paths=(tmp_path / "nope",))
    for backend in (bwrap, process_backend):
        with pytest.raises(SandboxError, match="RunSpec.workdir='work' must be an absolute path"):
            backend.launch(["true"], relative)
        with pytest.raises(SandboxError, match="RunSpec.readonly_paths entry .*nope"):
            backend.launch(["true"], missing_ro)


async def test_process_backend_applies_limits_env_and_workdir_and_warns(process_backend, make_spec, workdir,
                                                                       monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-pass")
    probe = "import os; print(os.getcwd()); print('OPENAI_API_KEY' in os.environ)"
    with caplog.at_level(logging.WARNING):
        ran = await run_sandboxed([PYTHON, "-c", probe], make_spec(), process_backend)
    memory = await run_sandboxed([PYTHON, "-c", "x = bytearray(1024 ** 3)"], make_spec(memory_mb=256), process_backend)
    assert ran.stdout.split() == [str(workdir), "False"], ran
    assert "MemoryError" in memory.stderr and memory.returncode != 0, memory
    # It does not cut the network, so the test pins the loud warning instead.
    assert any("does NOT isolate" in r.getMessage() and "network" in r.getMessage() for r in caplog.records)


async def test_process_backend_timeout_kills_children_too(process_backend, make_spec, marker, processes_with):
    result = await run_sandboxed(["/bin/sh", "-c", f"sleep 100 & sleep 100 # {marker}"],
                                 make_spec(wall_seconds=1), process_backend)
    assert result.timed_out and result.killed_by == "timeout"
    await anyio.sleep(0.2)
    assert processes_with(marker) == []


async def test_leftover_background_children_are_ended_when_the_command_exits(process_backend, make_spec, marker,
                                                                             processes_with):
    result = await run_sandboxed(["/bin/sh", "-c", f"sleep 100 & echo started # {marker}"], make_spec(),
                                 process_backend)
    assert result.stdout == "started\n" and result.returncode == 0 and not result.timed_out
    assert result.duration_s < 5
    assert processes_with(marker) == []


async def test_stdin_is_fed_and_output_is_capped(bwrap, make_spec):
    result = await run_sandboxed(["/bin/cat"], make_spec(), bwrap, stdin=b"abc" * 100_000, max_output=1000)
    assert result.returncode == 0 and result.truncated
    assert result.stdout == "abc" * 333 + "a"
    echoed = await run_sandboxed(["/bin/cat"], make_spec(), bwrap, stdin=b"hello")
    assert echoed.stdout == "hello" and not echoed.truncated


async def test_a_signal_death_is_named(process_backend, make_spec):
    result = await run_sandboxed(["/bin/sh", "-c", "kill -TERM $$"], make_spec(), process_backend)
    assert result.returncode == -15 and result.killed_by == "SIGTERM", result


async def test_a_death_by_a_signal_without_a_name_is_reported_not_raised(process_backend, make_spec):
    result = await run_sandboxed(["/bin/sh", "-c", "kill -40 $$"], make_spec(), process_backend)
    assert result.returncode == -40 and result.killed_by == "signal 40", result


@pytest.mark.docker
async def test_docker_backend_cuts_network_and_runs_in_the_workdir(make_spec, workdir, tcp_server):
    backend = _docker_or_skip()
    result = await run_sandboxed(["sh", "-c", "pwd; touch made-inside"], make_spec(readonly=()), backend)
    assert result.stdout.strip() == str(workdir) and (workdir / "made-inside").exists(), result
    probe = f"import socket; socket.create_connection(('127.0.0.1', {tcp_server}), timeout=2)"
    blocked = await run_sandboxed(["python", "-c", probe], make_spec(readonly=()), backend)
    assert blocked.returncode != 0


def test_docker_command_line_applies_the_policy_without_an_engine(make_spec, monkeypatch):
    """What `docker run` is asked for (the behaviour itself is tested where an engine answers)."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/elsewhere.sock")
    spec = make_spec(sandbox_memory_mb=256, processes=32, wall_seconds=40)
    secret = "s3cr3t-value-" + "z" * 20
    spec = spec.model_copy(update={"env": {**spec.env, "WEATHER_API_KEY": secret}})
    launch = DockerBackend().launch(["python", "server.py"], spec)
    joined = " ".join(launch.argv)
    for part in ("--network none", "--user 65534:65534", "--read-only", "--cap-drop ALL", "--memory 256m",
                 "--pids-limit 32", f"-v {spec.workdir}:{spec.workdir} -w {spec.workdir}"):
        assert part in joined, part
    assert "OPENAI_API_KEY" not in joined
    assert launch.argv[-6:] == ["timeout", "-s", "KILL", "45", "python", "server.py"]
    assert "--network bridge" in " ".join(DockerBackend().launch(["python"], make_spec(network=True)).argv)
    # Every variable is named on the command line, its value only in the docker CLI's own environment.
    assert secret not in joined and "-e WEATHER_API_KEY " in joined and "-e HOME " in joined
    assert not [a for a in launch.argv if "=" in a and a.split("=", 1)[0] in spec.env]
    assert launch.env["WEATHER_API_KEY"] == secret and launch.env["HOME"] == spec.env["HOME"]
    assert launch.env["DOCKER_HOST"] == "unix:///run/elsewhere.sock"  # the CLI still finds its engine
    assert secret not in repr(launch)
    with pytest.raises(SandboxError, match="DOCKER_HOST"):
        DockerBackend().launch(["python"], spec.model_copy(update={"env": {**spec.env, "DOCKER_HOST": "x"}}))
