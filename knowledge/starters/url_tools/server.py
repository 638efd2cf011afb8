"""URL tools: parse a URL into parts, build one from parts, resolve relative links, and normalize URLs."""

from typing import Annotated
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

mcp = MCPServer("url-tools", instructions="Parse, build, resolve and normalize URLs (no network access).")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}
MAX_URL = 8192


def _split(url: str):
    if len(url) > MAX_URL:
        raise ToolError(f"url has {len(url)} characters; the limit is {MAX_URL}")
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        raise ToolError(f"url {url!r} needs a scheme and a host, e.g. 'https://example.org/path'")
    try:
        parts.port
    except ValueError:
        raise ToolError(f"url {url!r} has an invalid port; ports are whole numbers 0-65535") from None
    return parts


@mcp.tool(annotations=READ_ONLY)
def parse_url(url: Annotated[str, Field(description="absolute URL")]) -> dict:
    """Split a URL into scheme, user, host, port, path, query parameters and fragment."""
    p = _split(url)
    return {"scheme": p.scheme, "username": p.username, "host": p.hostname,
            "port": p.port or DEFAULT_PORTS.get(p.scheme), "path": p.path or "/",
            "query": [[k, v] for k, v in parse_qsl(p.query, keep_blank_values=True)], "fragment": p.fragment}


@mcp.tool(annotations=READ_ONLY)
def build_url(
    scheme: Annotated[str, Field(description="e.g. 'https'")],
    host: Annotated[str, Field(description="host name")],
    path: Annotated[str, Field(description="path, e.g. '/search'")] = "/",
    query: Annotated[dict[str, str], Field(description="query parameters")] = {},
    fragment: Annotated[str, Field(description="fragment without '#'")] = "",
) -> str:
    """Assemble a URL from parts, percent-encoding the path and query."""
    if not scheme.isalpha() or not host or any(c in host for c in "/?# "):
        raise ToolError(f"scheme {scheme!r} must be letters and host {host!r} a bare host name (no '/', '?', '#')")
    return urlunsplit((scheme.lower(), host.lower(), quote(path or "/"), urlencode(query), fragment))


@mcp.tool(annotations=READ_ONLY)
def resolve_url(
    base: Annotated[str, Field(description="absolute URL of the page")],
    reference: Annotated[str, Field(description="link as written, e.g. '../img/a.png'")],
) -> str:
    """Resolve a relative link against a base URL, as a browser would."""
    _split(base)
    return urljoin(base, reference)


@mcp.tool(annotations=READ_ONLY)
def normalize_url(url: Annotated[str, Field(description="absolute URL")]) -> str:
    """Canonical form: lowercase scheme and host, default port dropped, query sorted, fragment removed."""
    p = _split(url)
    host = p.hostname or ""
    netloc = host if not p.port or p.port == DEFAULT_PORTS.get(p.scheme) else f"{host}:{p.port}"
    query = urlencode(sorted(parse_qsl(p.query, keep_blank_values=True)))
    return urlunsplit((p.scheme.lower(), netloc, p.path or "/", query, ""))


if __name__ == "__main__":
    mcp.run()
