"""Misbehaving OpenAI-compatible servers: every rerank returns a valid ranking by the deadline, flagged.

A real HTTP server on localhost plays each fault (never answers, trickles bytes, 500, 429 with
Retry-After, 200 with `{}` / `{"choices": null}` / HTML / logprobs of the wrong types); the client is the
production one (`vllm` backend: langchain-openai → openai → httpx with the deadline transport).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from langchain_core.messages import HumanMessage

from agent.agent import AgentConfig, RecommenderAgent
from agent.explain import Explainer
from agent.llm import LLMSettings
from agent.llm.backends import make_client
from agent.llm.backends.openai import TOKENIZE_TIMEOUT_S
from agent.llm.client import LLMClient
from agent.llm.deadline import budget, expired, remaining
from agent.rerank import LLMReranker
from retrieval.candidates.base import Candidate
from retrieval.candidates.popularity import PopularityGenerator
from retrieval.data.model import Catalog, Dataset, Event, Item
from retrieval.errors import LLMError, LLMReplyError, LLMTimeoutError
from tests.badinputs.fakeserver import completion, send

TIMEOUT_S = 1.5
SLACK_S = 1.0  # thread start-up, connection set-up, the reranker's own work

pytest.importorskip("langchain_openai")


class Fault:
    """What the server does with each request; `calls` counts them."""

    def __init__(self, respond: Callable[[BaseHTTPRequestHandler, int], None]) -> None:
        self.respond = respond
        self.calls = 0
        self.stop = threading.Event()


def never(fault: Fault) -> Callable[[BaseHTTPRequestHandler, int], None]:
    def respond(h: BaseHTTPRequestHandler, n: int) -> None:
        fault.stop.wait(30)
    return respond


def trickle_body(fault: Fault) -> Callable[[BaseHTTPRequestHandler, int], None]:
    def respond(h: BaseHTTPRequestHandler, n: int) -> None:
        body = json.dumps(completion()).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        for byte in body:
            if fault.stop.wait(0.2):
                return
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
    return respond


def trickle_headers(fault: Fault) -> Callable[[BaseHTTPRequestHandler, int], None]:
    def respond(h: BaseHTTPRequestHandler, n: int) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
            if fault.stop.wait(0.2):
                return
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
    return respond


def status(code: int, body: bytes = b'{"error": {"message": "boom"}}',
           headers: dict[str, str] | None = None) -> Callable[[Fault], Callable[[BaseHTTPRequestHandler, int], None]]:
    def make(fault: Fault) -> Callable[[BaseHTTPRequestHandler, int], None]:
        return lambda h, n: send(h, code, body, headers=headers)
    return make


Respond = Callable[[BaseHTTPRequestHandler, int], None]


def ok(payload: object, ctype: str = "application/json") -> Callable[[Fault], Respond]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()

    def make(fault: Fault) -> Callable[[BaseHTTPRequestHandler, int], None]:
        return lambda h, n: send(h, 200, body, ctype)
    return make


WRONG_LOGPROBS = completion("A", {"content": [{"token": "A", "logprob": "high",
                                               "top_logprobs": [{"token": 7, "logprob": [1]}, "B", None]}]})
FAULTS = {
    "never-answers": never,
    "trickles-body": trickle_body,
    "trickles-headers": trickle_headers,
    "http-500": status(500),
    "429-retry-after-beyond-deadline": status(429, headers={"Retry-After": "30"}),
    "empty-object": ok({}),
    "choices-null": ok({"choices": None}),
    "html-body": ok(b"<html><body>502 Bad Gateway</body></html>", "text/html"),
    "wrong-logprob-types": ok(WRONG_LOGPROBS),
    "logprobs-not-a-dict": ok(completion("A", ["A", -0.1])),
    "not-json": ok(b"{\"choices\": [", "application/json"),
}


@pytest.fixture()
def server() -> Iterator[Callable[..., tuple[str, Fault]]]:
    started: list[tuple[ThreadingHTTPServer, Fault]] = []

    def start(kind: Callable[[Fault], Callable[[BaseHTTPRequestHandler, int], None]],
              tokenize: bool = False) -> tuple[str, Fault]:
        """A server playing `kind`; without `tokenize`, its /tokenize endpoint is absent (404, not counted),
        so the client estimates token counts and `fault` sees only the LLM calls."""
        fault = Fault(lambda h, n: None)
        fault.respond = kind(fault)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                self.body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.endswith("/tokenize") and not tokenize:
                    send(self, 404, b'{"detail": "Not Found"}')
                    return
                fault.calls += 1
                try:
                    fault.respond(self, fault.calls)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append((httpd, fault))
        return f"http://127.0.0.1:{httpd.server_address[1]}/v1", fault

    yield start
    for httpd, fault in started:
        fault.stop.set()
        httpd.shutdown()
        httpd.server_close()


def client_for(url: str, timeout_s: float = TIMEOUT_S) -> LLMClient:
    return make_client(LLMSettings(backend="vllm", base_url=url, model="m", timeout_s=timeout_s))


@pytest.fixture()
def catalog() -> Catalog:
    return Catalog([Item(id=f"i{n}", title=f"Film {n}", categories=("Drama" if n % 2 else "Comedy",))
                    for n in range(12)])


def history() -> list[Event]:
    t0 = datetime(1998, 1, 1, tzinfo=UTC)
    return [Event(user="u", item=f"i{n}", timestamp=t0 + timedelta(days=n), rating=4.0) for n in range(4)]


CANDIDATES = [Candidate(f"i{n}", 1.0 - 0.05 * n, "interest") for n in range(4, 12)]


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_every_fault_gives_the_retrieval_ranking_by_the_deadline_flagged(name, server, catalog) -> None:  # type: ignore[no-untyped-def]
    url, fault = server(FAULTS[name])
    reranker = LLMReranker(client_for(url), catalog)
    start = time.perf_counter()
    result = reranker.rerank(history(), CANDIDATES)
    elapsed = time.perf_counter() - start
    assert result.item_ids == [c.item_id for c in CANDIDATES]  # retrieval order, nothing lost or foreign
    assert result.fallback and result.errors, result
    assert fault.calls >= 1
    # Timeouts stop at the first call; unreadable replies are re-asked (json method) and each is fast.
    # The server is first asked to count the prompt's tokens (up to TOKENIZE_TIMEOUT_S), then to rerank.
    assert elapsed < TOKENIZE_TIMEOUT_S + TIMEOUT_S + SLACK_S, f"{name}: {elapsed:.1f} s"


@pytest.mark.parametrize("name", ["empty-object", "html-body", "wrong-logprob-types", "not-json"])
def test_unreadable_replies_count_as_invalid_outputs_and_are_re_asked(name, server, catalog) -> None:  # type: ignore[no-untyped-def]
    url, fault = server(FAULTS[name])
    result = LLMReranker(client_for(url), catalog).rerank(history(), CANDIDATES)
    assert result.invalid_outputs >= 2 and result.retries >= 1
    assert fault.calls >= 3  # logprobs once, json first try and its re-asks


def test_timeouts_raise_the_timeout_error_within_the_deadline(server) -> None:  # type: ignore[no-untyped-def]
    for kind in ("never-answers", "trickles-body", "trickles-headers"):
        url, _ = server(FAULTS[kind])
        start = time.perf_counter()
        with pytest.raises(LLMTimeoutError):
            client_for(url, timeout_s=1.0).chat([HumanMessage("hi")], max_tokens=4)
        assert time.perf_counter() - start < 1.0 + SLACK_S, kind


def test_429_is_retried_after_its_retry_after_within_the_deadline(server) -> None:  # type: ignore[no-untyped-def]
    def once_then_ok(fault: Fault) -> Callable[[BaseHTTPRequestHandler, int], None]:
        def respond(h: BaseHTTPRequestHandler, n: int) -> None:
            if n == 1:
                send(h, 429, b'{"error": {"message": "slow down"}}', headers={"Retry-After": "0.3"})
            else:
                send(h, 200, json.dumps(completion("fine")).encode())
        return respond

    url, fault = server(once_then_ok)
    start = time.perf_counter()
    reply = client_for(url, timeout_s=3.0).chat([HumanMessage("hi")], max_tokens=4)
    assert reply.text == "fine" and fault.calls == 2
    assert 0.3 <= time.perf_counter() - start < 3.0


def test_a_retry_after_beyond_the_deadline_fails_at_once(server) -> None:  # type: ignore[no-untyped-def]
    url, fault = server(FAULTS["429-retry-after-beyond-deadline"])
    start = time.perf_counter()
    with pytest.raises(LLMError) as info:
        client_for(url, timeout_s=3.0).chat([HumanMessage("hi")], max_tokens=4)
    assert not isinstance(info.value, LLMReplyError)
    assert fault.calls == 1 and time.perf_counter() - start < 1.5


def test_a_spent_recommendation_budget_gives_flagged_templates_in_time(server, catalog) -> None:  # type: ignore[no-untyped-def]
    url, fault = server(FAULTS["never-answers"])
    client = client_for(url, timeout_s=1.0)
    events = history() + [Event(user="v", item=f"i{n}", timestamp=datetime(1998, 2, n + 1, tzinfo=UTC))
                          for n in range(6, 12)]
    dataset = Dataset(catalog, events, name="tiny")
    agent = RecommenderAgent(dataset, PopularityGenerator(dataset.histories), client=client,
                             reranker=LLMReranker(client, catalog), explainer=Explainer(catalog, client),
                             config=AgentConfig(llm_budget_s=2.5))
    start = time.perf_counter()
    rec = agent.recommend("u", k=5)
    elapsed = time.perf_counter() - start
    assert len(rec.items) == 5 and rec.diagnostics.rerank is not None and rec.diagnostics.rerank.fallback
    assert all(e.text.source == "template" for e in rec.explanations)
    assert rec.diagnostics.explanations_template == 5
    assert any("budget" in err for e in rec.explanations for err in e.text.errors)
    # rerank 1 s + first explanation 1 s, then the budget is spent: no more calls.
    assert elapsed < 2.5 + SLACK_S, f"{elapsed:.1f} s"
    assert fault.calls <= 3


def test_budgets_nest_and_the_tighter_wins() -> None:
    assert remaining() is None and not expired()
    with budget(10.0):
        with budget(0.0):
            assert expired()
        left = remaining()
        assert left is not None and 9.0 < left <= 10.0
        with budget(None):
            assert remaining() is not None  # None adds no limit but keeps the outer one
    assert remaining() is None


def test_the_api_key_comes_from_the_environment_or_the_setting_and_never_shows(
        server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    seen: list[str | None] = []

    def capture(fault: Fault) -> Respond:
        def respond(h: BaseHTTPRequestHandler, n: int) -> None:
            seen.append(h.headers.get("Authorization"))
            send(h, 200, json.dumps(completion("ok")).encode())
        return respond

    url, _ = server(capture)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("DRIFTREC_LLM_API_KEY", "sk-driftrec")
    from_env = LLMSettings(backend="vllm", base_url=url, model="m")
    make_client(from_env).chat([HumanMessage("hi")], max_tokens=4)
    monkeypatch.delenv("DRIFTREC_LLM_API_KEY")
    make_client(from_env).chat([HumanMessage("hi")], max_tokens=4)
    given = LLMSettings(backend="vllm", base_url=url, model="m", api_key="sk-given")
    make_client(given).chat([HumanMessage("hi")], max_tokens=4)
    assert seen == ["Bearer sk-driftrec", "Bearer sk-openai", "Bearer sk-given"]
    assert "sk-given" not in repr(given) and "sk-given" not in given.model_dump_json()


def test_server_backends_count_tokens_with_the_servers_tokenizer_and_estimate_when_it_fails(
        server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from agent.llm.backends import openai as backend
    from agent.llm.client import estimate_tokens

    monkeypatch.setattr(backend, "_COUNTS", {})
    monkeypatch.setattr(backend, "_NO_TOKENIZE", set())
    asked: list[tuple[str, dict[str, object], str | None]] = []

    def tokenizer(fault: Fault) -> Respond:
        def respond(h: BaseHTTPRequestHandler, n: int) -> None:
            body = json.loads(h.body)  # type: ignore[attr-defined]
            asked.append((h.path, body, h.headers.get("Authorization")))
            words = len(str(body.get("prompt", body.get("content", ""))).split())
            send(h, 200, json.dumps({"count": words, "tokens": list(range(words))}).encode())
        return respond

    url, _ = server(tokenizer, tokenize=True)
    for kind, text in (("vllm", "one two three"), ("llamacpp-server", "four five")):
        client = make_client(LLMSettings(backend=kind, base_url=url, model="m", api_key="sk-k"))
        assert client.count_tokens(text) == len(text.split())
        assert client.count_tokens(text) == len(text.split())  # remembered: no second request
    assert [(path, auth) for path, _, auth in asked] == [("/tokenize", "Bearer sk-k")] * 2
    assert asked[0][1] == {"model": "m", "prompt": "one two three", "add_special_tokens": False}
    assert asked[1][1] == {"content": "four five"}

    url, fault = server(status(404), tokenize=True)  # a server without the endpoint: estimated, asked only once
    client = make_client(LLMSettings(backend="vllm", base_url=url, model="m"))
    text = "a fairly long line of text " * 4
    assert client.count_tokens(text) == estimate_tokens(text)
    assert client.count_tokens(text + "!") == estimate_tokens(text + "!")
    assert fault.calls == 1
    hosted = make_client(LLMSettings(backend="openai", base_url=url, model="m"))
    assert hosted.count_tokens(text) == estimate_tokens(text) and fault.calls == 1  # no endpoint to ask


def test_a_429_then_success_is_retried_and_counted_in_the_rerank_flags(server, catalog) -> None:  # type: ignore[no-untyped-def]
    def once_then_ok(fault: Fault) -> Respond:
        def respond(h: BaseHTTPRequestHandler, n: int) -> None:
            if n == 1:
                send(h, 429, b'{"error": {"message": "slow down"}}', headers={"Retry-After": "0.2"})
            else:
                send(h, 200, json.dumps(completion("B")).encode())
        return respond

    url, fault = server(once_then_ok)
    start = time.perf_counter()
    result = LLMReranker(client_for(url, timeout_s=3.0), catalog).rerank(history(), CANDIDATES)
    assert not result.fallback and result.method == "logprobs"
    assert result.backend_retries == 1 and fault.calls == 2
    assert 0.2 <= time.perf_counter() - start < 3.0
    assert result.item_ids[0] == "i4"  # label A (-0.1) is the most likely: the retriever's first


def completions_echo(prompts_prefix_len: int) -> Callable[[Fault], Respond]:
    """A /completions server that echoes 3 prompts: prefix tokens, then 2 continuation tokens each."""
    def make(fault: Fault) -> Respond:
        def respond(h: BaseHTTPRequestHandler, n: int) -> None:
            assert h.path.endswith("/completions"), h.path
            choices = []
            for k, (a, b) in enumerate([(-1.0, -2.0), (-0.5, -0.25), (-3.0, -3.0)]):
                p = prompts_prefix_len
                choices.append({"index": k, "text": "x", "finish_reason": "length", "logprobs": {
                    "tokens": ["Hi", "\n", '"A', 'b"', "x"], "text_offset": [0, p - 1, p, p + 2, p + 4],
                    "token_logprobs": [None, -9.0, a, b, -0.1], "top_logprobs": None}})
            body = {"id": "c", "object": "text_completion", "created": 0, "model": "m", "choices": choices,
                    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}
            send(h, 200, json.dumps(body).encode())
        return respond
    return make


def test_continuation_scores_come_from_the_completions_api_echo(server) -> None:  # type: ignore[no-untyped-def]
    url, fault = server(completions_echo(len("Hi\n")))
    client = client_for(url, timeout_s=3.0)
    assert client.capabilities.prompt_logprobs
    reply = client.score_continuations("Hi\n", ['"Ab"', '"Ab"', '"Ab"'])
    # Only the tokens inside the continuation count: not the prefix's, not the generated one.
    assert reply.logprobs == pytest.approx((-3.0, -0.75, -6.0)) and reply.tokens == (2, 2, 2)
    assert reply.prompt_tokens == 12 and fault.calls == 1


@pytest.mark.parametrize("name", ["never-answers", "http-500", "not-json"])
def test_pointwise_rerank_on_a_bad_server_falls_back_by_the_deadline(name, server, catalog) -> None:  # type: ignore[no-untyped-def]
    from agent.rerank import RerankConfig

    url, fault = server(FAULTS[name])
    reranker = LLMReranker(client_for(url), catalog, RerankConfig(method="pointwise"))
    start = time.perf_counter()
    result = reranker.rerank(history(), CANDIDATES)
    elapsed = time.perf_counter() - start
    assert result.item_ids == [c.item_id for c in CANDIDATES] and result.fallback
    assert result.errors and elapsed < 2 * TIMEOUT_S + SLACK_S, f"{elapsed:.1f} s"
