"""A cap on request body size, enforced before the app parses anything (413 over the cap)."""

from __future__ import annotations

import json
from typing import Any

from driftrec.server.models import ErrorBody, ErrorDetail
from retrieval.errors import ConfigError

Message = dict[str, Any]


class BodyLimit:
    """Pure ASGI middleware: refuse HTTP requests whose body is over `max_bytes` with a 413.

    A declared Content-Length over the cap is refused before reading; a chunked body is read up to
    the cap and refused as soon as it passes it, so no more than `max_bytes` + one chunk is held.

    Args:
        app: the ASGI app to guard.
        max_bytes: largest body accepted.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, size)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return dict(await receive())
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any, size: int) -> None:
        message = (f"request body of {size:,}+ bytes is over the limit of {self.max_bytes:,} bytes: "
                   "send a smaller request")
        payload = json.dumps(ErrorBody(error=ErrorDetail(type=ConfigError.__name__, message=message,
                                                         exit_code=ConfigError.exit_code)).model_dump()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})
