"""The REST, WebSocket and metrics face over real HTTP, against `serve --http` on a free loopback port.

One server (and one data dir) serves the whole module; the jobs it runs are real validations
by the worker it starts.
"""

import json

import anyio
import httpx
import pytest
from mcp.client.client import Client
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from builder.jobs import SqliteJobStore
from tests.proctree import stop_workers
from tests.server.conftest import FIXTURES, start_http, stop

GOOD = str(FIXTURES / "good_server")
WRONG = str(FIXTURES / "wrong_result_server")
SILENT = str(FIXTURES / "no_init_server")
"""A server that never answers initialize: its validation runs until MCP_FOUNDRY_INIT_TIMEOUT (6 s here)."""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("rest-data")
    yield d
    stop_workers(d)


@pytest.fixture(scope="module")
def base(data_dir):
    # The silent server here is cancelled, never left to time out: a loaded machine gets the default's slack.
    p, url = start_http(data_dir, MCP_FOUNDRY_INIT_TIMEOUT="30")
    yield url
    stop(p)


def ws_url(base: str, job_id: str) -> str:
    return base.replace("http://", "ws://") + f"/api/v1/build/{job_id}/ws"


def follow(base: str, job_id: str, **kw) -> tuple[list[dict], int | None]:
    """Every message of the job's WebSocket until the server closes it, and the close code."""
    messages = []
    with connect(ws_url(base, job_id), open_timeout=10, close_timeout=5, **kw) as ws:
        for raw in ws:  # ends when the server closes
            messages.append(json.loads(raw))
    return messages, ws.close_code


def submit(base: str, path: str) -> dict:
    r = httpx.post(f"{base}/api/v1/validate", json={"path": path}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()


@pytest.fixture(scope="module")
def followed(base):
    """A passing and a failing validation submitted over REST, each followed on its WebSocket to the end."""
    tickets = [submit(base, GOOD), submit(base, WRONG)]
    return [(t, *follow(base, t["build_id"])) for t in tickets]


def test_a_validation_submitted_over_rest_is_followed_on_the_websocket_to_its_final_message(followed):
    (ticket, messages, code), _ = followed
    assert set(ticket) == {"build_id", "status", "estimated_completion", "message"}
    assert ticket["status"] == "queued" and ticket["build_id"] in ticket["message"]
    assert code == 1000
    kinds = [m["type"] for m in messages]
    assert kinds[-1] == "final" and kinds.count("final") == 1, kinds
    assert messages[-1]["data"] == {**messages[-1]["data"], "build_id": ticket["build_id"], "status": "succeeded",
                                    "success": True, "error_message": None}
    updates = [m["data"] for m in messages if m["type"] == "progress_update"]
    assert updates and all(set(u) == {"build_id", "phase", "progress", "message", "timestamp"} for u in updates)
    assert any(u["phase"] == "validate" and 0 < u["progress"] < 1 for u in updates), updates
    lines = [m["data"] for m in messages if m["type"] == "log"]
    assert [x["n"] for x in lines] == list(range(1, len(lines) + 1))  # every line once, in order
    assert lines[-1]["line"].endswith("verdict: pass")


def test_status_and_result_of_the_followed_jobs(base, followed):
    (good, *_), (wrong, *_) = followed
    status = httpx.get(f"{base}/api/v1/build/{good['build_id']}/status").json()
    assert set(status) == {"build_id", "status", "progress", "current_phase", "logs", "estimated_remaining", "worker",
                           "question"}
    assert status["status"] == "succeeded" and status["progress"] == 1.0 and status["estimated_remaining"] == 0
    assert status["worker"] and status["logs"][-1].endswith("verdict: pass")

    result = httpx.get(f"{base}/api/v1/build/{good['build_id']}/result").json()
    assert set(result) >= {"build_id", "success", "report", "error_message", "build_metrics", "test_results"}
    assert result["success"] is True and result["error_message"] is None
    assert result["report"]["report"]["verdict"] == "pass"
    tests = result["test_results"]
    assert tests["verdict"] == "pass" and tests["checks_passed"] == tests["checks_total"] > 0
    assert len(tests["cases"]) == 7 and all(c["passed"] for c in tests["cases"])
    metrics = result["build_metrics"]
    assert metrics["kind"] == "validate" and metrics["run_s"] > 0 and metrics["queued_s"] >= 0
    assert metrics["phases"]["validate"] > 0

    failed = httpx.get(f"{base}/api/v1/build/{wrong['build_id']}/result").json()
    assert failed["success"] is False and failed["status"] == "failed"
    assert failed["test_results"]["verdict"] == "fail"
    assert any(line.endswith("[assertion]") for line in failed["test_results"]["failed"]), failed["test_results"]
    assert "[assertion]" in failed["error_message"]


def test_metrics_parse_and_count_the_jobs(base, followed):
    r = httpx.get(f"{base}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(r.text) for s in family.samples}

    def value(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))))

    assert value("mcp_build_requests_total", kind="validate", priority="normal", status="succeeded") == 1
    assert value("mcp_build_requests_total", kind="validate", priority="normal", status="failed") == 1
    assert value("mcp_build_duration_seconds_count", kind="validate", success="true", failure_type="none") == 1
    assert value("mcp_build_duration_seconds_count", kind="validate", success="false",
                 failure_type="assertion") == 1
    assert value("mcp_sandbox_runs_total", kind="validate", verdict="pass", failure_class="none") == 1
    assert value("mcp_sandbox_runs_total", kind="validate", verdict="fail", failure_class="assertion") == 1
    assert value("mcp_build_success_rate", kind="validate", window="all") == 0.5
    assert value("mcp_phase_duration_seconds_count", kind="validate", phase="validate") == 2
    assert value("mcp_queue_depth", kind="validate", state="queued") == 0
    assert value("mcp_active_builds", kind="validate") == 0
    assert value("mcp_workers_alive") == 1  # the worker this front end started (it idles 3 s before it exits)
    assert value("mcp_reuse_hits_total", how="exact") == 0
    assert value("mcp_llm_calls_total", kind="validate") == 0


