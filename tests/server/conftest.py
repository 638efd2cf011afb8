"""Fixtures that start the real `mcp-foundry` command and talk to it as a client would."""

import os
import socket
import sys
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
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
                # The never-answering samples fail as "timeout" after this, not after the default 30 s.
                "MCP_FOUNDRY_INIT_TIMEOUT": "6",
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
    """A data dir with `lab` (two versions, deployed by jobs in this process, declaring the secret LAB_API_KEY,
    set in its secrets.env) and `hostile` (deployed by the CLI); shared by the gateway's test modules."""
    import subprocess
    import uuid

    from builder.config import load_settings
    from builder.params import deploy_params
    from builder.service import Foundry

    data = tmp_path_factory.mktemp("gateway-data")
    foundry = Foundry(load_settings({"data_dir": str(data), "env_cache_dir": str(ENV_CACHE)}))
    added = subprocess.Popen([*FOUNDRY, "servers", "add", str(FIXTURES / "hostile_server"), "--name", "hostile"],
                             cwd=ROOT, env=foundry_env(data), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # meanwhile, in this process:

    async def deploy_lab_twice() -> None:
        async with foundry.runner():  # a worker of this process's own, beside the one the CLI starts
            for _ in range(2):
                params = deploy_params(str(FIXTURES / "lab_server"), "lab", secrets=[LAB_SECRET])
                job = await foundry.queue.wait(foundry.queue.submit("deploy", params).id, 300)
                assert job.state == "succeeded", job.error

    anyio.run(deploy_lab_twice)
    out, err = added.communicate(timeout=300)
    assert added.returncode == 0, err[-3000:]
    assert "DEPLOYED hostile v1" in out and "hostile__<tool>" in out
    foundry.settings.secrets_file.write_text(f"{LAB_SECRET}=lab-{uuid.uuid4().hex}\n")
    yield data
    stop_workers(data)
