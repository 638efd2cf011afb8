"""The web agent: package facts from PyPI, example repositories from GitHub search, documentation pages.

Everything is cached on disk with a TTL and time-boxed. Optional sources (GitHub, docs) degrade to an empty
result plus a note; nothing fetched from the web is ever put in a prompt except through quote_untrusted().
"""

from __future__ import annotations

import functools
import re
import ssl
import time
from collections.abc import Callable
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
import httpx
from pydantic import BaseModel, Field

from builder.cache import JsonCache
from builder.errors import BuildError, InputError
from builder.llm.untrusted import quote_untrusted
from sandbox.vet import PackageMeta

_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_USER_AGENT = "mcp-foundry-research/0.1"

__all__ = ["DocPage", "PackageInfo", "RepoHit", "ResearchError", "Researcher", "Resources", "quote_untrusted"]


class ResearchError(BuildError):
    """A required source (PyPI, a doc page) could not be read; the message names the URL and why."""


class PackageInfo(BaseModel):
    """What PyPI says about one project."""

    name: str
    latest_version: str
    summary: str = ""
    requires_python: str | None = None
    first_release: datetime | None = None
    latest_release: datetime | None = None
    releases: int = 0
    """Versions that have at least one uploaded file."""
    project_urls: dict[str, str] = Field(default_factory=dict)

    def to_meta(self) -> PackageMeta:
        """This project as dependency vetting sees it."""
        return PackageMeta(
            name=self.name,
            versions=self.releases,
            first_release=self.first_release,
            latest_release=self.latest_release,
            summary=self.summary,
        )


class RepoHit(BaseModel):
    """One repository from a search."""

    full_name: str
    url: str
    description: str = ""
    stars: int = 0
    language: str | None = None
    topics: list[str] = Field(default_factory=list)


class DocPage(BaseModel):
    """A fetched documentation page reduced to text."""

    url: str
    title: str = ""
    text: str
    content_type: str = ""
    bytes_read: int = 0
    truncated: bool = False
    """True when the page was larger than the size limit and was cut."""


class Resources(BaseModel):
    """Everything research found for one build; `notes` says what was unavailable and why."""

    packages: dict[str, PackageInfo | None] = Field(default_factory=dict)
    """Checked names -> info, or None when PyPI has no such project. Unchecked names are absent."""
    repos: list[RepoHit] = Field(default_factory=list)
    docs: list[DocPage] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def package_meta(self) -> dict[str, PackageMeta | None]:
        """The checked packages in the shape sandbox.vet.vet_dependencies expects."""
        return {name: None if info is None else info.to_meta() for name, info in self.packages.items()}


