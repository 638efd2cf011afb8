"""Overhead of one question/answer round trip between a build and its client, without the model's time.

(a) The mechanism alone, across processes: a worker process (a JobRunner over the data dir's
    SQLite store) runs a job that asks its client ROUNDS questions through the real
    ClientProvider and complete_json; this process plays the front end: it sees each
    question as build_result does (JobQueue.wait on the store) and answers it at once
    through builder.llm.answers (checked against schema and model, stored, then waiting
    until the worker took it up). Per round: question stored -> seen by the front end;
    answer given -> taken up by the worker; answer given -> next question seen (the round
    trip). Once with a Requirement answer (small) and once with a ServerDraft answer (a
    whole server's files).
(b) The same seen over MCP: a real `mcp-foundry serve` over stdio and the real worker it
    starts, no model configured; ROUNDS builds each stop at their requirement question,
    which the client sees through build_result, answers with answer_build (which returns
    once the worker took the answer up), and then cancels. Per build: question stored ->
    seen by the client; answer_build's own duration.

Usage:

    .venv/bin/python bench/bench_client.py [--rounds 20] [--builds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from builder.draft import ServerDraft  # noqa: E402
from builder.jobs import JobContext, JobQueue, JobRunner, JobState, SqliteJobStore  # noqa: E402
from builder.llm import ChatMessage, Usage, complete_json  # noqa: E402
from builder.llm.answers import answer  # noqa: E402
from builder.llm.client import ClientProvider, asking  # noqa: E402
from builder.requirement import Requirement  # noqa: E402

ENV_CACHE = Path(tempfile.gettempdir()) / f"mcp-foundry-test-envs-{os.getuid()}"
REQUIREMENT = {
    "server_name": "text_stats", "summary": "Counts the words of a text.", "category": "text",
    "tools": [{"name": "word_count", "description": "Count the words of a text.",
               "params": [{"name": "text", "type": "string", "description": "The text."}],
               "returns": "the number of words", "examples": [{"arguments": {"text": "a b"}, "expect": {"equals": 2}}]}],
}
MODELS = {"requirement": Requirement, "draft": ServerDraft}


def draft_answer() -> dict:
    """A whole server's files (the test fixture good_server), as a code answer."""
    folder = REPO / "tests" / "fixtures" / "good_server"
    files = {p.name: p.read_text() for p in sorted(folder.iterdir()) if p.is_file()}
    return {"files": {**files, "README.md": "# good\n", "Dockerfile": "FROM python:3.11-slim\n"}}


# ---- (a) the worker process ----------------------------------------------------------------------------------------

def run_worker(db: Path) -> None:
    """The worker side of (a): ask questions of the kind each job names, as many as it names."""
    async def ask(ctx: JobContext) -> dict:
        provider, usage = ClientProvider(ctx), Usage()
        model = MODELS[ctx.params["model"]]
        for n in range(ctx.params["rounds"] + 1):
            with asking("bench", turn=n + 1):
                await complete_json(provider, [ChatMessage(role="user", content=f"question {n}")], model,
                                    usage=usage)
        return {"calls": usage.calls}

    async def main() -> None:
        store = SqliteJobStore(db)
        async with JobRunner(store, {"ask": ask}, max_jobs=1):
            while len(store.list(state=["succeeded", "failed", "cancelled"], kind="ask", limit=2)) < 2:
                await anyio.sleep(0.2)

    anyio.run(main)


# ---- (a) the front end ---------------------------------------------------------------------------------------------

async def round_trips(store: SqliteJobStore, model: str, value: dict, rounds: int) -> dict[str, list[float]]:
    queue = JobQueue(store, ["ask"], default_timeout_s=600)

    def asks(job) -> bool:
        return job.state == JobState.waiting and store.open_question(job.id) is not None

    job = queue.submit("ask", {"model": model, "rounds": rounds})
    out: dict[str, list[float]] = {"seen": [], "taken": [], "round trip": []}
    job = await queue.wait(job.id, 60, until=asks)
    question = store.open_question(job.id)
    for _ in range(rounds):
        out["seen"].append(time.time() - question.asked_at)  # both clocks are this machine's
        t = time.perf_counter()
        await answer(store, job.id, question.id, value)
        out["taken"].append(time.perf_counter() - t)
        while True:
            job = await queue.wait(job.id, 60, until=asks)
            nxt = store.open_question(job.id)
            if nxt is not None and nxt.id != question.id:
                break
            await anyio.sleep(queue.poll_s)
        out["round trip"].append(time.perf_counter() - t)
        question = nxt
    await answer(store, job.id, question.id, value)
    job = await queue.wait(job.id, 60)
    assert job.state == JobState.succeeded, job.error
    return out