def test_result_is_409_before_the_end_and_delete_cancels(base):
    ticket = submit(base, SILENT)
    job = f"{base}/api/v1/build/{ticket['build_id']}"
    early = httpx.get(f"{job}/result")
    assert early.status_code == 409 and "not final" in early.json()["error"], early.text
    cancelled = httpx.delete(job, timeout=60)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    again = httpx.delete(job)
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]
    result = httpx.get(f"{job}/result").json()
    assert result["status"] == "cancelled" and result["success"] is False and result["test_results"] is None
    messages, code = follow(base, ticket["build_id"])  # a final job: its log, its state, then close
    assert messages[-1]["type"] == "final" and messages[-1]["data"]["status"] == "cancelled" and code == 1000


def _mcp_error(base: str, tool: str, arguments: dict) -> str:
    async def call() -> str:
        async with Client(f"{base}/mcp") as client:
            res = await client.call_tool(tool, arguments)
            assert res.is_error
            return res.content[0].text

    return anyio.run(call)


def test_bad_bodies_get_422_in_the_mcp_tools_words_and_queue_nothing(base, data_dir):
    store = SqliteJobStore(data_dir / "jobs.sqlite3")
    before = len(store.list(limit=1000))
    typed = {"path": 3, "needs_network": "yes"}
    r = httpx.post(f"{base}/api/v1/validate", json=typed)
    assert r.status_code == 422
    lines = r.json()["errors"]
    assert [line.split(":")[1].strip() for line in lines] == ["path", "needs_network"]
    # One line per field here; the MCP tool says the same, on one line.
    assert _mcp_error(base, "validate_server", typed) == "validate_server: " + "; ".join(
        line.removeprefix("validate_server: ") for line in lines)
    missing = {"path": str(FIXTURES / "does_not_exist")}
    r = httpx.post(f"{base}/api/v1/validate", json=missing)
    assert r.status_code == 422 and r.json()["errors"] == [_mcp_error(base, "validate_server", missing)]

    several = httpx.post(f"{base}/api/v1/validate", json={"path": 3, "timeout_s": -1}).json()["errors"]
    assert [line.split(":")[1].strip() for line in several] == ["path", "timeout_s"]
    build = httpx.post(f"{base}/api/v1/build", json={"description": "abc", "priority": "urgent"})
    assert build.status_code == 422, build.text
    assert {line.split(":")[1].strip() for line in build.json()["errors"]} == {"description", "priority"}
    for raw in (b"[1, 2]", b"{not json", b'"text"'):
        r = httpx.post(f"{base}/api/v1/build", content=raw)
        assert r.status_code == 422 and r.json()["error"].startswith("request_build: body:"), r.text
    huge = httpx.post(f"{base}/api/v1/validate", content=b'{"path": "' + b"x" * 1_000_001 + b'"}')
    assert huge.status_code == 413 and "at most 1000000 bytes" in huge.json()["error"]
    search = httpx.get(f"{base}/api/v1/search", params={"limit": "many"})
    assert search.status_code == 422
    assert [line.split(":")[1].strip() for line in search.json()["errors"]] == ["limit", "q"]
    assert len(store.list(limit=1000)) == before
    store.close()


