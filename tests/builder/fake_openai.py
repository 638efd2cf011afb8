"""A scripted OpenAI-compatible chat endpoint: a real HTTP server on 127.0.0.1 for tests.

Script entries are consumed in order, one per POST /v1/chat/completions:
- str: a 200 reply with that assistant text;
- int: that HTTP status with an OpenAI-style error body;
- Reply: full control (status, headers, text);
- callable(request_json) -> str | int | Reply: decided from the request.
When the script runs out the server answers 500 saying so, so a test that asks too often fails loudly.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer with full control over status and headers."""

    status: int = 200
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)


Entry = str | int | Reply | Callable[[dict[str, Any]], str | int | Reply]


def _tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: whitespace-separated words."""
    return len(text.split())


class FakeOpenAI:
    """The server; start() binds a free port, stop() shuts it down (port then refuses connections)."""

    def __init__(self, model: str = "fake-model"):
        self.model = model
        self._script: list[Entry] = []
        self.requests: list[dict[str, Any]] = []
        """JSON bodies of every chat request received, in order."""
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def calls(self) -> int:
        """Number of chat requests received."""
        return len(self.requests)

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (ends in /v1)."""
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, entries: list[Entry]) -> None:
        """Queue replies to hand out in order (appended to what is left)."""
        with self._lock:
            self._script.extend(entries)

    def start(self) -> FakeOpenAI:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                status, payload, headers = fake._answer(body)
                self._send(status, payload, headers)

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def _answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.requests.append(body)
            entry = self._script.pop(0) if self._script else None
        if entry is None:
            msg = f"fake_openai: script exhausted at call {self.calls}"
            return 500, {"error": {"message": msg, "type": "server_error"}}, {}
        if callable(entry):
            entry = entry(body)
        reply = (
            entry
            if isinstance(entry, Reply)
            else Reply(status=entry)
            if isinstance(entry, int)
            else Reply(text=entry)
        )
        if reply.status != 200:
            error = {"message": reply.text or f"scripted HTTP {reply.status}", "type": "scripted_error"}
            return reply.status, {"error": error}, reply.headers
        prompt = sum(_tokens(str(m.get("content", ""))) for m in body.get("messages", []))
        completion = _tokens(reply.text)
        payload = {
            "id": f"chatcmpl-fake-{self.calls}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model") or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
        return 200, payload, reply.headers