async def bench_mechanism(rounds: int) -> dict[str, dict[str, list[float]]]:
    with tempfile.TemporaryDirectory(prefix="mcpf-bench-client-") as d:
        db = Path(d) / "jobs.sqlite3"
        store = SqliteJobStore(db)
        worker = subprocess.Popen([sys.executable, __file__, "--worker", str(db)], cwd=REPO)
        try:
            return {"requirement": await round_trips(store, "requirement", REQUIREMENT, rounds),
                    "draft": await round_trips(store, "draft", draft_answer(), rounds)}
        finally:
            worker.wait(60)
            store.close()


# ---- (b) over MCP --------------------------------------------------------------------------------------------------

async def bench_mcp(builds: int) -> dict[str, list[float]]:
    from mcp.client.client import Client
    from mcp.client.stdio import StdioServerParameters

    out: dict[str, list[float]] = {"seen": [], "answer_build": []}
    with tempfile.TemporaryDirectory(prefix="mcpf-bench-client-mcp-") as d:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_FOUNDRY_") and k != "OPENAI_API_KEY"}
        env.update({"MCP_FOUNDRY_DATA_DIR": d, "MCP_FOUNDRY_ENV_CACHE": str(ENV_CACHE), "PYTHONPATH": str(REPO),
                    "HF_HUB_OFFLINE": "1", "MCP_FOUNDRY_WORKER_IDLE": "5"})
        params = StdioServerParameters(command=sys.executable, args=["-m", "server.cli", "serve", "--no-mount"],
                                       env=env, cwd=str(REPO))
        try:
            async with Client(params, read_timeout_seconds=120) as client:
                for i in range(builds):
                    ticket = await client.call_tool("request_build", {"description": f"count the words of text {i}"})
                    job_id = ticket.structured_content["job_id"]
                    while True:
                        res = (await client.call_tool("build_result", {"job_id": job_id, "wait_s": 45}))
                        question = res.structured_content["question"]
                        if question:
                            break
                    seen = time.time()
                    status = await client.call_tool("build_status", {"job_id": job_id})
                    asked = SqliteJobStore(Path(d) / "jobs.sqlite3").question(question["id"]).asked_at
                    out["seen"].append(seen - asked)
                    t = time.perf_counter()
                    res = await client.call_tool("answer_build", {"job_id": job_id, "question_id": question["id"],
                                                                  "answer": REQUIREMENT})
                    out["answer_build"].append(time.perf_counter() - t)
                    assert not res.is_error and not status.is_error, res.content
                    await client.call_tool("cancel_build", {"job_id": job_id})
        finally:
            store = SqliteJobStore(Path(d) / "jobs.sqlite3")
            for w in store.workers():
                os.kill(w.pid, signal.SIGTERM)
            store.close()
    return out


def figures(name: str, xs: list[float]) -> str:
    return (f"{name}: median {statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, "
            f"max {max(xs) * 1000:.0f}, n={len(xs)})")


async def main(rounds: int, builds: int) -> None:
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"(a) the mechanism across processes (worker process <-> front end, SQLite store), {rounds} rounds")
    for model, runs in (await bench_mechanism(rounds)).items():
        size = len(json.dumps(REQUIREMENT if model == "requirement" else draft_answer()))
        print(f"  {model} answer ({size} bytes of JSON)")
        print("    " + figures("question stored -> seen by the front end", runs["seen"]))
        print("    " + figures("answer given -> taken up by the worker", runs["taken"]))
        print("    " + figures("answer given -> next question seen (round trip)", runs["round trip"]))
    if builds:
        print(f"(b) over MCP: stdio serve, its worker, {builds} real builds stopped at their requirement question")
        runs = await bench_mcp(builds)
        print("    " + figures("question stored -> seen by the client (build_result)", runs["seen"]))
        print("    " + figures("answer_build call (checked, stored, taken up by the worker)", runs["answer_build"]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--builds", type=int, default=5)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker)
    else:
        anyio.run(main, args.rounds, args.builds)