def test_unknown_ids_and_names_get_404_with_a_message(base):
    for method, path in [("GET", "/api/v1/build/nosuchjob/status"), ("GET", "/api/v1/build/nosuchjob/result"),
                         ("DELETE", "/api/v1/build/nosuchjob"), ("GET", "/api/v1/servers/nosuchserver"),
                         ("GET", "/api/v1/servers/bad%20name"), ("GET", "/api/v1/nothing/here")]:
        r = httpx.request(method, f"{base}{path}")
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"], path
    with pytest.raises(InvalidStatus) as denied:
        follow(base, "nosuchjob")
    assert denied.value.response.status_code == 404
    assert b"no job with id 'nosuchjob'" in denied.value.response.body


def test_servers_search_health_and_answers_only_to_a_waiting_build(base, followed):
    assert httpx.get(f"{base}/api/v1/servers").json() == {"servers": []}
    health = httpx.get(f"{base}/healthz").json()
    assert health["status"] == "ok" and health["store"] == "SqliteJobStore"
    hits = httpx.get(f"{base}/api/v1/search", params={"q": "count the words", "limit": 3}, timeout=120)
    assert hits.status_code == 200 and hits.json() == {"query": "count the words", "hits": []}
    answer = httpx.post(f"{base}/api/v1/build/anyjob/answer", json={"question_id": "q", "answer": {}})
    assert answer.status_code == 404 and "no job with id 'anyjob'" in answer.json()["error"]
    (done, *_), _ = followed
    answer = httpx.post(f"{base}/api/v1/build/{done['build_id']}/answer", json={"question_id": "q", "answer": {}})
    assert answer.status_code == 409 and "is succeeded, not waiting for an answer" in answer.json()["error"]
    assert httpx.get(f"{base}/api/v1/build/{done['build_id']}/status").json()["question"] is None


def test_openapi_document_describes_every_route_with_the_tools_own_schemas(base):
    doc = httpx.get(f"{base}/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    ops = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert {("/api/v1/build", "post"), ("/api/v1/validate", "post"), ("/api/v1/build/{build_id}/status", "get"),
            ("/api/v1/build/{build_id}/result", "get"), ("/api/v1/build/{build_id}", "delete"),
            ("/api/v1/servers", "get"), ("/api/v1/servers/{name}", "get"), ("/api/v1/search", "get"),
            ("/healthz", "get"), ("/metrics", "get"), ("/api/v1/build/{build_id}/ws", "get"),
            ("/api/v1/build/{build_id}/answer", "post")} <= ops

    async def tools() -> dict:
        async with Client(f"{base}/mcp") as client:
            return {t.name: t.input_schema for t in (await client.list_tools()).tools}

    schemas = anyio.run(tools)
    body = doc["paths"]["/api/v1/validate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"] == schemas["validate_server"]["properties"]
    text = json.dumps(doc)
    refs = {part.split('"')[0] for part in text.split('"#/components/schemas/')[1:]}
    assert refs and refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])
    assert {"ProgressUpdate", "LogLine", "Final", "BuildStatus", "BuildResult", "AnswerBody", "QuestionView"} \
        <= set(doc["components"]["schemas"])
    answer = doc["paths"]["/api/v1/build/{build_id}/answer"]["post"]
    assert answer["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AnswerBody"}
    assert {"200", "404", "409", "422"} <= set(answer["responses"])


def test_without_a_token_rest_and_websocket_answer_only_loopback_hosts_and_origins(base, followed):
    port = base.rsplit(":", 1)[1]
    r = httpx.get(f"{base}/api/v1/build/nosuchjob/status", headers={"Host": f"evil.example:{port}"})
    assert r.status_code == 421
    assert httpx.get(f"{base}/metrics", headers={"Origin": "http://evil.example"}).status_code == 403
    job_id = followed[0][0]["build_id"]
    with pytest.raises(InvalidStatus) as refused:
        follow(base, job_id, origin="http://evil.example")
    assert refused.value.response.status_code == 403


def test_a_missing_or_wrong_token_gets_401_on_rest_metrics_and_websocket(tmp_path):
    p, url = start_http(tmp_path / "data", "--token", "s3cret")
    try:
        for path in ("/api/v1/build/x/status", "/metrics", "/healthz", "/api/v1/openapi.json"):
            assert httpx.get(f"{url}{path}").status_code == 401, path
            assert httpx.get(f"{url}{path}", headers={"Authorization": "Bearer nope"}).status_code == 401, path
        assert httpx.post(f"{url}/api/v1/validate", json={"path": GOOD}).status_code == 401
        ok = httpx.get(f"{url}/api/v1/build/x/status", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 404 and "no job" in ok.json()["error"]
        with pytest.raises(InvalidStatus) as refused:
            follow(url, "x")
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as known:
            follow(url, "x", additional_headers={"Authorization": "Bearer s3cret"})
        assert known.value.response.status_code == 404  # past the token: the job is unknown
    finally:
        stop(p)
        stop_workers(tmp_path / "data")
