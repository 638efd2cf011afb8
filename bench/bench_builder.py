"""Print the builder's own overhead per build (all non-LLM time) by phase, and the reuse path's latency.

Run: .venv/bin/python bench/bench_builder.py [--rounds N]

The LLM is a replay cassette recorded in this script from the acceptance test's scripted
exchanges (analysis, a buggy draft, its fix), so every round runs the same two-turn build
with ~0 s of LLM time; PyPI and repository search are a local fake; the dependency
environment is warmed first. Each round uses a fresh data directory (so the first build
is really built) and then repeats the request (served from the repository). The recording
build pays the process's one-off imports (LanceDB, the embedding model) and is shown apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "builder")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
for var in ("OPENAI_API_KEY", "MCP_FOUNDRY_LLM_API_KEY", "MCP_FOUNDRY_LLM_BASE_URL", "MCP_FOUNDRY_LLM_PROVIDER",
            "MCP_FOUNDRY_LLM_CASSETTE"):
    os.environ.pop(var, None)  # the replay provider below is the only LLM

import test_pipeline as scripted  # noqa: E402  (the acceptance test's scripted exchanges)
from fake_web import FakeWeb  # noqa: E402

from builder.config import Settings  # noqa: E402
from builder.llm.base import ChatMessage, Completion  # noqa: E402
from builder.llm.replay import RecordingProvider, ReplayProvider  # noqa: E402
from builder.params import build_params  # noqa: E402
from builder.report import BuildReport  # noqa: E402
from builder.service import Foundry  # noqa: E402

ENV_CACHE = Path(tempfile.gettempdir()) / f"mcp-foundry-bench-envs-{os.getuid()}"


class Scripted:
    """An LLM provider answering from a list, in order (used once, to record the cassette)."""

    name = "scripted"

    def __init__(self, replies: list[str]):
        self.replies = list(replies)

    async def complete(self, messages: list[ChatMessage], *, json_schema: dict[str, Any] | None = None,
                       schema_name: str = "response", temperature: float = 0.2,
                       max_tokens: int | None = None) -> Completion:
        """Pop the next scripted reply."""
        text = self.replies.pop(0)
        return Completion(text=text, model="scripted", prompt_tokens=sum(len(m.content.split()) for m in messages),
                          completion_tokens=len(text.split()))


async def build(data: Path, web: FakeWeb, provider: Any) -> tuple[BuildReport, float]:
    foundry = Foundry(Settings(data_dir=data, env_cache_dir=ENV_CACHE, pypi_url=web.url, github_api_url=web.url))
    foundry.llm_override = provider
    t = time.perf_counter()
    async with foundry.runner():
        job = await foundry.queue.wait(foundry.queue.submit("build", build_params(scripted.REQUEST)).id, 600)
    seconds = time.perf_counter() - t
    foundry.store.close()
    report = BuildReport.model_validate(job.result)
    if not report.ok:
        raise SystemExit(f"bench build failed:\n{report.render()}")
    return report, seconds


def phases(report: BuildReport) -> dict[str, float]:
    """Seconds per phase, the loop split into its steps summed over turns."""
    out = {k: v for k, v in report.timings.items() if k != "loop"}
    for turn in report.turns:
        for step, s in turn.seconds.items():
            out[f"loop.{step}"] = out.get(f"loop.{step}", 0.0) + s
    if "loop" in report.timings:
        out["loop.other"] = report.timings["loop"] - sum(v for k, v in out.items() if k.startswith("loop."))
    return out


async def main(rounds: int) -> None:
    web = FakeWeb().start()
    web.add_package("mcp", {f"1.{i}.0": f"2025-0{1 + i}-01T00:00:00Z" for i in range(8)}
                    | {"2.3.0": "2026-06-01T00:00:00Z"}, summary="Model Context Protocol SDK")
    with tempfile.TemporaryDirectory(prefix="bench-builder-") as tmp:
        root = Path(tmp)
        cassette = root / "cassette.jsonl"
        recorder = RecordingProvider(Scripted([scripted.json.dumps(scripted.REQUIREMENT), scripted.BUGGY,
                                               scripted.FIXED]), cassette)
        _, cold = await build(root / "record", web, recorder)  # records the cassette, warms env and imports
        print(f"cassette: {len(cassette.read_text().splitlines())} recorded exchanges; environment warm")
        built, reused, by_phase = [], [], []
        for i in range(rounds):
            replay = ReplayProvider(cassette)
            report, seconds = await build(root / f"round-{i}", web, replay)
            assert replay.calls == 3 and len(report.turns) == 2, report.render()
            again, again_s = await build(root / f"round-{i}", web, ReplayProvider(cassette))
            assert again.outcome == "reused"
            built.append(seconds)
            reused.append(again_s)
            by_phase.append(phases(report))
    web.stop()
    steady = built
    print(f"\nbuilder overhead per two-turn build (LLM replayed, ~0 s), {rounds} rounds:")
    print(f"  recording build (process cold: LanceDB + embedding model imports, env check): {cold:.2f} s")
    print(f"  median of the replayed rounds (process warm, env warm):                      "
          f"{statistics.median(steady):.2f} s")
    print("  by phase (median, seconds):")
    names = sorted({k for p in by_phase for k in p})
    for name in names:
        values = [p.get(name, 0.0) for p in by_phase]
        print(f"    {name:<16} {statistics.median(values):7.3f}")
    print(f"\nreuse path (exact repeat: re-validate + deploy, no LLM): median {statistics.median(reused):.2f} s, "
          f"min {min(reused):.2f} s")
    print(f"ratio first build / reuse (medians): {statistics.median(steady) / statistics.median(reused):.1f}x"
          " (with a real model each generation call adds seconds to minutes to the first build only)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    anyio.run(main, parser.parse_args().rounds)
