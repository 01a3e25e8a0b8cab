"""A misbehaving OpenAI-compatible server, in a thread: each behaviour under its own path prefix.

`http://127.0.0.1:PORT/<behaviour>/v1` is the base URL a case passes as `--llm-url`; every chat
completion request under it gets that behaviour (see BEHAVIOURS).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def completion(content: Any = "A", logprobs: Any = "default") -> dict[str, Any]:
    """A chat.completion body; `logprobs="default"` gives valid first-token logprobs over labels A..E."""
    if logprobs == "default":
        top = [{"token": t, "logprob": -0.1 - n, "bytes": [ord(t)]} for n, t in enumerate("ABCDE")]
        logprobs = {"content": [{"token": "A", "logprob": -0.1, "bytes": [65], "top_logprobs": top}]}
    return {"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": logprobs, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}


Behaviour = Callable[["_Handler"], None]


def send(h: BaseHTTPRequestHandler, status: int, body: bytes | str, ctype: str = "application/json",
         headers: dict[str, str] | None = None) -> None:
    """Answer the request with `status`, a body and its Content-Type and Content-Length."""
    data = body.encode() if isinstance(body, str) else body
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)


def _json(status: int, doc: Any, headers: dict[str, str] | None = None) -> Behaviour:
    return lambda h: send(h, status, json.dumps(doc), headers=headers)


def _hang(h: _Handler) -> None:
    h.server.stop.wait(600)  # type: ignore[attr-defined]


def _trickle(h: _Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", "100000")
    h.end_headers()
    try:
        for _ in range(600):
            h.wfile.write(b" ")
            h.wfile.flush()
            if h.server.stop.wait(1.0):  # type: ignore[attr-defined]
                return
    except OSError:
        return  # the client gave up


def _reset(h: _Handler) -> None:
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.close_connection = True


BEHAVIOURS: dict[str, Behaviour] = {
    "ok": _json(200, completion()),
    "hang": _hang,
    "trickle": _trickle,
    "http500": _json(500, {"error": {"message": "internal error", "type": "server_error"}}),
    "empty_object": _json(200, {}),
    "choices_null": _json(200, {"choices": None}),
    "choices_empty": _json(200, {"choices": []}),
    "html": lambda h: send(h, 200, "<html><body><h1>Welcome to nginx!</h1></body></html>", "text/html"),
    "invalid_json": lambda h: send(h, 200, '{"choices": [{"message": '),
    "content_null": _json(200, completion(content=None)),
    "logprobs_string": _json(200, completion(logprobs="not logprobs")),
    "logprobs_wrong_types": _json(200, completion(logprobs={"content": [
        {"token": 65, "logprob": "high", "top_logprobs": [{"token": None, "logprob": "x"}, 7]}]})),
    "logprobs_nan": _json(200, completion(logprobs={"content": [
        {"token": "A", "logprob": float("nan"), "top_logprobs": [{"token": "A", "logprob": float("nan")},
                                                                 {"token": "B", "logprob": float("inf")}]}]})),
    "rate_limited": _json(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"}),
    "rate_limited_long": _json(429, {"error": {"message": "slow down"}}, {"Retry-After": "3600"}),
    "reset": _reset,
    "huge": _json(200, completion(content="word " * 4_000_000)),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        self.server.requests += 1  # type: ignore[attr-defined]

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        name = self.path.strip("/").split("/")[0]
        behaviour = BEHAVIOURS.get(name)
        if behaviour is None:
            send(self, 404, json.dumps({"error": {"message": f"no behaviour {name!r}"}}))
            return
        try:
            behaviour(self)
        except OSError:
            self.close_connection = True

    do_GET = do_POST


class FakeServer:
    """The server on 127.0.0.1 (a free port), serving in daemon threads until `close`."""

    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.stop = threading.Event()  # type: ignore[attr-defined]
        self.httpd.requests = 0  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """Base URL; append "/<behaviour>/v1"."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        """Release hanging handlers and stop serving."""
        self.httpd.stop.set()  # type: ignore[attr-defined]
        self.httpd.shutdown()
        self.httpd.server_close()
