"""Shared knowledge: processes of several workers storing cases in one LanceDB repository lose none, on a shared
path and on object storage (s3:// against a local S3-compatible server, moto in server mode)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from builder.config import load_settings
from builder.service import open_knowledge
from knowledge.embed import HashingEmbedder
from tests.server.conftest import ROOT, foundry_env, free_port

WRITER = [sys.executable, str(Path(__file__).with_name("kb_worker_writer.py"))]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with one bucket; yields the AWS variables that point LanceDB at it."""
    pytest.importorskip("moto", reason="moto is in the test extra: `bash scripts/setup.sh --test`")
    import boto3

    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "log", "w")  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.1)
        env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
               "AWS_ENDPOINT": url, "AWS_ALLOW_HTTP": "true"}
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                     aws_secret_access_key="test").create_bucket(Bucket="foundry-kb")
        yield env
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def _write_together(env: dict[str, str], tags: list[str], count: int) -> list[list[str]]:
    """Start one writer per tag, release them at once, and return the ids each stored."""
    procs = [subprocess.Popen([*WRITER, tag, str(count)], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in tags]
    assert [p.stdout.readline().strip() for p in procs] == ["ready"] * len(procs), [p.stderr.read() for p in procs]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), [err for _, err in outs]
    return [out.split() for out, _ in outs]


def _check(env: dict[str, str], tags: list[str], count: int) -> None:
    distinct = _write_together(env, tags, count)
    same = _write_together(env, ["same", "same"], count)
    saved = os.environ.copy()
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    try:
        store = open_knowledge(load_settings(environ=env), HashingEmbedder())
        names = [c.server_name for c in store.list_cases()]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    expected = {f"{t}-{i}" for t in tags for i in range(count)} | {f"same-{i}" for i in range(count)}
    assert sorted(names) == sorted(expected)  # none lost, and the case both stored at once is kept once
    assert all(len(ids) == count for ids in distinct + same)
    assert set(same[0]) == set(same[1])  # both were told the id of the one row


def test_two_workers_on_one_shared_path_lose_no_case(tmp_path, pg_url):
    env = foundry_env(tmp_path / "w", MCP_FOUNDRY_KNOWLEDGE_URI=str(tmp_path / "shared-kb"), MCP_FOUNDRY_DB_URL=pg_url)
    _check(env, ["a", "b"], 8)


def test_two_workers_on_object_storage_lose_no_case_and_keep_one_row_per_case(tmp_path, pg_url, s3):
    env = foundry_env(tmp_path / "w", MCP_FOUNDRY_KNOWLEDGE_URI="s3://foundry-kb/repo", MCP_FOUNDRY_DB_URL=pg_url,
                      **s3)
    _check(env, ["a", "b"], 6)
