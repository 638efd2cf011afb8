"""A scripted OpenAI-compatible chat endpoint: a real HTTP server on 127.0.0.1 for tests.

Script entries are consumed in order, one per POST /v1/chat/completions:
- str: a 200 reply with that assistant text;
- int: that HTTP status with an OpenAI-style error body;
- Reply: full control (status, headers, text);
- Stream: a streamed answer with timing (pieces dripped `gap_s` apart, or a stall);
- callable(request_json) -> str | int | Reply | Stream: decided from the request.
A request with "stream": true is answered as server-sent events (one chunk per piece, a usage chunk
when stream_options.include_usage is set, then [DONE]), as OpenAI does, unless the server was made
with streams=False: then it ignores "stream" and answers whole, as some endpoints do.
When the script runs out the server answers 500 saying so, so a test that asks too often fails loudly.
"""

from __future__ import annotations

import json
import re
import threading
import time
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


@dataclass
class Stream:
    """One scripted streamed answer: `text` in `pieces` (default: word by word), `gap_s` apart.

    After `stall_after` pieces the server says nothing for `stall_s` seconds before going on; after
    `error_after` pieces it sends an error event instead of the rest, as OpenAI does when a model fails.
    """

    text: str
    pieces: list[str] | None = None
    gap_s: float = 0.0
    stall_after: int | None = None
    stall_s: float = 0.0
    error_after: int | None = None

    def split(self) -> list[str]:
        """The pieces to send; joined they give `text`."""
        if self.pieces is not None:
            assert "".join(self.pieces) == self.text, "Stream.pieces must join to Stream.text"
            return self.pieces
        return re.findall(r"\S+\s*|\s+", self.text) or [""]


Entry = str | int | Reply | Stream | Callable[[dict[str, Any]], str | int | Reply | Stream]


def _tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: whitespace-separated words."""
    return len(text.split())


class FakeOpenAI:
    """The server; start() binds a free port, stop() shuts it down (port then refuses connections)."""

    def __init__(self, model: str = "fake-model", *, streams: bool = True):
        self.model = model
        self.streams = streams
        """False: a request asking to stream is answered whole, as by an endpoint that cannot stream."""
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
                status, payload, headers, stream = fake._answer(body)
                if stream is None:
                    self._send(status, payload, headers)
                else:
                    self._stream(stream, payload, body)

            def _stream(self, plan: Stream, payload: dict[str, Any], body: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.end_headers()  # HTTP/1.0: the body ends when the connection closes
                base = {k: payload[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
                first = {"role": "assistant", "content": ""}
                try:
                    self._event(base | {"choices": [{"index": 0, "delta": first, "finish_reason": None}]})
                    for n, piece in enumerate(plan.split()):
                        if plan.error_after is not None and n == plan.error_after:
                            self._event({"error": {"message": "the model failed mid-answer", "type": "server_error"}})
                            return
                        if plan.stall_after is not None and n == plan.stall_after:
                            time.sleep(plan.stall_s)
                        elif n and plan.gap_s:
                            time.sleep(plan.gap_s)
                        delta = {"content": piece}
                        self._event(base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                    self._event(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                    if (body.get("stream_options") or {}).get("include_usage"):
                        self._event(base | {"choices": [], "usage": payload["usage"]})
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a stall: what the test wanted to see

            def _event(self, data: dict[str, Any]) -> None:
                self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()

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
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out first: what a test of timeouts wanted to see

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

    def _answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str], Stream | None]:
        with self._lock:
            self.requests.append(body)
            entry = self._script.pop(0) if self._script else None
        if entry is None:
            msg = f"fake_openai: script exhausted at call {self.calls}"
            return 500, {"error": {"message": msg, "type": "server_error"}}, {}, None
        if callable(entry):
            entry = entry(body)
        plan = entry if isinstance(entry, Stream) else None
        reply = (
            entry
            if isinstance(entry, Reply)
            else Reply(status=entry)
            if isinstance(entry, int)
            else Reply(text=entry.text)
            if isinstance(entry, Stream)
            else Reply(text=entry)
        )
        if reply.status != 200:
            error = {"message": reply.text or f"scripted HTTP {reply.status}", "type": "scripted_error"}
            return reply.status, {"error": error}, reply.headers, None
        if body.get("stream") and self.streams:
            plan = plan or Stream(reply.text)
        else:
            plan = None
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
        return 200, payload, reply.headers, plan
