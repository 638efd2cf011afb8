"""Dependency vetting: pure rules over requirement strings and PyPI metadata (no network here).

The caller (the builder) looks packages up and passes what it found as PackageMeta; this module only judges.
Rules: missing, unverified, invalid-requirement, direct-url, unpinned, typosquat, slopsquat, new-package,
near-empty.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import BaseModel

NEW_PACKAGE_DAYS = 30
"""A project whose first release is younger than this is flagged as brand-new."""

# Roughly the most downloaded and the most asked-for projects; squatters imitate exactly these.
POPULAR: frozenset[str] = frozenset(
    """
    requests urllib3 numpy pandas boto3 botocore s3transfer setuptools six python-dateutil pyyaml certifi idna
    charset-normalizer typing-extensions packaging cryptography pip wheel attrs pydantic pydantic-core jinja2
    markupsafe click pytz protobuf rsa pyasn1 cffi pycparser jmespath platformdirs filelock importlib-metadata
    zipp colorama tomli pluggy pytest pyjwt psutil pillow scipy matplotlib sqlalchemy grpcio google-api-core
    googleapis-common-protos aiohttp multidict yarl frozenlist aiosignal anyio sniffio httpx httpcore h11
    fastapi starlette uvicorn flask werkzeug itsdangerous django beautifulsoup4 soupsieve lxml openpyxl pyarrow
    scikit-learn joblib tqdm regex tokenizers transformers torch openai anthropic tenacity docutils decorator
    wrapt greenlet pygments rich markdown-it-py virtualenv requests-oauthlib oauthlib websockets
    websocket-client pyparsing networkx sympy pymupdf pypdf pdfplumber python-docx redis psycopg2
    psycopg2-binary pymysql paramiko selenium playwright mcp langchain tiktoken jsonschema simplejson ujson
    orjson chardet arrow pendulum xmltodict markdown tabulate python-dotenv boto scrapy pytesseract
    opencv-python tensorflow keras seaborn plotly dash streamlit gradio sentence-transformers lancedb
    huggingface-hub datasets nltk spacy gensim twilio stripe slack-sdk discord-py tweepy pymongo
    elasticsearch kafka-python celery docker kubernetes ansible pyserial pypdf2 typer uvloop aiofiles
    python-multipart pydantic-settings fastmcp pdfminer-six
    """.split()
)

# Suffixes an LLM tacks onto a real name when it hallucinates a package ("requests-python", "stripe-sdk").
_SLOP_SUFFIXES = (
    "python", "py", "sdk", "tools", "tool", "toolkit", "api", "client", "lib", "utils", "util", "helper",
    "helpers", "wrapper", "core", "extra", "extras", "plus", "pro", "mcp", "server", "kit", "ai",
)  # fmt: skip
_PREFIXES = ("python-", "py-", "python3-", "py3-")
# Characters that read alike; both sides of a comparison are folded the same way.
_HOMOGLYPHS = str.maketrans({"0": "o", "1": "l", "i": "l", "|": "l", "3": "e", "5": "s", "$": "s", "@": "a"})

Severity = Literal["blocking", "warning"]


class PackageMeta(BaseModel):
    """What the registry says about one project, as far as vetting needs it."""

    name: str
    exists: bool = True
    versions: int = 0
    """Released versions with files."""
    first_release: datetime | None = None
    latest_release: datetime | None = None
    summary: str = ""


class VetFinding(BaseModel):
    """One problem with one dependency."""

    package: str
    severity: Severity
    rule: str
    message: str


def normalize(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def vet_dependencies(
    requirements: list[str],
    metadata: Mapping[str, PackageMeta | None],
    *,
    now: datetime,
) -> list[VetFinding]:
    """Judge each requirement against its metadata (None = not on PyPI; absent key = not looked up)."""
    meta_by_name = {normalize(k): v for k, v in metadata.items()}
    findings: list[VetFinding] = []
    for raw in requirements:
        findings.extend(_vet_one(raw, meta_by_name, _aware(now)))
    return findings


def blocking(findings: list[VetFinding]) -> list[VetFinding]:
    """The findings that must stop a build."""
    return [f for f in findings if f.severity == "blocking"]


def _vet_one(raw: str, metas: Mapping[str, PackageMeta | None], now: datetime) -> list[VetFinding]:
    try:
        req = Requirement(raw)
    except InvalidRequirement as e:
        why = f"{raw!r} is not a valid requirement ({e}); write e.g. 'name==1.2.3'"
        return [VetFinding(package=raw, severity="blocking", rule="invalid-requirement", message=why)]
    name = normalize(req.name)
    if req.url:
        why = f"{name} is installed from {req.url}, bypassing registry checks; depend on a PyPI release"
        return [VetFinding(package=name, severity="blocking", rule="direct-url", message=why)]
    out: list[tuple[Severity, str, str]] = []
    if not _pinned(req):
        spec = str(req.specifier) or "no version"
        out.append(("warning", "unpinned", f"{name} has {spec}; pin an exact version (name==X.Y.Z)"))
    if name not in metas:
        out.append(("warning", "unverified", f"{name} was not looked up on PyPI, so it is unvetted"))
    else:
        out.extend(_registry_rules(name, metas[name], now))
    return [VetFinding(package=name, severity=sev, rule=rule, message=msg) for sev, rule, msg in out]


def _registry_rules(name: str, meta: PackageMeta | None, now: datetime) -> list[tuple[Severity, str, str]]:
    """Rules that need the registry's answer: missing, squats, brand-new, near-empty."""
    out: list[tuple[Severity, str, str]] = []
    missing = meta is None or not meta.exists
    if missing:
        out.append(("blocking", "missing", f"{name} does not exist on PyPI; it may be a hallucinated name"))
    age = now - _aware(meta.first_release) if meta is not None and meta.first_release is not None else None
    new = age is not None and age < timedelta(days=NEW_PACKAGE_DAYS)
    thin = meta is not None and meta.exists and meta.versions <= 1 and len(meta.summary.strip()) < 20
    if name not in POPULAR:
        target = typosquat_target(name)
        if target is not None:
            # An old project with many releases that merely resembles a popular name is worth a look, not a stop.
            established = not (missing or new or thin) and meta is not None and meta.versions >= 5
            why = f"{name} looks like a typo-squat of the popular package {target!r}; did you mean {target}?"
            out.append(("warning" if established else "blocking", "typosquat", why))
        base = slopsquat_base(name)
        if base is not None and (missing or new or thin):
            state = "does not exist" if missing else "is brand-new" if new else "is nearly empty"
            why = (
                f"{name} is {base!r} plus a suffix and {state}: the kind of name a model invents; use {base}"
            )
            out.append(("blocking", "slopsquat", why))
    if new and age is not None:
        why = f"{name} was first released {age.days} day(s) ago (< {NEW_PACKAGE_DAYS}); prefer an established one"
        out.append(("warning", "new-package", why))
    if thin and meta is not None:
        why = f"{name} has {meta.versions} release(s) and summary {meta.summary!r}; it may be a placeholder"
        out.append(("warning", "near-empty", why))
    return out


