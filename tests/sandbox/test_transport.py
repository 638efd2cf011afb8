"""The validator's stdio transport: what its launcher carries and what it leaves behind."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import anyio
import pytest

from sandbox.cases import parse_cases
from sandbox.stdio import ServerIO, stdio_transport
from sandbox.validate import ValidationTarget, validate_server

pytestmark = pytest.mark.anyio


async def test_the_launcher_of_a_server_under_test_carries_no_builder_secret(tmp_path, monkeypatch):
    # Run as a normal user, bubblewrap's pid 1 inside the sandbox keeps the launcher's environment and
    # the sandboxed code can read it from /proc/1/environ: so the launcher itself must not hold secrets.
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("FOUNDRY_TEST_PLAIN", "kept")
    io = ServerIO()
    async with stdio_transport([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path, io):
        assert io.process is not None
        environ = Path(f"/proc/{io.process.pid}/environ").read_bytes()
    assert secret.encode() not in environ and b"OPENAI_API_KEY" not in environ
    assert b"FOUNDRY_TEST_PLAIN=kept" in environ  # the rest of the launcher's environment is untouched


async def test_background_children_of_a_server_that_exited_are_ended(process_backend, marker, processes_with):
    target = ValidationTarget(command=["/bin/sh", "-c", f"sleep 100 & echo started >&2; exit 3 # {marker}"])
    report = await validate_server(target, backend=process_backend, env=None,
                                   cases=parse_cases({"cases": []}), init_timeout=10)
    assert report.failure_class == "runtime" and "exited with code 3" in report.failures()[0].reason, report.render()
    await anyio.sleep(0.2)
    assert processes_with(marker) == []
