"""The repository: success cases, templates, dependency graph, benchmarks, failure analysis; embeddings and search."""
