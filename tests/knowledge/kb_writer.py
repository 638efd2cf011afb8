"""A separate process that adds cases to a repository (used by the durability tests)."""

from __future__ import annotations

import sys

from knowledge.embed import HashingEmbedder
from knowledge.models import SuccessCase
from knowledge.store import KnowledgeStore


def main() -> None:
    """argv: uri, tag, count. Adds `count` distinct cases one commit each, printing each id as it lands."""
    uri, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = KnowledgeStore.open(uri, embedder=HashingEmbedder())
    for i in range(count):
        store.add_case(
            SuccessCase(request_text=f"{tag} request number {i} about widgets", server_name=f"{tag}-{i}")
        )
        print(f"{tag}-{i}", flush=True)


if __name__ == "__main__":
    main()