def typosquat_target(name: str) -> str | None:
    """The popular project `name` imitates (edit distance, separators, homoglyphs, prefix/digit tricks), or None."""
    name = normalize(name)
    if name in POPULAR:
        return None
    folded = _skeleton(name)
    for popular in sorted(POPULAR):
        if _skeleton(popular) == folded:
            return popular
    for prefix in _PREFIXES:
        if name.startswith(prefix) and name[len(prefix) :] in POPULAR:
            return name[len(prefix) :]
    stripped = re.sub(r"[-_.]?\d+$", "", name)
    if stripped != name and stripped in POPULAR:
        return stripped
    limit = 2 if len(name) >= 8 else 1 if len(name) >= 5 else 0
    best: tuple[int, str] | None = None
    for popular in POPULAR:
        if abs(len(popular) - len(name)) > limit:
            continue
        d = _osa_distance(name, popular, limit)
        if 0 < d <= limit and (best is None or (d, popular) < best):
            best = (d, popular)
    return best[1] if best else None


def slopsquat_base(name: str) -> str | None:
    """The popular project `name` is built on by adding a suffix like '-python' or '-sdk', or None."""
    name = normalize(name)
    for suffix in _SLOP_SUFFIXES:
        for sep in ("-", ""):
            tail = f"{sep}{suffix}"
            if name.endswith(tail) and name[: -len(tail)] in POPULAR:
                return name[: -len(tail)]
    return None


def _skeleton(name: str) -> str:
    """Fold look-alike characters and drop separators, so 'reque5ts' and 'req_uests' meet 'requests'."""
    return re.sub(r"[-_.]", "", name.lower().replace("rn", "m").replace("vv", "w").translate(_HOMOGLYPHS))


def _osa_distance(a: str, b: str, limit: int) -> int:
    """Edit distance counting adjacent transpositions as one ('reqeusts'); stops early above `limit`."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def _pinned(req: Requirement) -> bool:
    specs = list(req.specifier)
    return len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