class Researcher:
    """Fetches and caches research material; one instance can serve many builds."""

    def __init__(
        self,
        cache_dir: Path | str,
        *,
        pypi_url: str = "https://pypi.org",
        github_api_url: str = "https://api.github.com",
        github_token: str | None = None,
        timeout_s: float = 10.0,
        max_bytes: int = 500_000,
        ttl_s: float = 24 * 3600,
        max_docs: int = 3,
        clock: Callable[[], float] = time.time,
    ):
        self.pypi_url = pypi_url.rstrip("/")
        self.github_api_url = github_api_url.rstrip("/")
        self.github_token = github_token
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.max_docs = max_docs
        self.cache = JsonCache(cache_dir, ttl_s=ttl_s, clock=clock)
        self.notes: list[str] = []
        """What degraded and why, across calls (gather() copies its own into Resources)."""

    def _client(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self.timeout_s,
            follow_redirects=True,
            headers={"User-Agent": _USER_AGENT, **(headers or {})},
            verify=_ssl_context(),
        )

    async def pypi(self, name: str) -> PackageInfo | None:
        """PyPI facts for `name`, None when PyPI has no such project; ResearchError when PyPI is unreachable."""
        if not _NAME.match(name):
            raise InputError(
                "package", f"{name!r} is not a valid distribution name", "letters, digits, '.', '-', '_'"
            )
        url = f"{self.pypi_url}/pypi/{quote(name)}/json"
        cached = self.cache.get(url)
        if cached is not None:
            return PackageInfo.model_validate(cached["info"]) if cached["found"] else None
        try:
            with anyio.fail_after(self.timeout_s):
                async with self._client({"Accept": "application/json"}) as client:
                    resp = await client.get(url)
        except (httpx.HTTPError, TimeoutError) as e:
            raise ResearchError(f"PyPI unreachable at {url}: {type(e).__name__}: {e}") from e
        if resp.status_code == 404:
            self.cache.set(url, {"found": False})
            return None
        if resp.status_code != 200:
            raise ResearchError(f"PyPI answered HTTP {resp.status_code} for {url}")
        try:
            info = _package_info(resp.json())
        except (ValueError, KeyError, TypeError) as e:
            raise ResearchError(f"PyPI answer for {url} is not the JSON API shape: {e}") from e
        self.cache.set(url, {"found": True, "info": info.model_dump(mode="json")})
        return info

    async def github_search(self, query: str) -> list[RepoHit]:
        """Repositories matching `query`, most stars first; [] plus a note when unreachable or rate-limited."""
        url = f"{self.github_api_url}/search/repositories?q={quote(query)}&sort=stars&order=desc&per_page=10"
        cached = self.cache.get(url)
        if cached is not None:
            return [RepoHit.model_validate(r) for r in cached]
        headers = {"Accept": "application/vnd.github+json"}
        if self.github_token:
            headers["Authorization"] = f"Bearer {self.github_token}"
        try:
            with anyio.fail_after(self.timeout_s):
                async with self._client(headers) as client:
                    resp = await client.get(url)
        except (httpx.HTTPError, TimeoutError) as e:
            self.notes.append(
                f"GitHub search skipped: {self.github_api_url} unreachable ({type(e).__name__})"
            )
            return []
        if resp.status_code in (403, 429) and (
            resp.headers.get("x-ratelimit-remaining") == "0" or resp.status_code == 429
        ):
            hint = "" if self.github_token else "; set MCP_FOUNDRY_GITHUB_TOKEN for a higher limit"
            self.notes.append(f"GitHub search skipped: rate limited (HTTP {resp.status_code}){hint}")
            return []
        if resp.status_code != 200:
            self.notes.append(f"GitHub search skipped: HTTP {resp.status_code} from {self.github_api_url}")
            return []
        try:
            hits = [_repo_hit(item) for item in resp.json().get("items", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            self.notes.append(f"GitHub search skipped: unexpected answer shape ({e})")
            return []
        self.cache.set(url, [h.model_dump(mode="json") for h in hits])
        return hits

    async def fetch_doc(self, url: str) -> DocPage:
        """Fetch a page (at most max_bytes, within timeout_s) and reduce HTML to text; ResearchError on failure."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise InputError("url", f"{url!r} is not an http(s) URL", "http:// or https:// URLs")
        cached = self.cache.get(url)
        if cached is not None:
            return DocPage.model_validate(cached)
        chunks: list[bytes] = []
        size, truncated = 0, False
        try:
            with anyio.fail_after(self.timeout_s):
                async with self._client() as client, client.stream("GET", url) as resp:
                    if resp.status_code != 200:
                        raise ResearchError(f"doc page {url} answered HTTP {resp.status_code}")
                    ctype = resp.headers.get("content-type", "")
                    async for chunk in resp.aiter_bytes():
                        take = chunk[: self.max_bytes - size]
                        chunks.append(take)
                        size += len(take)
                        if size >= self.max_bytes:
                            # Stop reading: the limit protects memory and prompt size from huge pages.
                            truncated = len(take) < len(chunk) or bool(await _more(resp))
                            break
        except TimeoutError as e:
            raise ResearchError(f"doc page {url} took longer than {self.timeout_s:g} s") from e
        except httpx.HTTPError as e:
            raise ResearchError(f"doc page {url} unreachable: {type(e).__name__}: {e}") from e
        raw = b"".join(chunks)
        page = _to_page(url, raw, ctype, truncated)
        self.cache.set(url, page.model_dump(mode="json"))
        return page

    async def gather(self, requirement_text: str, packages: list[str]) -> Resources:
        """Look up `packages` on PyPI, search GitHub for the requirement, and fetch a few of the packages' docs."""
        out = Resources()
        mark = len(self.notes)

        async def one(name: str) -> None:
            try:
                out.packages[name] = await self.pypi(name)
            except (ResearchError, InputError) as e:
                self.notes.append(f"package {name!r} not checked: {e}")

        async with anyio.create_task_group() as tg:
            for name in dict.fromkeys(packages):
                tg.start_soon(one, name)
            query = search_query(requirement_text)
            if query:

                async def search() -> None:
                    out.repos = await self.github_search(query)

                tg.start_soon(search)
        for url in _doc_urls(out.packages, packages)[: self.max_docs]:
            try:
                out.docs.append(await self.fetch_doc(url))
            except (ResearchError, InputError) as e:
                self.notes.append(f"doc skipped: {e}")
        out.notes = self.notes[mark:]
        return out


_STOP = set(
    "a an and the of for to in on with from into by or as is are be that this it its which using use "
    "server mcp tool tools python want need please can should would will make build create".split()
)


def search_query(requirement_text: str, max_words: int = 6) -> str:
    """A short repository-search query from the meaningful words of a requirement."""
    words = [w for w in re.findall(r"[a-z][a-z0-9+.-]{2,}", requirement_text.lower()) if w not in _STOP]
    picked = list(dict.fromkeys(words))[:max_words]
    return f"{' '.join(picked)} language:python" if picked else ""


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context for all clients: building one costs ~25 ms, far more than a cached lookup."""
    return httpx.create_ssl_context()


async def _more(resp: httpx.Response) -> bytes:
    """Whether anything is left in the stream after the size limit was reached."""
    async for chunk in resp.aiter_bytes():
        if chunk:
            return chunk
    return b""


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _package_info(data: dict[str, Any]) -> PackageInfo:
    info = data["info"]
    uploaded: dict[str, datetime] = {}
    for version, files in (data.get("releases") or {}).items():
        times = [
            t
            for t in (_parse_time(f.get("upload_time_iso_8601") or f.get("upload_time")) for f in files)
            if t
        ]
        if times:
            uploaded[version] = min(times)
    latest = info.get("version") or ""
    return PackageInfo(
        name=info.get("name") or "",
        latest_version=latest,
        summary=(info.get("summary") or "").strip(),
        requires_python=info.get("requires_python") or None,
        first_release=min(uploaded.values()) if uploaded else None,
        latest_release=uploaded.get(latest) or (max(uploaded.values()) if uploaded else None),
        releases=len(uploaded),
        project_urls={str(k): str(v) for k, v in (info.get("project_urls") or {}).items() if v},
    )


def _repo_hit(item: dict[str, Any]) -> RepoHit:
    return RepoHit(
        full_name=item["full_name"],
        url=item.get("html_url") or "",
        description=item.get("description") or "",
        stars=int(item.get("stargazers_count") or 0),
        language=item.get("language"),
        topics=list(item.get("topics") or []),
    )


def _doc_urls(found: dict[str, PackageInfo | None], order: list[str]) -> list[str]:
    """Documentation (else homepage) URLs of the found packages, in the order they were asked for."""
    urls: list[str] = []
    for name in dict.fromkeys(order):
        info = found.get(name)
        if info is None:
            continue
        by_key = {k.lower(): v for k, v in info.project_urls.items()}
        url = by_key.get("documentation") or by_key.get("docs") or by_key.get("homepage")
        if url and url not in urls:
            urls.append(url)
    return urls


class _TextExtractor(HTMLParser):
    """HTML to readable text: drops scripts and styles, keeps block breaks, remembers the title."""

    _SKIP = {"script", "style", "noscript", "template", "svg", "head"}
    _BLOCK = {
        "p",
        "div",
        "br",
        "li",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "section",
        "article",
        "table",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    """(title, text) of an HTML document, whitespace collapsed, paragraphs kept."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in "".join(parser.parts).split("\n"))
    return parser.title.strip(), "\n".join(line for line in lines if line)


def _to_page(url: str, raw: bytes, ctype: str, truncated: bool) -> DocPage:
    kind = ctype.split(";")[0].strip().lower()
    if kind and not (kind.startswith("text/") or kind in ("application/json", "application/xhtml+xml")):
        raise ResearchError(f"doc page {url} is {kind}, not text; only HTML and plain-text pages are read")
    charset = re.search(r"charset=([\w-]+)", ctype)
    try:
        decoded = raw.decode(charset.group(1) if charset else "utf-8", errors="replace")
    except LookupError:  # a charset name Python does not know
        decoded = raw.decode("utf-8", errors="replace")
    if kind in ("text/html", "application/xhtml+xml") or (not kind and "<html" in decoded[:500].lower()):
        title, text = html_to_text(decoded)
    else:
        title, text = "", decoded.strip()
    return DocPage(
        url=url, title=title, text=text, content_type=kind, bytes_read=len(raw), truncated=truncated
    )
