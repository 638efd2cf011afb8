"""A separate process that stores cases the way a worker opens the repository: from its settings (environment).

argv: tag, count. Opens the knowledge repository with builder.service.open_knowledge (the URI, and the lock a
shared job store lends an object-store repository), prints "ready", waits for a line on stdin (so that several
writers start together), then stores `count` cases named TAG-i, one commit each, printing each id as it lands.
The embedder is the hashing one, so that no model is loaded.
"""

from __future__ import annotations

import sys

from builder.config import load_settings
from builder.service import open_knowledge
from knowledge.embed import HashingEmbedder
from knowledge.models import SuccessCase


def main() -> None:
    tag, count = sys.argv[1], int(sys.argv[2])
    store = open_knowledge(load_settings(), HashingEmbedder())
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(count):
        print(store.add_case(SuccessCase(request_text=f"{tag} request number {i} about widgets",
                                         server_name=f"{tag}-{i}")), flush=True)


if __name__ == "__main__":
    main()
