"""Dependency environments: real uv, real venvs, real concurrent builders, used through the real sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from sandbox.env import MARKER, EnvManager, normalize_requirements
from sandbox.errors import EnvBuildError
from sandbox.policy import safe_env
from sandbox.run import run_sandboxed
from sandbox.spec import RunSpec

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]

# A separate process that ensures an environment and prints what it got (for the cross-process tests).
ENSURE = """
import json, pathlib, sys
import anyio
from sandbox.env import EnvManager
env = anyio.run(EnvManager(pathlib.Path(sys.argv[1])).ensure, sys.argv[2:])
print(json.dumps({"key": env.key, "created": env.created}))
"""


@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory) -> Path:
    """One uv download cache for the whole session, so each package is fetched once."""
    return tmp_path_factory.mktemp("uv-cache")


@pytest.fixture
def envs(tmp_path, uv_cache, monkeypatch) -> EnvManager:
    """An EnvManager on a fresh root sharing the session's uv cache."""
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))
    return EnvManager(tmp_path / "envs-root")


def _ensure_in_subprocess(root: Path, *requirements: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", ENSURE, str(root), *requirements], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            start_new_session=True)


async def test_cold_create_then_warm_hit_and_the_env_works_read_only_in_the_sandbox(envs, bwrap, workdir):
    cold = await envs.ensure(["six==1.16.0"])
    built = os.stat(cold.path).st_ino
    warm = await envs.ensure(["six==1.16.0"])
    assert cold.created and not warm.created
    assert (warm.key, warm.path) == (cold.key, cold.path)
    assert os.stat(warm.path).st_ino == built  # the very directory built before: nothing was rebuilt
    spec = RunSpec(workdir=workdir, readonly_paths=(cold.path,), env=safe_env())
    result = await run_sandboxed([str(cold.python), "-c", "import six, sys; print(six.__version__, sys.prefix)"],
                                 spec, bwrap)
    assert result.stdout.split() == ["1.16.0", str(cold.path)], result
    assert [e.key for e in envs.list()] == [cold.key]


async def test_requirement_order_case_and_spacing_give_the_same_key(envs):
    one = await envs.key_for(["six==1.16.0", "Typing_Extensions >= 4"])
    other = await envs.key_for(["typing-extensions>=4", " SIX == 1.16.0", "six==1.16.0"])
    different = await envs.key_for(["six==1.15.0", "typing-extensions>=4"])
    assert one == other != different
    assert normalize_requirements(["Typing_Extensions >= 4"]) == ["typing-extensions>=4"]


async def test_invalid_requirements_are_refused_naming_the_entry(envs):
    with pytest.raises(EnvBuildError, match=r"requirements\[1\]='not a requirement!' is not a valid PEP 508"):
        await envs.ensure(["six", "not a requirement!"])
    with pytest.raises(EnvBuildError, match="list of strings, not one string"):
        await envs.ensure("six")


async def test_an_unresolvable_requirement_fails_with_uvs_message_and_leaves_nothing(envs):
    with pytest.raises(EnvBuildError, match="no-such-package-foundry-test.*was not found"):
        await envs.ensure(["no-such-package-foundry-test==1.0"])
    assert envs.list() == []
    assert list((envs.root / "envs").iterdir()) == []


async def test_concurrent_ensures_in_one_process_build_once(envs):
    results = []

    async def ensure() -> None:
        results.append(await envs.ensure(["six==1.16.0"]))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(ensure)
    assert sorted(r.created for r in results) == [False, False, True]
    assert len({r.path for r in results}) == 1


def test_concurrent_ensures_in_two_processes_build_once(envs, uv_cache):
    workers = [_ensure_in_subprocess(envs.root, "six==1.16.0") for _ in range(2)]
    outputs = [json.loads(w.communicate(timeout=60)[0]) for w in workers]
    assert sorted(o["created"] for o in outputs) == [False, True]
    assert outputs[0]["key"] == outputs[1]["key"]
    assert len(envs.list()) == 1


async def test_a_killed_half_build_is_never_reused(envs):
    builder = _ensure_in_subprocess(envs.root, "mcp==2.3.0")
    deadline = time.monotonic() + 30
    while not list((envs.root / "envs").glob(".build-*")) and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(builder.pid, signal.SIGKILL)  # the builder and its uv child, mid-build
    builder.wait()
    half = list((envs.root / "envs").glob(".build-*"))
    assert half and envs.list() == []  # killed mid-build: a half-built dir, no finished env
    env = await envs.ensure(["mcp==2.3.0"])
    assert env.created
    assert list((envs.root / "envs").glob(".build-*")) == []  # the stale half-build was cleared
    check = subprocess.run([str(env.python), "-c", "import mcp.server.mcpserver"], capture_output=True)
    assert check.returncode == 0, check.stderr


async def test_cleanup_removes_environments_unused_for_longer_than_max_age(envs):
    old = await envs.ensure(["six==1.15.0"])
    recent = await envs.ensure(["six==1.16.0"])
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old.path / MARKER, (ten_days_ago, ten_days_ago))  # last used ten days ago
    assert envs.cleanup(max_age_days=5) == [old.key]
    assert [e.key for e in envs.list()] == [recent.key] and not old.path.exists()
    assert envs.cleanup(max_total_mb=0) == [recent.key]
    assert envs.list() == []


async def test_cleanup_skips_an_environment_in_use_and_in_use_refuses_a_removed_one(envs):
    env = await envs.ensure(["six==1.16.0"])
    async with envs.in_use(env), envs.in_use(env):  # several users at once
        assert envs.cleanup(max_age_days=0) == []
        assert (env.path / MARKER).is_file()
    assert envs.cleanup(max_age_days=0) == [env.key]
    with pytest.raises(EnvBuildError, match="removed by a cleanup"):
        async with envs.in_use(env):
            pass
