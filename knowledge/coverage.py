"""Coverage by meaning: how closely a request matches what a stored case does, view by view.

A case is embedded for search as one text (request, summary and tools together), which is
right for ranking but blurs what the case does into its topic: "merge PDF files" lands near
a PDF text extractor. For a decision the request is compared with each *view* of the case on
its own: its request, its summary, each clause of its request, and each tool's description.

- similarity: the best view's cosine similarity (the view that explains the request best).
- margin: that similarity minus the best similarity of any other candidate that is not a
  duplicate of it (another case offering the same tool names is the same server again and
  does not compete). A request that sits between two stored servers is covered by neither.
- conflict: a conversion asked in the opposite direction of the one the case performs
  ("HTML to Markdown" against a case that turns Markdown into HTML), which an embedding,
  blind to word order, cannot see.
The thresholds that turn these into a decision live with the decision (builder.reuse), per
embedding model, calibrated by bench/bench_reuse.py.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

from pydantic import BaseModel

from knowledge.embed import Embedder
from knowledge.models import SuccessCase
from knowledge.text import STOP_WORDS, has_cjk

_CLAUSE = re.compile(r",\s*(?:and\s+)?|;\s*|\.\s+|[，；。]")
_EN_PAIR = re.compile(r"\b(?:([a-z0-9+#.]+)\s+)?([a-z0-9+#.]+)\s+(?:to|into|->)\s+(?:an?\s+|the\s+)?([a-z0-9+#.]+)")
_SYMMETRIC = re.compile(r"\bbetween\b|\band back\b|\bback and forth\b|\bvice versa\b|互相|相互|互转")
_ZH_PAIR = re.compile(r"([A-Za-z0-9+#.]+)\s*(?:文档|文件|格式)?\s*(?:转换成|转换为|转成|转为|转到|转)\s*([A-Za-z0-9+#.]+)")
_NOT_OBJECT = STOP_WORDS | {"one", "two", "text", "string", "value", "values", "number", "numbers", "back"}

_cache: OrderedDict[tuple[str, str, str], list[list[float]]] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_CASES = 4096


class Coverage(BaseModel):
    """How one candidate case covers a request."""

    case_id: str
    server_name: str
    similarity: float
    """Cosine similarity of the request with the case's best view."""
    view: str
    """The view that matched best (what the case does that the request is closest to)."""
    margin: float
    """similarity minus the best similarity of the other candidates (duplicates of this one aside)."""
    conflict: str = ""
    """Why the case does the opposite of what was asked, when it does; '' otherwise."""


def case_views(case: SuccessCase) -> list[str]:
    """The texts a case is compared by: request, summary, request clauses, tool descriptions."""
    views = [case.request_text, case.summary]
    views += [p.strip() for p in _CLAUSE.split(case.request_text) if len(p.split()) >= 3 or has_cjk(p)]
    views += [f"{t.name.replace('_', ' ')}: {t.description}" for t in case.tools]
    unique = list(dict.fromkeys(v for v in views if v and v.strip()))
    return unique[:24]


def _view_vectors(embedder: Embedder, case: SuccessCase) -> list[list[float]]:
    key = (embedder.name, case.id, case.updated_at.isoformat())
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    vectors = embedder.embed(case_views(case))
    with _cache_lock:
        _cache[key] = vectors
        while len(_cache) > _CACHE_CASES:
            _cache.popitem(last=False)
    return vectors


def conversions(text: str) -> set[tuple[str, str]]:
    """(from, to) pairs of the conversions a text names: 'markdown to html', 'HTML转Markdown'."""
    # "an html page into markdown": the object may be either of the two words before "into".
    pairs = {(a, c) for w, a2, c in _EN_PAIR.findall(text.lower()) for a in (w, a2) if a}
    pairs |= {(a.lower(), b.lower()) for a, b in _ZH_PAIR.findall(text)}
    return {(a.strip("."), b.strip(".")) for a, b in pairs
            if a not in _NOT_OBJECT and b not in _NOT_OBJECT and not a.isdigit() and not b.isdigit() and a != b}


def direction_conflict(request: str, case: SuccessCase) -> str:
    """Why the case converts the other way round from what the request asks, or ''.

    A case that says it converts *between* things (units, time zones) or "and back" converts both
    ways, whatever direction its examples name.
    """
    asked = conversions(request)
    if not asked:
        return ""
    texts = [case.request_text, case.summary, *(t.name.replace("_", " ") for t in case.tools),
             *(t.description for t in case.tools)]
    if any(_SYMMETRIC.search(t.lower()) for t in texts):
        return ""
    offered: set[tuple[str, str]] = set()
    for text in texts:
        offered |= conversions(text)
    for a, b in sorted(asked):
        if (b, a) in offered and (a, b) not in offered:
            return f"the request converts {a} to {b}; the case only converts {b} to {a}"
    return ""


def coverage(embedder: Embedder, request: str, cases: list[SuccessCase]) -> list[Coverage]:
    """How each candidate covers the request, in the order given."""
    if not cases:
        return []
    query = embedder.embed([request])[0]
    best: list[tuple[float, str]] = []
    for case in cases:
        sims = [sum(a * b for a, b in zip(query, v, strict=True)) for v in _view_vectors(embedder, case)]
        i = max(range(len(sims)), key=sims.__getitem__) if sims else 0
        best.append((sims[i] if sims else 0.0, case_views(case)[i] if sims else ""))
    out = []
    for k, case in enumerate(cases):
        tools = {t.name for t in case.tools}
        rivals = [best[j][0] for j, other in enumerate(cases)
                  if j != k and not (tools and {t.name for t in other.tools} == tools)]
        sim, view = best[k]
        out.append(Coverage(case_id=case.id, server_name=case.server_name, similarity=round(sim, 4), view=view,
                            margin=round(sim - max(rivals, default=0.0), 4),
                            conflict=direction_conflict(request, case)))
    return out
