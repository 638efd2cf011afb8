"""A server directory's own cases.json is untrusted: a hostile one neither stalls the foundry nor hangs the job."""

import json
import shutil
import time

import anyio

from tests.server.conftest import FIXTURES, stdio_foundry

LONG = "!" + "a" * 31  # reversed by the server: 31 a's and a "!", the audit's value
HOSTILE = {"cases": [
    {"name": "audit", "tool": "reverse", "arguments": {"text": LONG}, "expect": {"matches": "(a+)+$"}},
    {"name": "alternation", "tool": "reverse", "arguments": {"text": LONG}, "expect": {"matches": "(a|aa)+$"}},
    {"name": "schema pattern", "tool": "reverse", "arguments": {"text": LONG},
     "expect": {"schema": {"type": "string", "pattern": "(a+)+$"}}},
    {"name": "after them", "tool": "reverse", "arguments": {"text": "abc"}, "expect": {"equals": "cba"}},
]}


def test_serve_stays_responsive_while_a_hostile_cases_file_is_judged(data_dir, tmp_path):
    server = tmp_path / "hostile"
    shutil.copytree(FIXTURES / "good_server", server)
    (server / "cases.json").write_text(json.dumps(HOSTILE))
    latencies: list[float] = []

    async def main():
        async with stdio_foundry(data_dir) as client:
            ticket = await client.call_tool("validate_server", {"path": str(server)})
            job_id = ticket.structured_content["job_id"]
            while True:
                t = time.monotonic()
                listed = await client.call_tool("list_builds", {})
                latencies.append(time.monotonic() - t)
                if listed.structured_content["jobs"][0]["state"] not in ("queued", "running"):
                    break
                await anyio.sleep(0.05)
            return (await client.call_tool("build_result", {"job_id": job_id})).structured_content

    out = anyio.run(main)
    print(f"worst list_builds latency during the hostile cases: {max(latencies) * 1000:.0f} ms "
          f"over {len(latencies)} calls")
    cases = {c["name"]: c for c in out["result"]["report"]["cases"]}
    assert set(cases) == {"audit", "alternation", "schema pattern", "after them"}, out
    assert not cases["audit"]["passed"]  # 31 a's then "!" does not end in a's
    assert "did not finish searching the value within 1 s" in cases["alternation"]["reason"], cases
    assert "took more than 2 s to check the value" in cases["schema pattern"]["reason"], cases
    assert cases["after them"]["passed"], cases
    assert len(latencies) > 20 and max(latencies) < 1.0, latencies


def test_a_schema_that_refers_to_itself_is_refused_before_a_job_starts(data_dir, tmp_path):
    server = tmp_path / "selfref"
    shutil.copytree(FIXTURES / "good_server", server)
    (server / "cases.json").write_text(json.dumps({"cases": [
        {"tool": "reverse", "arguments": {"text": "x"}, "expect": {"schema": {"$ref": "#"}}}]}))
    cases_file = tmp_path / "cases.json"
    cases_file.write_text(json.dumps({"cases": [
        {"tool": "add", "arguments": {"a": 1, "b": 2}, "expect": {"schema": {"anyOf": [{"$ref": "#"}]}}}]}))

    async def main():
        async with stdio_foundry(data_dir) as client:
            in_dir = await client.call_tool("validate_server", {"path": str(server)})
            given = await client.call_tool("validate_server", {"path": str(FIXTURES / "good_server"),
                                                                "cases_file": str(cases_file)})
            jobs = (await client.call_tool("list_builds", {})).structured_content["jobs"]
            return in_dir, given, jobs

    in_dir, given, jobs = anyio.run(main)
    for res, field in ((in_dir, "path"), (given, "cases_file")):
        text = res.content[0].text
        assert res.is_error and text.startswith(f"validate_server: {field}: "), text
        assert "expect.schema' refers to itself without consuming the value" in text, text
    assert jobs == []
