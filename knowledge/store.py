"""KnowledgeStore: the repository of success cases and what builds learned, on LanceDB.

The repository is a LanceDB database at a URI: a local directory by default, any URI LanceDB
accepts (object storage included) works unchanged. lancedb is imported lazily because it
costs seconds. Every write goes through `_retry`, because LanceDB resolves concurrent writers
by optimistic commits that can fail with a retryable conflict, and runs under the repository's
write lock (knowledge.lock), because a merge-insert cannot see a row another writer is inserting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from knowledge import schema as sc
from knowledge.embed import Embedder, make_embedder
from knowledge.errors import CaseNotFoundError, KnowledgeError, QueryError, RepositoryError
from knowledge.learning import LearningTables
from knowledge.lock import WriteLock
from knowledge.models import Components, Match, SearchFilters, SearchQuery, SuccessCase
from knowledge.reembed import Progress, reembed_cases
from knowledge.reuse_log import ReuseLog
from knowledge.rows import case_to_row, embedding_text, row_to_case
from knowledge.search import (
    as_query,
    case_features,
    combine,
    dependency_score,
    feature_score,
    filters_sql,
    fts_saturate,
    fts_text,
    reason,
    sql_str,
)
from knowledge.text import requirement_hash

T = TypeVar("T")

_RETRYABLE = ("conflict", "retryable", "too many concurrent", "commit")


def _retry(fn: Callable[[], T], what: str, attempts: int = 12) -> T:
    """Run a write, retrying LanceDB commit conflicts with jittered backoff."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:  # LanceDB surfaces conflicts as several exception types
            text = str(exc).lower()
            if attempt == attempts - 1 or not any(k in text for k in _RETRYABLE):
                raise RepositoryError(f"{what} failed: {exc}") from exc
            time.sleep(delay * (1 + (attempt % 3) / 3))
            delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")


