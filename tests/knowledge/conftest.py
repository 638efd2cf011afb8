"""Fixtures for the knowledge tests: one real embedding model per session, temp repositories, seeded starters."""

from __future__ import annotations

import os

# Set before anything imports huggingface libraries: the model loads from disk, never from the hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402

from knowledge.embed import SentenceTransformerEmbedder  # noqa: E402
from knowledge.seed import seed_starters  # noqa: E402
from knowledge.store import KnowledgeStore  # noqa: E402


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The default MiniLM embedder, loaded once for the whole session."""
    emb = SentenceTransformerEmbedder()
    emb.embed(["warm up"])
    return emb


@pytest.fixture
def store(tmp_path, embedder) -> KnowledgeStore:
    """An empty repository in a temp directory."""
    return KnowledgeStore.open(str(tmp_path / "kb"), embedder=embedder)


@pytest.fixture(scope="session")
def starter_store(tmp_path_factory, embedder) -> KnowledgeStore:
    """A repository holding the whole starter library (read-only use)."""
    kb = KnowledgeStore.open(str(tmp_path_factory.mktemp("starters") / "kb"), embedder=embedder)
    seed_starters(kb)
    return kb
