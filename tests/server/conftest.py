"""Fixtures that start the real `mcp-foundry` command and talk to it as a client would."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from tests.proctree import stop_workers

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
FOUNDRY = [sys.executable, "-m", "server.cli"]
# One environment cache for every foundry process of the session, so each dependency set is installed once.
ENV_CACHE = Path(tempfile.gettempdir()) / f"mcp-foundry-test-envs-{os.getuid()}"


def foundry_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for a foundry child process: this checkout importable, its own data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_FOUNDRY_")}
    env.update({"MCP_FOUNDRY_DATA_DIR": str(data_dir), "MCP_FOUNDRY_ENV_CACHE": str(ENV_CACHE), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                # The never-answering samples fail as "timeout" after this, not after the default 30 s; a loaded
                # 2-core machine may take several seconds to start an honest server in the sandbox.
                "MCP_FOUNDRY_INIT_TIMEOUT": "20",
                # Workers that front ends start go away soon after the test's last job (the fixture stops them too).
                "MCP_FOUNDRY_WORKER_IDLE": "3", **extra})
    return env


@asynccontextmanager
async def stdio_foundry(data_dir: Path, **extra: str):
    """A real MCP client connected over stdio to `mcp-foundry serve`."""
    params = StdioServerParameters(command=FOUNDRY[0], args=[*FOUNDRY[1:], "serve"], env=foundry_env(data_dir, **extra),
                                   cwd=str(ROOT))
    async with Client(params, read_timeout_seconds=120) as client:
        yield client


def start_http(data_dir: Path, *args: str, host: str = "127.0.0.1", **env: str) -> tuple[subprocess.Popen, str]:
    """`mcp-foundry serve --http` on a free port of `host`; returns the process and its base URL once it answers."""
    port = free_port()
    p = subprocess.Popen([*FOUNDRY, "serve", "--http", f"{host}:{port}", *args], cwd=ROOT,
                         env=foundry_env(data_dir, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://{host}:{port}"
    for _ in range(400):
        try:
            httpx.get(f"{base}/healthz", timeout=0.5)
            return p, base
        except httpx.TransportError:
            if p.poll() is not None:
                raise AssertionError(p.stderr.read()) from None
            time.sleep(0.05)
    p.kill()
    raise AssertionError("server did not start listening")


def stop(p: subprocess.Popen) -> None:
    """Stop a server a test started."""
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def result_of(client: Client, job_id: str, *, timeout: float = 240, progress=None) -> dict:
    """build_result, asked again (it holds a request 50 s at most) until the job is final."""
    with anyio.fail_after(timeout):
        while True:
            res = await client.call_tool("build_result", {"job_id": job_id, "wait_s": 45}, progress_callback=progress)
            assert not res.is_error, res.content
            if res.structured_content["final"]:
                return res.structured_content


@pytest.fixture
def data_dir(tmp_path_factory):
    """A fresh data dir; the worker its front ends started is stopped afterwards (by the pid its store records)."""
    d = tmp_path_factory.mktemp("foundry-data")
    yield d
    stop_workers(d)


LAB_SECRET = "LAB_API_KEY"
"""The secret `lab` declares; its value is in the data dir's secrets.env (see `deployed`)."""


@pytest.fixture(scope="session")
def deployed(tmp_path_factory) -> Path:
    """A data dir with `lab` (two versions, deployed by jobs queued from this process, declaring the secret LAB_API_KEY,
    set in its secrets.env) and `hostile` (deployed by the CLI); shared by the gateway's test modules."""
    import subprocess
    import uuid

    from builder.config import load_settings
    from builder.params import deploy_params
    from builder.service import Foundry
    from server.jobs_cli import WORKER_ARGV, run_job

    data = tmp_path_factory.mktemp("gateway-data")
    foundry = Foundry(load_settings({"data_dir": str(data), "env_cache_dir": str(ENV_CACHE), "worker_idle_s": 3}))
    # A front end in this process: it queues for the data dir's one worker (starting it when none runs), which
    # the CLI's job shares; a pool of this process's own would take the CLI's job and interrupt it on exit.
    foundry.start_workers(WORKER_ARGV)
    added = subprocess.Popen([*FOUNDRY, "servers", "add", str(FIXTURES / "hostile_server"), "--name", "hostile"],
                             cwd=ROOT, env=foundry_env(data), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # meanwhile, from this process:
    try:
        for _ in range(2):
            params = deploy_params(str(FIXTURES / "lab_server"), "lab", secrets=[LAB_SECRET])
            job = run_job(foundry, "deploy", params, quiet=True)
            assert job.state == "succeeded", job.error
    except BaseException:
        added.kill()
        stop_workers(data)
        raise
    out, err = added.communicate(timeout=300)
    assert added.returncode == 0, err[-3000:]
    assert "DEPLOYED hostile v1" in out and "hostile__<tool>" in out
    foundry.settings.secrets_file.write_text(f"{LAB_SECRET}=lab-{uuid.uuid4().hex}\n")
    yield data
    stop_workers(data)
