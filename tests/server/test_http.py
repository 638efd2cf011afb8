"""The same tools over streamable HTTP; the bearer token and the non-loopback rule."""

import subprocess

import anyio
import httpx
import pytest
from mcp.client.client import Client

from tests.server.conftest import FIXTURES, FOUNDRY, ROOT, foundry_env, free_port, result_of, start_http

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _start(data_dir, *args, host="127.0.0.1", **env):
    p, base = start_http(data_dir, *args, host=host, **env)
    return p, f"{base}/mcp"


@pytest.fixture
def http_server(data_dir):
    p, url = _start(data_dir)
    yield url
    p.terminate()
    p.wait(10)


def test_tools_over_http(http_server):
    async def main():
        async with Client(http_server) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"validate_server", "build_status", "build_result", "cancel_build", "list_builds"} <= names
            res = await client.call_tool("build_status", {"job_id": "unknownjob"})
            assert res.is_error and "job_id" in res.content[0].text
            listed = await client.call_tool("list_builds", {})
            assert listed.structured_content == {"jobs": []}
            ticket = await client.call_tool("validate_server", {"path": str(FIXTURES / "good_server")})
            job_id = ticket.structured_content["job_id"]
            out = await result_of(client, job_id)
            assert out["state"] == "succeeded", out
            assert out["result"]["report"]["verdict"] == "pass"
            log = await client.read_resource(f"foundry://jobs/{job_id}/log")
            assert "verdict: pass" in log.contents[0].text

    anyio.run(main)


def test_non_loopback_bind_without_token_refuses_to_start(data_dir):
    run = subprocess.run([*FOUNDRY, "serve", "--http", f"0.0.0.0:{free_port()}"], cwd=ROOT,
                         env=foundry_env(data_dir), capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "token" in run.stderr and "0.0.0.0" in run.stderr


def test_wrong_or_missing_token_gets_401_and_the_right_one_passes(data_dir):
    p, url = _start(data_dir, "--token", "s3cret-token")
    try:
        assert httpx.post(url, json=INIT, headers=HEADERS).status_code == 401
        wrong = httpx.post(url, json=INIT, headers={**HEADERS, "Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "Bearer" in wrong.headers["www-authenticate"]
        ok = httpx.post(url, json=INIT, headers={**HEADERS, "Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and "mcp-foundry" in ok.text
    finally:
        p.terminate()
        p.wait(10)


def test_bad_bind_value_is_named(data_dir):
    run = subprocess.run([*FOUNDRY, "serve", "--http", "localhost:notaport"], cwd=ROOT, env=foundry_env(data_dir),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--http" in run.stderr


def test_without_a_token_host_and_origin_must_be_loopback_on_every_loopback_bind(data_dir):
    host = "127.0.0.2"  # the SDK's own check covers 127.0.0.1, localhost and ::1 only; ours covers all of them
    p, url = _start(data_dir, host=host)
    port = url.rsplit(":", 1)[1].split("/")[0]
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_builds", "arguments": {}}}
    try:
        def post(body, **headers):
            return httpx.post(url, json=body, headers={**HEADERS, **headers})

        rebound = post(INIT, Host=f"evil.example:{port}")
        assert rebound.status_code == 421 and "not a loopback address" in rebound.json()["error"], rebound.text
        assert post(call, Host=f"evil.example:{port}").status_code == 421
        foreign = post(INIT, Origin="http://evil.example")
        assert foreign.status_code == 403 and "not a loopback page" in foreign.json()["error"], foreign.text
        assert post(INIT, Origin="null").status_code == 403
        assert post(INIT, Host=f"127.0.0.99:{port}", Origin=f"http://localhost:{port}").status_code == 200
        assert post(INIT, Origin=f"http://{host}:{port}").status_code == 200
    finally:
        p.terminate()
        p.wait(10)
