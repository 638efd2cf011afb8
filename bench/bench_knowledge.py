"""Knowledge repository figures: model load, embedding throughput, insert rate, search latency at 100/1k/10k cases.

Run: .venv/bin/python bench/bench_knowledge.py [--sizes 100,1000,10000] [--queries 50]
Prints medians and percentiles measured in this run; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from knowledge.embed import SentenceTransformerEmbedder  # noqa: E402
from knowledge.models import SuccessCase, ToolInfo  # noqa: E402
from knowledge.rows import embedding_text  # noqa: E402
from knowledge.store import KnowledgeStore  # noqa: E402

VERBS = ["convert", "extract", "summarize", "validate", "parse", "format", "search", "translate", "compare", "count"]
NOUNS = ["pdf files", "csv tables", "json documents", "dates", "urls", "images", "markdown", "emails", "logs", "units",
         "currencies", "time zones", "invoices", "spreadsheets", "xml feeds", "calendars", "addresses", "phone numbers"]
QUALS = ["quickly", "in bulk", "for a report", "from an api", "with statistics", "page by page", "safely", "offline"]


def synthetic(n: int, seed: int = 7) -> list[SuccessCase]:
    """n plausible, distinct success cases."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        verb, noun, qual = rnd.choice(VERBS), rnd.choice(NOUNS), rnd.choice(QUALS)
        text = f"{verb} {noun} {qual} (variant {i})"
        out.append(SuccessCase(request_text=text, server_name=f"s{i}", summary=f"Tools to {verb} {noun}.",
                               tools=[ToolInfo(name=f"{verb}_{noun.split()[0]}", description=text)],
                               dependencies=[rnd.choice(["pypdf==7.1.1", "markdown==3.11.3", "httpx==0.28.1"])]))
    return out


class Precomputed:
    """Serves vectors computed once, so large sizes measure storage and search rather than re-embedding."""

    def __init__(self, inner: SentenceTransformerEmbedder, table: dict[str, list[float]]) -> None:
        self.inner, self.table = inner, table
        self.name, self.dim = inner.name, inner.dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        missing = [t for t in texts if t not in self.table]
        for t, v in zip(missing, self.inner.embed(missing), strict=True):
            self.table[t] = v
        return [self.table[t] for t in texts]


def pct(values: list[float], p: float) -> float:
    """p-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    """Measure and print."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    t0 = time.perf_counter()
    emb = SentenceTransformerEmbedder()
    emb.embed(["load"])
    print(f"cold model load (import + load + first embed): {time.perf_counter() - t0:.2f} s")

    cases = synthetic(max(sizes))
    texts = [embedding_text(c) for c in cases[:512]]
    t0 = time.perf_counter()
    emb.embed(texts)
    print(f"embedding throughput, batch 32: {len(texts) / (time.perf_counter() - t0):.0f} texts/s ({len(texts)} texts)")

    t0 = time.perf_counter()
    table: dict[str, list[float]] = {}
    all_texts = [embedding_text(c) for c in cases]
    for t, v in zip(all_texts, emb.embed(all_texts), strict=True):
        table[t] = v
    print(f"embedded {len(cases)} synthetic cases in {time.perf_counter() - t0:.1f} s (reused below)")
    fast = Precomputed(emb, table)
    queries = [f"{random.Random(i).choice(VERBS)} {random.Random(i + 1).choice(NOUNS)}" for i in range(args.queries)]
    fast.embed(queries)

    with tempfile.TemporaryDirectory() as tmp:
        store = KnowledgeStore.open(str(Path(tmp) / "single"), embedder=fast)
        t0 = time.perf_counter()
        for c in cases[:50]:
            store.add_case(c)
        print(f"insert rate, one case per commit: {50 / (time.perf_counter() - t0):.1f} cases/s")

        for size in sizes:
            store = KnowledgeStore.open(str(Path(tmp) / f"kb{size}"), embedder=fast)
            t0 = time.perf_counter()
            for start in range(0, size, 500):
                store.add_cases(cases[start : min(size, start + 500)])
            insert_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            store.optimize()
            indexed = store.create_vector_index(min_rows=5000)
            prep_s = time.perf_counter() - t0
            store.find_similar(queries[0])  # warm caches
            lat = []
            for q in queries:
                t0 = time.perf_counter()
                store.find_similar(q)
                lat.append((time.perf_counter() - t0) * 1000)
            print(f"{size:>6} cases: batched insert {size / insert_s:,.0f} cases/s; optimize+index {prep_s:.1f} s "
                  f"(ivf={'yes' if indexed else 'no'}); hybrid search p50 {statistics.median(lat):.1f} ms, "
                  f"p95 {pct(lat, 95):.1f} ms over {len(lat)} queries (query embedding precomputed)")
        t0 = time.perf_counter()
        emb.embed(["a fresh query nobody asked before"])
        print(f"one query embedding (added to every new search): {(time.perf_counter() - t0) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
