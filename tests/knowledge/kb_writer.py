"""A separate process that adds cases to a repository (used by the durability tests)."""

from __future__ import annotations

import sys

from knowledge.embed import HashingEmbedder
from knowledge.models import SuccessCase
from knowledge.store import KnowledgeStore


def main() -> None:
    """argv: uri, tag, count[, "ids"]. Adds `count` distinct cases one commit each, printing each name as it lands.

    With "ids": prints "ready" once the store is open, starts writing when a line arrives on stdin (so several
    writers start together), and prints the id add_case returned for each case.
    """
    uri, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print_ids = sys.argv[4:] == ["ids"]
    store = KnowledgeStore.open(uri, embedder=HashingEmbedder())
    if print_ids:
        print("ready", flush=True)
        sys.stdin.readline()
    for i in range(count):
        case_id = store.add_case(
            SuccessCase(request_text=f"{tag} request number {i} about widgets", server_name=f"{tag}-{i}")
        )
        print(case_id if print_ids else f"{tag}-{i}", flush=True)


if __name__ == "__main__":
    main()
