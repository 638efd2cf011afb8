"""One local HTTP server that plays the PyPI JSON API, the GitHub repository search API and doc pages.

Routes: GET /pypi/<name>/json, GET /search/repositories?q=..., and any path added with add_page().
Every request is recorded in .requests (path with query), so tests can prove a cache answered instead.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FakeWeb:
    """The fake; start() binds a free port on 127.0.0.1."""

    def __init__(self) -> None:
        self.packages: dict[str, dict[str, Any]] = {}
        self.repos: list[dict[str, Any]] = []
        self.pages: dict[str, tuple[int, str, bytes]] = {}
        self.github_rate_limited = False
        """When True, the search API answers 403 with X-RateLimit-Remaining: 0."""
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Base URL of the server (no trailing slash); use it as pypi_url and github_api_url."""
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def count(self, prefix: str) -> int:
        """How many requests had a path starting with `prefix`."""
        return sum(1 for r in self.requests if r.startswith(prefix))

    def add_package(
        self,
        name: str,
        releases: dict[str, str],
        *,
        summary: str = "",
        requires_python: str | None = ">=3.9",
        project_urls: dict[str, str] | None = None,
    ) -> None:
        """Publish `name` with releases {version: ISO upload time}; the last key is the latest version."""
        latest = list(releases)[-1]
        self.packages[_norm(name)] = {
            "info": {
                "name": name,
                "version": latest,
                "summary": summary,
                "requires_python": requires_python,
                "project_urls": project_urls or {},
                "home_page": "",
            },
            "releases": {
                v: [{"upload_time_iso_8601": when, "filename": f"{name}-{v}.tar.gz"}]
                for v, when in releases.items()
            },
        }

    def add_repo(
        self, full_name: str, description: str, *, stars: int = 0, topics: list[str] | None = None
    ) -> None:
        """Make a repository findable by words of its name and description."""
        self.repos.append(
            {
                "full_name": full_name,
                "html_url": f"{self.url}/{full_name}",
                "description": description,
                "stargazers_count": stars,
                "topics": topics or [],
                "language": "Python",
                "updated_at": datetime(2026, 1, 1).isoformat() + "Z",
            }
        )

    def add_page(
        self, path: str, body: str | bytes, *, content_type: str = "text/html", status: int = 200
    ) -> str:
        """Serve `body` at `path`; return its full URL."""
        data = body.encode() if isinstance(body, str) else body
        self.pages[path] = (status, content_type, data)
        return self.url + path

    def start(self) -> FakeWeb:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with fake._lock:
                    fake.requests.append(self.path)
                status, ctype, data, headers = fake._route(self.path)
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def _route(self, raw_path: str) -> tuple[int, str, bytes, dict[str, str]]:
        parts = urlsplit(raw_path)
        path = parts.path
        if path.startswith("/pypi/") and path.endswith("/json"):
            name = _norm(path[len("/pypi/") : -len("/json")].strip("/"))
            if name in self.packages:
                return _json(200, self.packages[name])
            return _json(404, {"message": "Not Found"})
        if path == "/search/repositories":
            if self.github_rate_limited:
                status, ctype, data, _ = _json(403, {"message": "API rate limit exceeded"})
                return status, ctype, data, {"X-RateLimit-Remaining": "0"}
            query = parse_qs(parts.query).get("q", [""])[0].lower()
            words = [w for w in query.split() if ":" not in w]
            hits = [
                r
                for r in self.repos
                if any(w in (r["full_name"] + " " + (r["description"] or "")).lower() for w in words)
            ]
            hits.sort(key=lambda r: -r["stargazers_count"])
            return _json(200, {"total_count": len(hits), "incomplete_results": False, "items": hits})
        if path in self.pages:
            status, ctype, data = self.pages[path]
            return status, ctype, data, {}
        return 404, "text/plain", b"not found", {}


def _json(status: int, payload: Any) -> tuple[int, str, bytes, dict[str, str]]:
    return status, "application/json", json.dumps(payload).encode(), {}


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")