class KnowledgeStore(LearningTables, ReuseLog):
    """The knowledge repository: store, find and reuse success cases; record templates, edges, benchmarks, failures."""

    def __init__(self, db: Any, uri: str, embedder: Embedder,
                 shared_lock: Callable[[], AbstractContextManager[object]] | None = None) -> None:
        """Use KnowledgeStore.open(); this only binds an already prepared connection."""
        self._db = db
        self.uri = uri
        self.embedder = embedder
        self._tables: dict[str, Any] = {}
        self._lock = WriteLock(uri, shared_lock)
        self._cases = sc.CASES
        """Name of the cases table in force (meta 'cases_table'; changes when the model changes)."""

    # ---- opening -----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        uri: str,
        *,
        embedder: Embedder | None = None,
        storage_options: dict[str, str] | None = None,
        progress: Progress | None = None,
        shared_lock: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> KnowledgeStore:
        """Open (creating or migrating if needed) the repository at `uri` with `embedder` (default: USE).

        A repository embedded with another model is re-embedded with this one first (see
        knowledge.reembed); `progress(done, total, message)` hears about it. `shared_lock`
        makes the lock that writers on several machines hold around each write to an
        object-store repository (see knowledge.lock); a local path locks its own file.
        """
        if not isinstance(uri, str) or not uri.strip():
            raise RepositoryError(f"knowledge uri must be a non-empty path or URI string, got {uri!r}")
        import lancedb

        embedder = embedder or make_embedder()
        try:
            # read_consistency_interval=0: see other processes' commits on every read.
            db = lancedb.connect(uri, read_consistency_interval=timedelta(0), storage_options=storage_options)
        except Exception as exc:
            raise RepositoryError(f"cannot open knowledge repository at {uri!r}: {exc}") from exc
        store = cls(db, uri, embedder, shared_lock)
        with store._lock.hold():  # two processes opening an old repository must not both migrate it
            store._prepare(progress)
        return store

    def _table(self, name: str) -> Any:
        if name not in self._tables:
            self._tables[name] = self._db.open_table(name)
        return self._tables[name]

    def _prepare(self, progress: Progress | None = None) -> None:
        existing = set(self._db.list_tables().tables)
        if sc.META in existing:
            meta = self._table(sc.META)
        else:
            meta = _retry(
                lambda: self._db.create_table(sc.META, schema=sc.META_SCHEMA, exist_ok=True), "create meta"
            )
        values = {r["key"]: r["value"] for r in meta.search().limit(None).to_list()}
        if "schema_version" in values:
            found = int(values["schema_version"])
        else:
            # No version recorded: a repository with data tables predates the meta table (version 0).
            found = 0 if sc.CASES in existing else sc.SCHEMA_VERSION
        if found != sc.SCHEMA_VERSION:
            sc.migrate(self._db, found, self.uri)
        self._cases = values.get("cases_table", sc.CASES)
        if self._model_changed(values) and self._cases in existing:
            self._reembed(values, progress)
            values = {r["key"]: r["value"] for r in meta.search().limit(None).to_list()}
        existing = set(self._db.list_tables().tables)
        schemas = sc.table_schemas(self.embedder.dim)
        schemas[self._cases] = schemas.pop(sc.CASES)
        for name, table_schema in schemas.items():
            if name not in existing:
                _retry(
                    lambda n=name, s=table_schema: self._db.create_table(n, schema=s, exist_ok=True),
                    f"create {name}",
                )
                continue
            # Migrations append columns, so compare names, not order.
            missing = set(table_schema.names) - set(self._table(name).schema.names)
            if missing:
                raise RepositoryError(
                    f"table {name!r} in {self.uri} lacks columns {sorted(missing)} although its schema version is "
                    f"{sc.SCHEMA_VERSION}; the repository was changed by hand. Move it aside and re-seed it."
                )
        self._set_meta(
            {
                "schema_version": str(sc.SCHEMA_VERSION),
                # Unchanged, just re-embedded, or nothing stored yet: the vectors are this model's either way.
                "embedding_model": self.embedder.name,
                "embedding_dim": str(self.embedder.dim),
                "cases_table": self._cases,
            }
        )
        self._ensure_fts_index()

    def _model_changed(self, meta: dict[str, str]) -> bool:
        stored_model, stored_dim = meta.get("embedding_model"), meta.get("embedding_dim")
        if stored_model is None:
            return False
        return stored_model != self.embedder.name or int(stored_dim or 0) != self.embedder.dim

    def _reembed(self, meta: dict[str, str], progress: Progress | None) -> None:
        """Re-embed every case with this store's model, then switch meta to the new table and drop the old."""
        old = self._cases
        try:
            new = reembed_cases(self._db, old, self.embedder, stored_model=meta.get("embedding_model", "?"),
                                progress=progress)
        except KnowledgeError:
            raise
        except Exception as exc:
            raise RepositoryError(
                f"re-embedding the cases of {self.uri} with {self.embedder.name!r} (stored: "
                f"{meta.get('embedding_model')!r}) failed: {exc}. Nothing was changed; opening again retries. "
                f"To keep the old vectors, set the embedding model back to {meta.get('embedding_model')!r}."
            ) from exc
        self._set_meta({"cases_table": new, "embedding_model": self.embedder.name,
                        "embedding_dim": str(self.embedder.dim)})
        self._cases = new
        self._tables.pop(old, None)
        if new != old:
            _retry(lambda: self._db.drop_table(old), f"drop {old}")

    def _set_meta(self, values: dict[str, str]) -> None:
        rows = [{"key": k, "value": v} for k, v in values.items()]
        table = self._table(sc.META)
        self._write(
            lambda: (
                table.merge_insert("key")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(rows)
            ),
            "write meta",
        )

    def meta(self) -> dict[str, str]:
        """The meta table as a dict (schema_version, embedding_model, embedding_dim, cases_table)."""
        return {r["key"]: r["value"] for r in self._table(sc.META).search().limit(None).to_list()}

    def _ensure_fts_index(self) -> None:
        from lancedb.index import FTS

        table = self._table(self._cases)
        if any(ix.columns == ["search_text"] for ix in table.list_indices()):
            return
        try:
            _retry(
                lambda: table.create_index("search_text", config=FTS(stem=True, remove_stop_words=True)),
                "fts index",
            )
        except RepositoryError:
            # Another process may have created it meanwhile; only fail if it is still missing.
            if not any(ix.columns == ["search_text"] for ix in table.list_indices()):
                raise

    # ---- cases -------------------------------------------------------------------------------

    def add_case(self, case: SuccessCase) -> str:
        """Store a case (embedding computed here); the same server name + requirement updates the stored one."""
        return self.add_cases([case])[0]

    def add_cases(self, cases: Iterable[SuccessCase]) -> list[str]:
        """Store several cases in one batch (one embedding batch, one commit); returns their ids in order."""
        cases = [c.model_copy(deep=True) for c in cases]
        if not cases:
            return []
        by_key: dict[tuple[str, str], SuccessCase] = {}
        for case in cases:
            by_key[(case.server_name, case.requirement_hash)] = case  # last one wins within a batch
        unique = list(by_key.values())
        vectors = self.embedder.embed([embedding_text(c) for c in unique])  # outside the lock: it can be slow
        table = self._table(self._cases)
        # The lock spans reading the priors and the merge, so a case stored meanwhile is seen, not inserted twice.
        with self._lock.hold():
            now = datetime.now(UTC)
            priors = self._priors(list(by_key))
            for key, case in by_key.items():
                prior = priors.get(key)
                if prior is not None:
                    case.id, case.created_at = prior.id, prior.created_at
                    case.times_reused = max(case.times_reused, prior.times_reused)
                case.updated_at = now
            rows = [case_to_row(c, v) for c, v in zip(unique, vectors, strict=True)]
            data = pa.Table.from_pylist(rows, schema=table.schema)
            _retry(
                lambda: (
                    table.merge_insert(["server_name", "requirement_hash"])
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(data)
                ),
                "add cases",
            )
        return [by_key[(c.server_name, c.requirement_hash)].id for c in cases]

    def _rows(self, where: str | None, limit: int | None = None) -> list[dict[str, Any]]:
        query = self._table(self._cases).search()
        if where:
            query = query.where(where)
        return query.limit(limit).to_list()

    def _priors(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], SuccessCase]:
        """Stored cases for many (server_name, requirement_hash) keys, in one query per 200 keys."""
        found: dict[tuple[str, str], SuccessCase] = {}
        wanted = set(keys)
        for start in range(0, len(keys), 200):
            hashes = ", ".join(sql_str(h) for h in {h for _, h in keys[start : start + 200]})
            for row in sorted(self._rows(f"requirement_hash IN ({hashes})"), key=lambda r: r["updated_at"]):
                if (row["server_name"], row["requirement_hash"]) in wanted:
                    found[(row["server_name"], row["requirement_hash"])] = row_to_case(row)
        return found

    def find_exact(self, requirement_text: str) -> SuccessCase | None:
        """The most recently updated case whose normalized request equals this one, or None."""
        rows = self._rows(f"requirement_hash = {sql_str(requirement_hash(requirement_text))}")
        return row_to_case(max(rows, key=lambda r: r["updated_at"])) if rows else None

    def get_case(self, case_id: str) -> SuccessCase:
        """The case with this id; CaseNotFoundError naming the id when there is none."""
        rows = self._rows(f"id = {sql_str(case_id)}", limit=1)
        if not rows:
            raise CaseNotFoundError(
                f"no case with id {case_id!r} in knowledge repository {self.uri}; search_repository (or `mcp-foundry search`) shows stored case ids"
            )
        return row_to_case(rows[0])

    def mark_reused(self, case_id: str) -> int:
        """Count one more reuse of a case; returns the new count."""
        self.get_case(case_id)
        table = self._table(self._cases)
        with self._lock.hold():
            _retry(
                lambda: table.update(
                    where=f"id = {sql_str(case_id)}", values_sql={"times_reused": "times_reused + 1"}
                ),
                "mark reused",
            )
            return self.get_case(case_id).times_reused

    def list_cases(self, filters: SearchFilters | None = None) -> list[SuccessCase]:
        """Every stored case meeting the filters, oldest first."""
        cases = [row_to_case(r) for r in self._rows(filters_sql(filters))]
        return sorted(cases, key=lambda c: (c.created_at, c.id))

    def case_count(self) -> int:
        """Number of stored cases."""
        return self._table(self._cases).count_rows()

    def delete_case(self, case_id: str) -> None:
        """Remove a case; CaseNotFoundError when it does not exist."""
        self.get_case(case_id)
        table = self._table(self._cases)
        with self._lock.hold():
            _retry(lambda: table.delete(f"id = {sql_str(case_id)}"), "delete case")

    # ---- search ------------------------------------------------------------------------------

    def find_similar(
        self,
        query: str | SearchQuery,
        limit: int = 5,
        filters: SearchFilters | None = None,
        *,
        mode: str = "hybrid",
    ) -> list[Match]:
        """Hybrid search (see knowledge.search for the formula); best first, at most `limit` matches.

        mode "vector" or "fts" ranks by that component alone (for evaluation); the components
        are reported either way.
        """
        q = as_query(query)
        if mode not in ("hybrid", "vector", "fts"):
            raise QueryError(f"mode must be 'hybrid', 'vector' or 'fts', got {mode!r}")
        if limit < 1:
            raise QueryError(f"limit must be >= 1, got {limit}")
        where = filters_sql(filters)
        k = max(20, 4 * limit)
        table = self._table(self._cases)
        qvec: np.ndarray | None = None
        candidates: dict[str, dict[str, Any]] = {}
        bm25: dict[str, float] = {}
        if q.text.strip():
            qvec = np.asarray(self.embedder.embed([q.text])[0], dtype=np.float32)
            vq = table.search(qvec, vector_column_name="vector").distance_type("cosine").limit(k)
            for row in (vq.where(where, prefilter=True) if where else vq).to_list():
                candidates[row["id"]] = row
            words = fts_text(q.text)
            if words:
                from lancedb.query import MatchQuery

                fq = table.search(MatchQuery(words, "search_text"), query_type="fts").limit(k)
                for row in (fq.where(where, prefilter=True) if where else fq).to_list():
                    bm25[row["id"]] = row["_score"]
                    candidates.setdefault(row["id"], row)
        else:
            candidates = {r["id"]: r for r in self._rows(where)}
        matches = []
        for cid, row in candidates.items():
            case = row_to_case(row)
            vector = max(0.0, float(np.dot(qvec, np.asarray(row["vector"], dtype=np.float32)))) if qvec is not None \
                else 0.0
            feats, feat_hits, explicit = feature_score(q, case_features(case))
            deps, dep_hits = dependency_score(q, case)
            comp = Components(
                vector=vector, fts=fts_saturate(bm25.get(cid, 0.0)), features=feats, dependencies=deps
            )
            if mode == "hybrid":
                score = combine(q, comp, explicit)
            else:
                score = vector if mode == "vector" else comp.fts
            if score <= 0:
                continue
            matches.append(
                Match(
                    case=case,
                    score=round(score, 4),
                    components=comp,
                    reason=reason(comp, feat_hits, dep_hits),
                )
            )
        matches.sort(key=lambda m: (-m.score, -m.components.vector, m.case.id))
        return matches[:limit]

    # ---- maintenance -------------------------------------------------------------------------

    def optimize(self, cleanup_older_than: timedelta | None = None) -> None:
        """Compact every table and bring indexes up to date; retried on commit conflicts."""
        for name in [self._cases, sc.TEMPLATES, sc.EDGES, sc.BENCHMARKS, sc.FAILURES, sc.REUSE_EVENTS,
                     sc.REUSE_REPORTS, sc.META]:
            table = self._table(name)
            self._write(lambda t=table: t.optimize(cleanup_older_than=cleanup_older_than), f"optimize {name}")

    def create_vector_index(self, *, min_rows: int = 5000) -> bool:
        """Build an IVF index on the vectors once there are enough rows to pay off; True if one was built."""
        from lancedb.index import IvfFlat

        table = self._table(self._cases)
        rows = table.count_rows()
        if rows < min_rows:
            return False
        partitions = max(1, int(rows**0.5) // 2)
        self._write(
            lambda: table.create_index(
                "vector", config=IvfFlat(distance_type="cosine", num_partitions=partitions)
            ),
            "vector index",
        )
        return True

    def _learning_table(self, name: str) -> Any:
        return self._table(name)

    def _write(self, fn: Callable[[], T], what: str) -> T:
        with self._lock.hold():
            return _retry(fn, what)


__all__ = ["KnowledgeStore", "KnowledgeError"]
