"""The validator's stdio transport: what its launcher carries and what it leaves behind."""

from __future__ import annotations

import hashlib
import sys
import uuid
from pathlib import Path

import anyio
import pytest

from sandbox.cases import parse_cases
from sandbox.errors import SandboxError
from sandbox.limits import confined
from sandbox.policy import safe_env
from sandbox.stdio import ServerIO, stdio_transport
from sandbox.validate import ValidationTarget, validate_server
from tests.proctree import descendants

pytestmark = pytest.mark.anyio


# Prints a digest of the variable's value (never the value), then stays up while the test looks at processes.
ECHO_DIGEST = ("import hashlib, os, time; print(hashlib.sha256(os.environ['DEMO_API_KEY'].encode()).hexdigest(), "
               "flush=True); time.sleep(30)")


@pytest.mark.parametrize("backend_name", ["bubblewrap", "process"])
async def test_environment_values_reach_the_sandboxed_command_on_no_command_line(backend_name, bwrap, process_backend,
                                                                               make_spec, monkeypatch):
    """A declared secret reaches the command through the launcher's environment: no process of the run (the cgroup
    join, bwrap or the shim, the command) shows it in /proc/<pid>/cmdline, where every local user can read it; and
    the launcher holds nothing of the builder's environment (its pid 1 environ is readable inside, run as a user)."""
    backend = {"bubblewrap": bwrap, "process": process_backend}[backend_name]
    builder_secret = f"sk-builder-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", builder_secret)
    secret = f"declared-{uuid.uuid4().hex}"
    spec = make_spec().model_copy(update={"env": safe_env({"DEMO_API_KEY": secret},
                                                          allow_secret_names=["DEMO_API_KEY"])})
    io = ServerIO()
    async with confined(backend, spec) as box:
        launch = backend.launch([sys.executable, "-c", ECHO_DIGEST], box.spec)
        async with stdio_transport(launch, spec.workdir, io):
            with anyio.fail_after(20):
                while not io.noise:  # its one line is not JSON-RPC: the transport keeps it as noise
                    await anyio.sleep(0.05)
            assert io.process is not None
            run = {io.process.pid, *descendants(io.process.pid)}
            cmdlines = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in run}
            environ = Path(f"/proc/{io.process.pid}/environ").read_bytes()
    assert io.noise == [hashlib.sha256(secret.encode()).hexdigest()], io.stderr_text()  # it did get the value
    assert secret not in "\0".join(launch.argv)  # nor on the launcher's, before it execs the command
    assert cmdlines and not [pid for pid, cmd in cmdlines.items() if secret.encode() in cmd], cmdlines
    assert builder_secret.encode() not in environ and b"OPENAI_API_KEY" not in environ
    shown = {item for item in environ.rstrip(b"\0").split(b"\0") if not item.startswith(b"PWD=")}  # the join shell's
    assert shown == {f"{k}={v}".encode() for k, v in launch.env.items()}
    assert secret not in repr(launch)


def test_variables_the_launcher_itself_would_obey_are_refused(bwrap, process_backend, make_spec):
    for backend in (bwrap, process_backend):
        for name in ("LD_PRELOAD", "GCONV_PATH"):
            spec = make_spec().model_copy(update={"env": {"PATH": "/usr/bin", name: "/tmp/x.so"}})
            with pytest.raises(SandboxError, match=f"{name}.*launcher"):
                backend.launch(["true"], spec)


async def test_background_children_of_a_server_that_exited_are_ended(process_backend, marker, processes_with):
    target = ValidationTarget(command=["/bin/sh", "-c", f"sleep 100 & echo started >&2; exit 3 # {marker}"])
    report = await validate_server(target, backend=process_backend, env=None,
                                   cases=parse_cases({"cases": []}), init_timeout=10)
    assert report.failure_class == "runtime" and "exited with code 3" in report.failures()[0].reason, report.render()
    await anyio.sleep(0.2)
    assert processes_with(marker) == []
