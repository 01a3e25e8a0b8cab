"""`driftrec serve`: the real server in a subprocess on 127.0.0.1, called over HTTP, stopped by its PID.

The answers are checked against the CLI on the same data (`driftrec recommend --json`, `driftrec
timeline --json`, the CLI's one-line error messages), so the API and the command line cannot drift apart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from agent.llm.servers import free_port, tail
from driftrec.cli.main import main
from driftrec.server.sessions import SessionStore
from retrieval.errors import UnknownSessionError
from tests.conftest import ML100K

ROOT = Path(__file__).resolve().parents[1]
BASE = ["--data", str(ML100K), "--embedder", "hashing"]


class Server:
    """`driftrec serve` in its own process group; `stop()` sends SIGTERM to its PID and waits."""

    def __init__(self, log_dir: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"serve-{self.port}.log"
        argv = [sys.executable, "-m", "driftrec.cli.main", "serve", *BASE, "--llm", "none",
                "--host", "127.0.0.1", "--port", str(self.port), *extra]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{tail(self.log)}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready in 120 s:\n{tail(self.log)}")

    def stop(self) -> int:
        """SIGTERM to the server's PID, then its exit code (SIGKILL after 20 s, which fails the caller)."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                return self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
                return -9
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ml100k_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("serve"))
    yield srv
    srv.stop()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _post(server: Server, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=60)


