"""Figures for the LLM providers, research cache and dependency vetting, measured against local fakes.

Run: .venv/bin/python bench/bench_llm_research.py
Prints medians; nothing here asserts a time.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "builder"))  # the wire fakes live with the tests

from fake_openai import FakeOpenAI  # noqa: E402
from fake_web import FakeWeb  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from builder.llm import ChatMessage, Usage, complete_json  # noqa: E402
from builder.llm.openai_compat import OpenAIProvider  # noqa: E402
from builder.llm.replay import RecordingProvider, ReplayProvider  # noqa: E402
from builder.research import Researcher  # noqa: E402
from sandbox.vet import PackageMeta, vet_dependencies  # noqa: E402

N = 40


class Plan(BaseModel):
    name: str
    tools: list[str]


def ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.2f} ms"


async def bench_llm(tmp: Path) -> None:
    fake = FakeOpenAI().start()
    try:
        msgs = [ChatMessage(role="user", content="plan a pdf tool")]
        provider = OpenAIProvider(model="m", base_url=fake.base_url, api_key="k", backoff_base_s=0.0)
        fake.script(["ok"] * (N + 1))
        await provider.complete(msgs)  # warm the connection pool and lazy imports
        plain = []
        for _ in range(N):
            t = time.perf_counter()
            await provider.complete(msgs)
            plain.append(time.perf_counter() - t)

        good, reask = [], []
        for _ in range(N):
            fake.script(['{"name": "p", "tools": []}'])
            t = time.perf_counter()
            await complete_json(provider, msgs, Plan, usage=Usage())
            good.append(time.perf_counter() - t)
            fake.script(["not json", '{"name": "p", "tools": []}'])
            t = time.perf_counter()
            await complete_json(provider, msgs, Plan, usage=Usage())
            reask.append(time.perf_counter() - t)

        cassette = tmp / "bench.jsonl"
        recorder = RecordingProvider(provider, cassette)
        prompts = [[ChatMessage(role="user", content=f"prompt {i}")] for i in range(N)]
        fake.script(["recorded answer"] * N)
        recorded = []
        for p in prompts:
            t = time.perf_counter()
            await recorder.complete(p)
            recorded.append(time.perf_counter() - t)
    finally:
        fake.stop()
    replay = ReplayProvider(cassette)
    replayed = []
    for p in prompts:
        t = time.perf_counter()
        await replay.complete(p)
        replayed.append(time.perf_counter() - t)
    print("LLM provider (local scripted endpoint, median of", N, "calls)")
    print(f"  openai provider complete()          {ms(plain)}")
    print(f"  complete_json, valid first time      {ms(good)}")
    print(
        f"  complete_json, one re-ask            {ms(reask)}   ratio {statistics.median(reask) / statistics.median(good):.2f}x"
    )
    print(f"  recording wrapper complete()         {ms(recorded)}")
    print(
        f"  replay from cassette complete()      {ms(replayed)}   {statistics.median(plain) / statistics.median(replayed):.0f}x faster than live"
    )


async def bench_research(tmp: Path) -> None:
    web = FakeWeb().start()
    try:
        names = [f"pkg{i}" for i in range(N)]
        for n in names:
            web.add_package(
                n, {"1.0": "2024-01-01T00:00:00Z", "1.1": "2025-01-01T00:00:00Z"}, summary="s" * 40
            )
        r = Researcher(tmp / "cache", pypi_url=web.url, github_api_url=web.url)
        cold, warm = [], []
        for n in names:
            t = time.perf_counter()
            await r.pypi(n)
            cold.append(time.perf_counter() - t)
        before = len(web.requests)
        for n in names:
            t = time.perf_counter()
            await r.pypi(n)
            warm.append(time.perf_counter() - t)
        assert len(web.requests) == before, "warm lookups must not reach the server"
        t = time.perf_counter()
        await r.gather("extract pdf tables", names[:10])
        gather_s = time.perf_counter() - t
    finally:
        web.stop()
    print("Research (local fake PyPI, median of", N, "lookups)")
    print(f"  pypi() cold, over HTTP               {ms(cold)}")
    print(
        f"  pypi() warm, from disk cache         {ms(warm)}   {statistics.median(cold) / statistics.median(warm):.1f}x faster"
    )
    print(f"  gather() 10 cached packages + search {gather_s * 1000:8.2f} ms (one run)")


def bench_vet() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    reqs = [f"package-number-{i}==1.0" for i in range(100)]
    meta = {f"package-number-{i}": PackageMeta(name="x", versions=9, first_release=now - timedelta(days=900),
                                               summary="a reasonable summary") for i in range(100)}  # fmt: skip
    runs = []
    for _ in range(20):
        t = time.perf_counter()
        vet_dependencies(reqs, meta, now=now)
        runs.append(time.perf_counter() - t)
    print("Dependency vetting (100 requirements, unknown names: full typo-squat scan)")
    print(f"  vet_dependencies() per requirement   {statistics.median(runs) * 1000 / len(reqs):8.3f} ms")


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        anyio.run(bench_llm, Path(d))
        anyio.run(bench_research, Path(d))
    bench_vet()


if __name__ == "__main__":
    main()
