"""Hybrid search scoring: how vector, full-text, feature and dependency evidence combine into one score.

The formula
-----------
For a query q and a stored case c, four components, each in [0, 1]:

  vector        = max(0, cos(embed(q.text), embed(c)))
  fts           = b / (b + FTS_K), b = bm25(q.text, c.search_text), FTS_K = 2  (0 if not a top FTS hit)
                  an absolute saturation: one common word matching by chance stays small, unlike max-normalizing
  features      = |Q ∩ F| / |Q|           when q names tool_names / tool_params (explicit features)
                = |T ∩ F| / sqrt(|T|·|F|) otherwise, T = tokens of q.text (features implied by the text)
                  where F = stemmed tokens of c's tool names and parameter names
  dependencies  = |D_q ∩ D_c| / |D_q|     normalized package names; only when q names dependencies

  score = Σ w_i · component_i / Σ w_i   over the ACTIVE components, with
          w_vector = 0.50, w_fts = 0.25, w_features = 0.15 (0.30 when explicit), w_dependencies = 0.20

A component is active when the query carries what it needs: vector and fts need text,
features need text or explicit features, dependencies need q.dependencies. Renormalizing
over active components keeps scores comparable (in [0, 1]) whatever the query gives.
Candidates are the union of the top-K vector hits and top-K FTS hits (K = max(50, 10·limit)),
both pre-filtered by the same filters, so every returned case satisfies them.
"""

from __future__ import annotations

import math
import re

from knowledge.errors import QueryError
from knowledge.models import Components, SearchFilters, SearchQuery, SuccessCase
from knowledge.text import cjk_terms, normalize_package, tokens

W_VECTOR = 0.50
W_FTS = 0.25
W_FEATURES_TEXT = 0.15
W_FEATURES_EXPLICIT = 0.30
W_DEPENDENCIES = 0.20
FTS_K = 2.0

_FTS_SAFE = re.compile(r"[^\w\s]", re.UNICODE)


def as_query(query: str | SearchQuery) -> SearchQuery:
    """Accept free text or a SearchQuery; reject anything else with a clear message."""
    if isinstance(query, SearchQuery):
        return query
    if isinstance(query, str):
        if not query.strip():
            raise QueryError(
                "query is empty: say what you need in plain words (or give tool names, parameters or packages)"
            )
        return SearchQuery(text=query)
    raise QueryError(f"query must be a str or SearchQuery, got {type(query).__name__}")


def fts_saturate(bm25: float) -> float:
    """Map a BM25 score (0..inf) into 0..1 with half-saturation at FTS_K."""
    return bm25 / (bm25 + FTS_K) if bm25 > 0 else 0.0


def fts_text(text: str) -> str:
    """Query text with punctuation removed, so the FTS query parser sees only words; CJK runs as bigrams."""
    plain = " ".join(_FTS_SAFE.sub(" ", text).split())
    bigrams = cjk_terms(text)
    return f"{plain} {bigrams}" if bigrams else plain


def sql_str(value: str) -> str:
    """A SQL string literal with quotes escaped."""
    return "'" + value.replace("'", "''") + "'"


def filters_sql(filters: SearchFilters | None) -> str | None:
    """The filters as one SQL predicate over the cases table, or None when there are none."""
    if filters is None:
        return None
    parts = []
    if filters.dependency:
        name = normalize_package(filters.dependency)
        if not name:
            raise QueryError(
                f"filters.dependency {filters.dependency!r} is not a package name (e.g. 'pypdf')"
            )
        parts.append(f"array_has(dependency_names, {sql_str(name)})")
    if filters.min_validation_pass is not None:
        parts.append(f"validation_pass_rate >= {float(filters.min_validation_pass)!r}")
    if filters.server_name:
        parts.append(f"server_name = {sql_str(filters.server_name)}")
    if filters.source:
        parts.append(f"source = {sql_str(filters.source)}")
    if filters.verdict:
        parts.append(f"verdict = {sql_str(filters.verdict)}")
    return " AND ".join(parts) or None


def case_features(case: SuccessCase) -> set[str]:
    """Stemmed tokens of the case's tool names and parameter names."""
    out: set[str] = set()
    for tool in case.tools:
        out |= tokens(tool.name)
        for param in tool.param_names():
            out |= tokens(param)
    return out


def feature_score(query: SearchQuery, case_feats: set[str]) -> tuple[float, set[str], bool]:
    """Feature component, the matched tokens, and whether the query named features explicitly."""
    explicit = tokens(" ".join(query.tool_names + query.tool_params))
    if explicit:
        hit = explicit & case_feats
        return len(hit) / len(explicit), hit, True
    implied = tokens(query.text)
    if not implied or not case_feats:
        return 0.0, set(), False
    hit = implied & case_feats
    return len(hit) / math.sqrt(len(implied) * len(case_feats)), hit, False


def dependency_score(query: SearchQuery, case: SuccessCase) -> tuple[float, set[str]]:
    """Share of the query's packages that the case uses, and which ones."""
    wanted = {normalize_package(d) for d in query.dependencies} - {""}
    if not wanted:
        return 0.0, set()
    hit = wanted & set(case.dependency_names())
    return len(hit) / len(wanted), hit


def combine(query: SearchQuery, components: Components, explicit_features: bool) -> float:
    """The documented weighted mean of the active components."""
    has_text = bool(query.text.strip())
    terms = []
    if has_text:
        terms += [(W_VECTOR, components.vector), (W_FTS, components.fts)]
    if has_text or explicit_features:
        terms.append((W_FEATURES_EXPLICIT if explicit_features else W_FEATURES_TEXT, components.features))
    if query.dependencies:
        terms.append((W_DEPENDENCIES, components.dependencies))
    total = sum(w for w, _ in terms)
    return sum(w * v for w, v in terms) / total if total else 0.0


def reason(components: Components, feature_hits: set[str], dep_hits: set[str]) -> str:
    """A short explanation: the component scores, strongest first, with matched features and packages."""
    named = {
        "meaning": components.vector,
        "keywords": components.fts,
        "tools": components.features,
        "packages": components.dependencies,
    }
    ranked = sorted(((v, k) for k, v in named.items() if v > 0), reverse=True)
    parts = [f"{k} {v:.2f}" for v, k in ranked]
    if feature_hits:
        parts.append("tool terms: " + ", ".join(sorted(feature_hits)[:5]))
    if dep_hits:
        parts.append("uses: " + ", ".join(sorted(dep_hits)))
    return "; ".join(parts) if parts else "no evidence beyond the filters"