def test_recommend_gives_the_cli_items(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    for user in ("196", "405"):
        code, out, _ = _cli(capsys, "recommend", *BASE, "--user", user, "-k", "5", "--json")
        assert code == 0
        cli_items = [row["item_id"] for row in json.loads(out)["items"]]
        resp = _post(server, "/recommend", {"user_id": user, "k": 5, "explain": False})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["user"] == user and body["items"] == cli_items
        assert body["explanations"] == [] and body["diagnostics"]["rerank_method"] == "none"


def test_unknown_user_is_a_404_with_the_cli_message(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "recommend", *BASE, "--user", "nobody-42", "--json")
    assert code == 3
    message = err.strip().removeprefix("driftrec: error: ")
    for resp in (_post(server, "/recommend", {"user_id": "nobody-42", "k": 5}),
                 httpx.get(f"{server.url}/timeline", params={"user_id": "nobody-42"}),
                 _post(server, "/chat", {"user_id": "nobody-42", "message": "hi"}),
                 _post(server, "/explain", {"user_id": "nobody-42", "item_ids": ["50"]})):
        assert resp.status_code == 404
        assert resp.json() == {"error": {"type": "UnknownUserError", "message": message, "exit_code": 3}}
    resp = _post(server, "/explain", {"user_id": "196", "item_ids": ["50", "no-such-item"]})
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "UnknownItemError"


@pytest.mark.parametrize(("path", "body", "needle"), [
    ("/recommend", {"user_id": "196", "k": 0}, "k must be between 1 and 1,000, got 0"),
    ("/recommend", {"user_id": "196", "k": 1001}, "got 1,001"),
    ("/recommend", {"user_id": "196", "k": 21, "explain": True}, "limited to 20 items"),
    ("/recommend", {"user_id": "  ", "k": 5}, "user id is empty"),
    ("/recommend", {"user_id": 196, "k": 5}, "user_id"),
    ("/recommend", {"user_id": "196", "k": 5, "extra": 1}, "extra"),
    ("/chat", {"user_id": "196", "message": "x" * 5000}, "5,000 characters; the limit is 4,000"),
    ("/explain", {"user_id": "196", "item_ids": [str(i) for i in range(1, 22)]}, "between 1 and 20, got 21"),
    ("/explain", {"user_id": "196", "item_ids": []}, "got 0"),
])
def test_refused_inputs_are_422_with_the_limits_message(server: Server, path: str, body: object,
                                                        needle: str) -> None:
    resp = _post(server, path, body)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["type"] == "ConfigError" and error["exit_code"] == 2 and needle in error["message"]


def test_a_body_over_the_cap_is_413(server: Server) -> None:
    big = json.dumps({"user_id": "196", "k": 5, "pad": "x" * (1 << 20)}).encode()
    declared = httpx.post(f"{server.url}/recommend", content=big, headers={"content-type": "application/json"},
                          timeout=30)
    chunked = httpx.post(f"{server.url}/recommend", content=iter([big[i:i + 8192] for i in range(0, len(big), 8192)]),
                         headers={"content-type": "application/json"}, timeout=30)
    for resp in (declared, chunked):
        assert resp.status_code == 413
        assert "over the limit of 65,536 bytes" in resp.json()["error"]["message"]
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200  # still serving


def test_chat_session_continues_with_new_items(server: Server) -> None:
    first = _post(server, "/chat", {"user_id": "196", "message": "recommend me something"})
    assert first.status_code == 200, first.text
    sid = first.json()["session_id"]
    shown = first.json()["reply"]["recommendations"]["items"]
    assert first.json()["reply"]["intent"] == "recommend" and len(shown) == 5
    more = _post(server, "/chat", {"user_id": "196", "message": "more", "session_id": sid})
    assert more.status_code == 200 and more.json()["session_id"] == sid
    again = more.json()["reply"]["recommendations"]["items"]
    assert len(again) == 5 and not set(again) & set(shown)
    fresh = _post(server, "/chat", {"user_id": "196", "message": "more"})  # no session: starts over
    assert fresh.json()["session_id"] != sid and fresh.json()["reply"]["recommendations"]["items"] == shown
    other_user = _post(server, "/chat", {"user_id": "405", "message": "more", "session_id": sid})
    assert other_user.status_code == 422 and "belongs to user '196'" in other_user.json()["error"]["message"]
    unknown = _post(server, "/chat", {"user_id": "196", "message": "more", "session_id": "not-issued"})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "UnknownSessionError"


def test_timeline_and_explain(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "timeline", *BASE, "--user", "196", "--json")
    assert code == 0
    resp = httpx.get(f"{server.url}/timeline", params={"user_id": "196"}, timeout=60)
    assert resp.status_code == 200 and resp.json() == json.loads(out)
    resp = _post(server, "/explain", {"user_id": "196", "item_ids": ["50", "732"]})
    assert resp.status_code == 200
    exps = resp.json()["explanations"]
    assert [e["item_id"] for e in exps] == ["50", "732"] and all(e["text"]["text"] for e in exps)


def test_concurrent_requests_give_the_serial_answers(server: Server) -> None:
    users = ["196", "186", "22", "244", "166", "298", "115", "253"]
    serial = [_post(server, "/recommend", {"user_id": u, "k": 10}).json() for u in users]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            parallel = list(pool.map(lambda u: _post(server, "/recommend", {"user_id": u, "k": 10}), users))
            assert all(r.status_code == 200 for r in parallel)
            assert [r.json() for r in parallel] == serial


def test_openapi_docs_list_the_endpoints(server: Server) -> None:
    assert httpx.get(f"{server.url}/docs", timeout=10).status_code == 200
    spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert {"/recommend", "/chat", "/explain", "/timeline", "/healthz"} <= set(spec["paths"])
    assert "Recommendation" in spec["components"]["schemas"]


def test_sessions_are_evicted_lru_and_sigterm_stops_the_server(tmp_path: Path, ml100k_path: Path) -> None:
    srv = Server(tmp_path, "--max-sessions", "2")
    try:
        ids = [_post(srv, "/chat", {"user_id": "196", "message": "recommend me something"}).json()["session_id"]
               for _ in range(2)]
        assert _post(srv, "/chat", {"user_id": "196", "message": "more", "session_id": ids[0]}).status_code == 200
        _post(srv, "/chat", {"user_id": "196", "message": "hello"})  # evicts ids[1], the least recently used
        assert _post(srv, "/chat", {"user_id": "196", "message": "more", "session_id": ids[1]}).status_code == 404
        assert _post(srv, "/chat", {"user_id": "196", "message": "more", "session_id": ids[0]}).status_code == 200
        assert httpx.get(f"{srv.url}/healthz", timeout=5).json()["sessions"] == 2
    finally:
        code = srv.stop()
    assert code == -signal.SIGTERM  # uvicorn shuts down, then re-raises the signal it caught
    with pytest.raises(ProcessLookupError):
        os.kill(srv.pid, 0)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{srv.url}/healthz", timeout=2)


def test_serve_refuses_a_port_in_use(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "serve", *BASE, "--llm", "none", "--port", str(server.port))
    assert code == 2 and f"127.0.0.1:{server.port} is in use" in err


def test_session_store_is_bounded() -> None:
    store = SessionStore(max_sessions=3)
    ids = [store.open(None, "u")[0] for _ in range(5)]
    assert len(store) == 3
    with pytest.raises(UnknownSessionError):
        store.open(ids[0], "u")
    assert store.open(ids[4], "u")[1].session.user == "u"
