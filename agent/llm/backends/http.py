"""An httpx client whose every socket operation ends by the current LLM deadline (`agent.llm.deadline`).

httpx's timeouts are per operation: a server that accepts and never answers costs one read timeout, and
one that sends a byte every few seconds never times out at all. Here each connect, read and write is
given at most the time left before the deadline, and raises a timeout once it has passed, so a call
ends by its deadline whatever the server does (headers and body alike).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from agent.llm.deadline import remaining


def _cap(timeout: float | None, error: type[Exception]) -> float | None:
    """`timeout` shortened to the time left before the deadline; `error` once it has passed."""
    left = remaining()
    if left is None:
        return timeout
    if left <= 0:
        raise error("the LLM call's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _cap(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _cap(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname,
                                                     _cap(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_tcp(host, port, _cap(timeout, httpcore.ConnectTimeout),
                                                       local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(path, _cap(timeout, httpcore.ConnectTimeout),
                                                               socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def deadline_client(timeout_s: float) -> httpx.Client:
    """An httpx client bounded per operation by `timeout_s` and in total by the current deadline."""
    transport = httpx.HTTPTransport()
    # httpx exposes no network-backend option; its pool (direct or proxy) keeps the backend here.
    pool = transport._pool
    pool._network_backend = _DeadlineBackend(pool._network_backend)
    return httpx.Client(transport=transport, timeout=httpx.Timeout(timeout_s))
