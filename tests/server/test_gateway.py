"""The gateway, through real `mcp-foundry serve` processes: deployed servers served live, with their names,
lifecycle and failures (what their sandbox contains: test_gateway_sandbox.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyio
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from builder import deploy
from builder.jobs import SqliteJobStore
from server.gateway.mounts import exposed_name
from tests.server.conftest import FIXTURES, result_of
from tests.server.gateway_helpers import (
    TOOL_NAME,
    Heard,
    cli,
    foundry_children_running,
    serve,
    text,
    value,
)

LONG = "count_words_and_characters_of_a_text_and_report_every_detail"
LAB_PROCESS = "servers/lab/"


async def direct_call(tool: str, arguments: dict):
    """The same server run directly (no sandbox, no gateway) by this interpreter."""
    params = StdioServerParameters(command=sys.executable, args=[str(FIXTURES / "good_server" / "server.py")])
    async with Client(params, mode="legacy", cache=None) as client:
        return await client.call_tool(tool, arguments)


def test_a_deployment_reaches_every_open_session(data_dir):
    """Two real stdio sessions: one deploys with deploy_server, the other hears of it, lists and calls the tool."""

    async def main():
        deployer_events, heard = [], Heard()
        async with serve(data_dir, legacy=False) as deployer, serve(data_dir, heard=heard) as other:
            assert not [t.name for t in (await other.list_tools()).tools if "__" in t.name]
            bad = await deployer.call_tool("deploy_server", {"path": str(FIXTURES / "good_server"), "name": "Bad-Name"})
            assert bad.is_error and "name" in text(bad) and "lowercase" in text(bad)
            assert (await deployer.call_tool("list_builds", {})).structured_content["jobs"] == []

            async def listen():
                async with deployer.listen(tools_list_changed=True) as sub:
                    async for event in sub:
                        deployer_events.append(event)

            async with anyio.create_task_group() as tg:
                tg.start_soon(listen)
                ticket = await deployer.call_tool("deploy_server", {"path": str(FIXTURES / "good_server"),
                                                                    "name": "goodsrv"})
                job_id = ticket.structured_content["job_id"]
                await heard.wait_for("notifications/tools/list_changed", timeout=240)
                names = {t.name: t for t in (await other.list_tools()).tools}
                assert {"goodsrv__add", "goodsrv__word_count", "goodsrv__reverse", "goodsrv__divide"} <= set(names)
                add = names["goodsrv__add"]
                assert add.description == "Add two integers." and add.annotations.read_only_hint is True
                assert set(add.input_schema["properties"]) == {"a", "b"} and add.output_schema
                via_gateway = await other.call_tool("goodsrv__add", {"a": 2, "b": 3})
                direct = await direct_call("add", {"a": 2, "b": 3})
                assert via_gateway.structured_content == direct.structured_content == {"result": 5}
                assert text(via_gateway) == text(direct) and not via_gateway.is_error
                with anyio.fail_after(10):
                    while not deployer_events:  # the 2026-07-28 session hears it on its listen stream
                        await anyio.sleep(0.1)
                tg.cancel_scope.cancel()
            result = await result_of(deployer, job_id)
            assert result["state"] == "succeeded" and result["result"]["deployment"]["version"] == "1"
            hits = await deployer.call_tool("search_repository", {"query": "add two integers, reverse a string",
                                                                  "filters": {"source": "user"}})
            assert [h["server_name"] for h in hits.structured_content["hits"]] == ["goodsrv"]
            shown = (await other.call_tool("get_server", {"name": "goodsrv"})).structured_content
            assert shown["mounted"] is True and shown["exposed_tools"]["add"] == "goodsrv__add"
            assert shown["client_config"]["mcpServers"]["goodsrv"]["args"][-2:] == ["run", "goodsrv"]

    anyio.run(main)


def test_state_survives_an_idle_stop_a_restart_and_a_rollback(deployed):
    heard = Heard()

    async def main():
        async with serve(deployed, heard=heard, MCP_FOUNDRY_IDLE_TIMEOUT="1.5") as client:
            first = value(await client.call_tool("lab__increment", {}))
            assert value(await client.call_tool("lab__increment", {})) == first + 1
            before = value(await client.call_tool("lab__instance", {}))
            assert foundry_children_running(LAB_PROCESS)
            with anyio.fail_after(15):  # idle past the timeout: the server is stopped
                while foundry_children_running(LAB_PROCESS):
                    await anyio.sleep(0.1)
            assert value(await client.call_tool("lab__instance", {})) != before  # started again
            assert value(await client.call_tool("lab__increment", {})) == first + 2  # its SQLite file was kept

            rolled = (await client.call_tool("rollback_server", {"name": "lab"})).structured_content
            assert rolled["version"] == "1" and rolled["state"].startswith("state kept")
            await heard.wait_for("notifications/tools/list_changed")
            shown = (await client.call_tool("get_server", {"name": "lab"})).structured_content
            assert shown["version"] == "1" and shown["mounted"] is True
            assert value(await client.call_tool("lab__increment", {})) == first + 3  # v1 sees v2's data
            forward = await client.call_tool("rollback_server", {"name": "lab", "version": "2"})
            assert forward.structured_content["version"] == "2"

    anyio.run(main)
    assert (deployed / "servers" / "lab" / "state" / "lab.db").is_file()


def test_failures_are_clear_and_the_next_call_works(deployed):
    state = deployed / "servers" / "lab" / "state"

    async def main():
        # A 6 s initialize limit: the silent start below is found late in 6 s, not the tests' default 20 s.
        async with serve(deployed, MCP_FOUNDRY_CALL_TIMEOUT="3", MCP_FOUNDRY_OUTPUT_CAP_KB="64",
                         MCP_FOUNDRY_INIT_TIMEOUT="6") as client:
            before = value(await client.call_tool("lab__instance", {}))
            crashed = await client.call_tool("lab__crash", {})
            assert crashed.is_error and "crashed during the call to crash (exit code 3)" in text(crashed)
            assert "crashing on purpose" in text(crashed)  # its stderr, for the reader of the error
            after_crash = value(await client.call_tool("lab__instance", {}))
            assert after_crash != before

            t = time.monotonic()
            napped = await client.call_tool("lab__nap", {"seconds": 60})
            assert napped.is_error and "did not answer within 3 s" in text(napped) and "stopped" in text(napped)
            assert time.monotonic() - t < 20
            with anyio.fail_after(10):  # its whole sandbox is gone
                while foundry_children_running(LAB_PROCESS):
                    await anyio.sleep(0.1)

            (state / "FAIL_ON_START").write_text("")
            try:
                failed = await client.call_tool("lab__instance", {})
            finally:
                (state / "FAIL_ON_START").unlink()
            assert failed.is_error and "failed to start" in text(failed) and "exited with code 4" in text(failed)
            assert "refusing to start: FAIL_ON_START" in text(failed)  # the stderr tail
            (state / "SILENT_START").write_text("")
            try:
                silent = await client.call_tool("lab__instance", {})
            finally:
                (state / "SILENT_START").unlink()
            # Named as late, not by the exit code of the signal that stopped it.
            assert silent.is_error and "no answer to initialize within 6 s" in text(silent), text(silent)
            assert value(await client.call_tool("lab__instance", {})) not in (before, after_crash)

            too_big = await client.call_tool("lab__big", {"kilobytes": 100})
            assert too_big.is_error and "over the output cap" in text(too_big)

            answers: dict[int, str] = {}

            async def one(i: int) -> None:
                answers[i] = value(await client.call_tool("lab__echo", {"text": f"call {i}"}))

            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(one, i)
            assert answers == {i: f"call {i}" for i in range(100)}
            assert foundry_children_running(LAB_PROCESS)  # warm

    anyio.run(main)
    deadline = time.monotonic() + 10
    while foundry_children_running(LAB_PROCESS) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not foundry_children_running(LAB_PROCESS)  # serve's end stopped its servers too


def test_a_sixty_character_tool_name_gets_a_valid_stable_short_name(deployed):
    async def main():
        async with serve(deployed, "--mount", "lab") as client:
            names = [t.name for t in (await client.list_tools()).tools if "__" in t.name]
            shown = (await client.call_tool("get_server", {"name": "lab"})).structured_content
            short = shown["exposed_tools"][LONG]
            counted = value(await client.call_tool(short, {"text": "three small words"}))
        return names, short, counted

    names, short, counted = anyio.run(main)
    assert all(n.startswith("lab__") for n in names) and "hostile__probe" not in names  # --mount lab
    assert short in names and len(short) <= 64 and TOOL_NAME.match(short) and short.startswith("lab__count_words")
    assert short == exposed_name("lab", LONG) != f"lab__{LONG}"
    assert counted == {"words": 3, "chars": 17}
    doctor = cli(deployed, "doctor")  # another process names it the same way
    assert doctor.returncode == 0 and short in doctor.stdout and f"(= {LONG})" in doctor.stdout
    assert "hostile__probe" in doctor.stdout


def test_no_mount_serves_only_the_foundrys_own_tools(deployed):
    async def main():
        async with serve(deployed, "--no-mount") as client:
            return [t.name for t in (await client.list_tools()).tools], client.server_capabilities

    names, caps = anyio.run(main)
    assert "deploy_server" in names and not [n for n in names if "__" in n]
    assert caps.prompts is None  # nothing mounted and no prompts of its own: no prompts to offer


def test_bad_input_to_servers_add_and_run_is_refused_before_anything_runs(deployed):
    store = SqliteJobStore(deployed / "jobs.sqlite3")
    jobs_before = store.list()
    runs = [cli(deployed, "servers", "add", str(FIXTURES / "lab_server")),
            cli(deployed, "servers", "add", str(FIXTURES / "lab_server"), "--name", "lab",
                "--secret", "MCP_FOUNDRY_HTTP_TOKEN"),
            cli(deployed, "run", "lab", "--version", "9")]
    for run, field in zip(runs, ("--name", "secrets", "version"), strict=True):
        assert run.returncode == 2 and field in run.stderr, run.stderr
    assert "one of 1, 2" in runs[2].stderr and runs[2].stdout == ""  # nothing on the protocol channel
    assert store.list() == jobs_before
    assert deploy.list_servers(deployed / "servers")[1].versions == ["1", "2"]  # lab as it was


def test_http_sessions_hear_of_a_deploy_and_a_removal_made_by_another_process(deployed):
    from builder.draft import ServerDraft
    from tests.server.test_http import _start

    servers = deployed / "servers"
    lab = deploy.get_server(servers, "lab", "1")
    proc, url = _start(deployed, MCP_FOUNDRY_MOUNT_POLL="0.2")

    async def main():
        legacy_heard, modern_events = Heard(), []
        async with Client(url, mode="legacy", message_handler=legacy_heard, cache=None) as legacy, \
                Client(url, cache=None) as modern:

            async def listen():
                async with modern.listen(tools_list_changed=True) as sub:
                    async for event in sub:
                        modern_events.append(event)

            async with anyio.create_task_group() as tg:
                tg.start_soon(listen)
                await anyio.sleep(0.5)
                # Deployed by this test process, as a worker or the CLI would: only the servers directory changes.
                deploy.deploy(servers, "lab2", ServerDraft.read_from(Path(lab.directory)), env_path=Path(lab.env_path),
                              tools=lab.tools, validation=lab.validation)
                await legacy_heard.wait_for("notifications/tools/list_changed")
                assert "lab2__instance" in [t.name for t in (await legacy.list_tools()).tools]
                assert value(await modern.call_tool("lab2__echo", {"text": "over http"})) == "over http"
                legacy_heard.reset()
                deploy.remove_server(servers, "lab2")
                await legacy_heard.wait_for("notifications/tools/list_changed")
                assert not [t for t in (await modern.list_tools()).tools if t.name.startswith("lab2__")]
                with anyio.fail_after(10):
                    while len(modern_events) < 2:  # the 2026-07-28 session heard both on its listen stream
                        await anyio.sleep(0.1)
                tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    finally:
        proc.terminate()
        proc.wait(10)
