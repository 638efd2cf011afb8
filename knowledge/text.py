"""Text normalization shared by storage and search: requirement hashes, tokens, package names, error signatures."""

from __future__ import annotations

import hashlib
import re

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_PKG_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

# Words that carry no meaning about a capability; dropping them keeps feature overlap honest.
STOP_WORDS = frozenset(
    "a an and are as at be by can do does for from get give how i in into is it its me my need of on or "
    "please some that the their them this to tool tools server mcp use using want we what which with you "
    "your would like let lets should could".split()
)


def normalize_requirement(text: str) -> str:
    """Lowercase, strip punctuation and collapse whitespace, so trivially different phrasings hash alike."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def requirement_hash(text: str) -> str:
    """SHA-256 (hex) of the normalized requirement text: equal for exact repeats."""
    return hashlib.sha256(normalize_requirement(text).encode("utf-8")).hexdigest()


def stem(word: str) -> str:
    """A light suffix stripper so 'converts', 'converting' and 'convert' meet; not a linguistic stemmer."""
    for suffix in ("ations", "ation", "ings", "ing", "ies", "es", "s", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            return base + "y" if suffix == "ies" else base
    return word


def tokens(text: str) -> set[str]:
    """Meaningful stemmed word tokens of a text, identifiers split on '_' and camelCase."""
    text = _CAMEL.sub(" ", text).lower()
    return {stem(w) for w in _WORD.findall(text) if w not in STOP_WORDS and len(w) > 1}


_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")


def has_cjk(text: str) -> bool:
    """True when the text holds Chinese, Japanese or Korean characters."""
    return _CJK_RUN.search(text) is not None


def cjk_terms(text: str) -> str:
    """The CJK runs of a text as space-separated character bigrams (a lone character stays as is).

    Full-text search splits words on spaces and punctuation, which leaves a Chinese sentence as one
    long token that no query matches; overlapping bigrams are the usual unsupervised segmentation for
    CJK search and need no dictionary. Text without CJK gives ''.
    """
    out: list[str] = []
    for run in _CJK_RUN.findall(text):
        out += [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
    return " ".join(out)


def normalize_package(spec: str) -> str:
    """The PEP 503 normalized name of a requirement specifier ('PyPDF==7.1' -> 'pypdf'); '' if none."""
    match = _PKG_NAME.match(spec)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


_SIG_RULES = [
    (re.compile(r"(/[\w.\-]+)+"), "<path>"),
    (re.compile(r"0x[0-9a-fA-F]+"), "<hex>"),
    (re.compile(r"line \d+"), "line <n>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"\b\d+(\.\d+)?\b"), "<n>"),
]


def error_signature(message: str) -> str:
    """Normalize an error message so the same failure in different builds groups together.

    Paths, hex addresses, quoted values and numbers become placeholders; only the last
    non-empty line is kept because that is where Python puts the exception itself.
    """
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    for pattern, repl in _SIG_RULES:
        text = pattern.sub(repl, text)
    return _SPACE.sub(" ", text)[:300]
