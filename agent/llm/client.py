"""The one typed call path to a chat model: `LLMClient.chat`, with its capabilities and response cache.

Any LangChain `BaseChatModel` can be wrapped (the registered backends live in `agent.llm.backends`);
its capabilities are read from its `supports_*` attributes when present, else assumed absent.

`LLMClient.chat` returns a typed `ChatReply` (text, next-token logprobs, tool calls, prompt tokens,
latency, cache hit) or raises `LLMError`: `LLMTimeoutError` when the call's deadline passed,
`LLMReplyError` when the backend answered something that cannot be read, plain `LLMError` otherwise
(server down, HTTP error). Each call ends by its deadline: `timeout_s` from its start, or the caller's
tighter budget (`agent.llm.deadline`), connect, read and retries included.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from agent.llm.deadline import budget, remaining
from retrieval.errors import LLMError, LLMReplyError, LLMTimeoutError
from retrieval.log import get_logger

log = get_logger(__name__)

# Characters per token assumed when no tokenizer is available: 3 over-counts English BPE text
# (~4 chars/token), so budgets computed with it are conservative.
CHARS_PER_TOKEN = 3
# Attempts per call when the server says "later" (HTTP 429 or 5xx), all within the call's deadline.
MAX_ATTEMPTS = 3
# A call slower than this is logged at WARNING with its latency (LLMClient.slow_call_s overrides it).
SLOW_CALL_S = 10.0
# Concurrent calls for a model that does not declare `max_concurrency` (a server batches them).
SERVER_CONCURRENCY = 8
# HTTP statuses worth one more attempt: rate limited, server busy or restarting.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# What reading a malformed reply raises (missing keys, None where a list was, wrong types, bad JSON,
# pydantic validation). Anything else from a backend (RuntimeError, AssertionError...) is a bug and
# propagates.
REPLY_ERRORS: tuple[type[Exception], ...] = (KeyError, TypeError, ValueError, AttributeError, IndexError)


@dataclass(frozen=True)
class Capabilities:
    """What a backend supports; the reranker and agent pick the best method from these."""

    logprobs: bool = False
    json_schema: bool = False
    grammar: bool = False
    tools: bool = False
    json_mode: bool = False
    prompt_logprobs: bool = False

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The capability names, as `LLMSettings.capabilities` and `--llm-capabilities` accept them."""
        return tuple(cls.__dataclass_fields__)


def capabilities(model: BaseChatModel) -> Capabilities:
    """Capabilities declared by a chat model's `supports_*` attributes (absent = False).

    `prompt_logprobs` also needs the model to implement `score_continuations` (see `LLMClient.score_continuations`).
    """
    def flag(name: str) -> bool:
        return bool(getattr(model, f"supports_{name}", False))

    return Capabilities(flag("logprobs"), flag("json_schema"), flag("grammar"), flag("tools"), flag("json_mode"),
                        flag("prompt_logprobs") and callable(getattr(model, "score_continuations", None)))


@dataclass(frozen=True)
class ToolCall:
    """One function call the model made.

    Attributes:
        name: the called tool's name (unchecked: callers validate it against their tools).
        args: the call's arguments.
    """

    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatReply:
    """One model reply.

    Attributes:
        text: generated text ("" when the model returned nothing).
        top_logprobs: for the FIRST generated position, token text → logprob (empty unless asked).
        prompt_tokens: tokens in the prompt (reported by the backend, else estimated).
        latency_s: wall time of the call (of the original call when served from cache).
        cached: True when served from the response cache.
        message: the raw LangChain message (None when cached).
        tool_calls: the function calls the model made (also when served from cache).
        attempts: HTTP attempts the call took (> 1 after a retried 429/5xx; 1 when cached).
    """

    text: str
    top_logprobs: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    message: AIMessage | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    attempts: int = 1


@dataclass(frozen=True)
class ScoreReply:
    """Log-likelihoods of continuations of one prefix (`LLMClient.score_continuations`).

    Attributes:
        logprobs: per continuation, the summed log-probability of its tokens after the prefix, shape (n,).
        tokens: per continuation, its token count, shape (n,).
        prompt_tokens: tokens the backend evaluated for the call (prefix once + continuations).
        latency_s: wall time of the call (of the original call when served from cache).
        cached: True when served from the response cache.
        attempts: HTTP attempts the call took (> 1 after a retried 429/5xx).
    """

    logprobs: tuple[float, ...]
    tokens: tuple[int, ...]
    prompt_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    attempts: int = 1


def estimate_tokens(text: str) -> int:
    """Conservative token count without a tokenizer."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def count_tokens(model: BaseChatModel | None, text: str) -> int:
    """Tokens of `text` with the model's own tokenizer when it has one (`count_tokens`), else estimated.

    LangChain's generic `get_num_tokens` is not used: it fetches a GPT-2 tokenizer from the hub.
    """
    counter = getattr(model, "count_tokens", None) if model is not None else None
    if callable(counter):
        return int(counter(text))
    return estimate_tokens(text)


def model_id(model: BaseChatModel) -> str:
    """A stable identity of the model for cache keys: class plus model name/path and server URL."""
    parts = [type(model).__name__]
    for attr in ("model_id", "model_name", "model", "model_path", "openai_api_base"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            parts.append(value)
    return "|".join(parts)


def parse_top_logprobs(message: AIMessage) -> dict[str, float]:
    """First-position top logprobs from an OpenAI-format `response_metadata["logprobs"]`.

    Token texts are kept as returned (" A" and "A" are distinct); callers normalise.
    Entries of the wrong shape or type are skipped (a server's bug must not become ours); an empty
    result means "no usable logprobs" and the caller decides.
    """
    meta = message.response_metadata.get("logprobs") or {}
    content = meta.get("content") if isinstance(meta, Mapping) else None
    if not isinstance(content, list) or not content or not isinstance(content[0], Mapping):
        return {}
    first = content[0]
    out: dict[str, float] = {}
    entries = first.get("top_logprobs")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            continue
        token, lp = entry.get("token"), entry.get("logprob")
        if isinstance(token, str) and _is_logprob(lp):
            out[token] = max(float(lp), out.get(token, -math.inf))
    if not out and isinstance(first.get("token"), str) and _is_logprob(first.get("logprob")):
        out[first["token"]] = float(first["logprob"])
    return out


def _is_logprob(value: object) -> TypeGuard[float]:
    """A finite number ≤ 0 (not a bool): what a log-probability can be."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value <= 0 and math.isfinite(value)


def to_messages(system: str | None, user: str) -> list[BaseMessage]:
    """A [system, user] message list (system omitted when None)."""
    out: list[BaseMessage] = [SystemMessage(system)] if system else []
    out.append(HumanMessage(user))
    return out


def transient_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "this call failed" (timeout, connection, HTTP, bad request), not a bug."""
    errors: list[type[BaseException]] = [TimeoutError, ConnectionError, OSError]
    try:
        import openai

        # OpenAIError, not APIError: LengthFinishReasonError (a structured reply cut at max_tokens)
        # derives from OpenAIError only, and it is a failed call, not a bug.
        errors.append(openai.OpenAIError)
    except ImportError:
        pass
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


class LLMClient:
    """A chat model plus its capabilities and an optional response cache. The one call path.

    Thread-safe when its model is (the embedded and server backends are; the cache is).

    Args:
        model: any LangChain chat model.
        cache: optional `agent.llm.cache.ResponseCache`; replies are keyed by (model, messages, params).
        max_logprobs: most alternatives a backend returns per position (OpenAI-compatible servers: 20).
        timeout_s: deadline of one call, retries included (`LLMSettings.timeout_s`); a caller's
            tighter budget (`agent.llm.deadline.budget`) wins.
    """

    def __init__(self, model: BaseChatModel, cache: Any = None, max_logprobs: int | None = None,
                 timeout_s: float = 60.0) -> None:
        self.model = model
        self.capabilities = capabilities(model)
        self.cache = cache
        self.model_id = model_id(model)
        self.max_logprobs = max_logprobs or int(getattr(model, "max_top_logprobs", 20))
        self.timeout_s = timeout_s
        self.slow_call_s = SLOW_CALL_S
        self._errors = transient_errors()
        # The model's own sampling settings belong in the cache key: another temperature or seed is
        # another answer.
        self._sampling = {name: value for name in ("temperature", "seed", "top_p", "top_k")
                          if isinstance(value := getattr(model, name, None), int | float)
                          and not isinstance(value, bool)}

    def __repr__(self) -> str:
        return f"<LLMClient {self.model_id} {self.capabilities}>"

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` with the model's tokenizer when available, else a conservative estimate."""
        return count_tokens(self.model, text)

    def chat(self, messages: Sequence[BaseMessage], *, max_tokens: int = 256, top_logprobs: int = 0,
             json_schema: Mapping[str, Any] | None = None, json_mode: bool = False,
             tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: str = "auto") -> ChatReply:
        """Send messages; return the typed reply, by the call's deadline.

        Args:
            messages: the conversation.
            max_tokens: generation cap.
            top_logprobs: when > 0, ask for that many next-token alternatives at the first position
                (capped at `max_logprobs`); needs `capabilities.logprobs`.
            json_schema: constrain the output to this JSON schema where the backend can
                (json_schema or grammar capability; json_mode falls back to any JSON object).
            json_mode: ask for a JSON object (no schema) where supported.
            tools: OpenAI-format function specs offered to the model (sent whatever the declared
                capabilities: the caller decided to use tools); the calls come back in `tool_calls`.
            tool_choice: with `tools`: "auto", "required", "none" or a tool name.

        Raises:
            LLMTimeoutError: the deadline passed (before or during the call).
            LLMReplyError: the backend's reply could not be read.
            LLMError: the backend is unreachable or failed.
        """
        kwargs = self._call_kwargs(max_tokens, top_logprobs, json_schema, json_mode, tools, tool_choice)
        key = None
        if self.cache is not None:
            key = self.cache.key(self.model_id, [_message_dict(m) for m in messages], {**kwargs, **self._sampling})
            hit = self.cache.get(key)
            if hit is not None:
                return ChatReply(text=hit["text"], top_logprobs=hit["top_logprobs"],
                                 prompt_tokens=hit["prompt_tokens"], latency_s=hit["latency_s"], cached=True,
                                 tool_calls=tuple(ToolCall(c["name"], c["args"]) for c in hit.get("tool_calls", [])))
        start = time.perf_counter()
        with budget(self.timeout_s):
            message, attempts = self._invoke(messages, kwargs)
            latency = time.perf_counter() - start
            self._log_call(latency, len(messages))
            try:
                reply = self._reply(message, messages, latency, top_logprobs > 0, attempts)
            except REPLY_ERRORS as exc:  # a malformed reply: the caller re-asks or falls back
                raise LLMReplyError(f"{self.model_id}: unreadable reply: {type(exc).__name__}: {exc}") from exc
        if self.cache is not None and key is not None:
            value: dict[str, Any] = {"text": reply.text, "top_logprobs": reply.top_logprobs,
                                     "prompt_tokens": reply.prompt_tokens, "latency_s": reply.latency_s}
            if reply.tool_calls:  # only then: entries without tool calls keep the layout of earlier runs
                value["tool_calls"] = [{"name": c.name, "args": c.args} for c in reply.tool_calls]
            self.cache.put(key, value)
        return reply

    def _log_call(self, latency: float, n_messages: int) -> None:
        """Latency of one model call: WARNING over `slow_call_s`, else DEBUG (never the message text)."""
        if latency >= self.slow_call_s:
            log.warning("%s: slow call: %.1f s (threshold %.1f s, %d messages)", self.model_id, latency,
                        self.slow_call_s, n_messages)
        else:
            log.debug("%s: call took %.2f s (%d messages)", self.model_id, latency, n_messages)

    def _invoke(self, messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> tuple[Any, int]:
        """`model.invoke` and the attempts it took, retried on HTTP 429/5xx while the deadline allows."""
        return self._retrying(lambda: self.model.invoke(list(messages), **kwargs))

    def _retrying(self, call: Callable[[], Any]) -> tuple[Any, int]:
        """`call()` and the attempts it took, retried on HTTP 429/5xx while the deadline allows.

        Raises:
            LLMTimeoutError / LLMReplyError / LLMError: as `chat`.
        """
        for attempt in range(MAX_ATTEMPTS):
            left = remaining()
            if left is not None and left <= 0:
                raise LLMTimeoutError(f"{self.model_id}: no time left for the call (deadline passed)")
            try:
                return call(), attempt + 1
            except LLMError:
                raise
            except self._errors as exc:
                if type(exc).__name__ == "APIResponseValidationError":  # openai: a 2xx body of the wrong shape
                    raise LLMReplyError(f"{self.model_id}: unreadable reply: {str(exc)[:300]}") from exc
                if _is_timeout(exc):
                    raise LLMTimeoutError(f"{self.model_id}: timed out: {type(exc).__name__}: {exc}") from exc
                delay = _retry_delay(exc, attempt)
                left = remaining()
                if delay is None or attempt + 1 == MAX_ATTEMPTS or (left is not None and delay >= left):
                    raise LLMError(f"{self.model_id}: {type(exc).__name__}: {str(exc)[:300]}") from exc
                log.info("%s: %s; retrying in %.1f s", self.model_id, type(exc).__name__, delay)
                time.sleep(delay)
            except REPLY_ERRORS as exc:  # the server answered but the backend could not parse it
                log.debug("unreadable reply from %s", self.model_id, exc_info=True)
                raise LLMReplyError(f"{self.model_id}: unreadable reply: {type(exc).__name__}: "
                                    f"{str(exc)[:300]}") from exc
        raise AssertionError("unreachable: the loop returns or raises")

    def score_continuations(self, prefix: str, continuations: Sequence[str]) -> ScoreReply:
        """Log-likelihood of each continuation as the text right after `prefix` (plain text, no chat template).

        One call: the backend evaluates the prefix once and every continuation after it (the embedded
        model reuses its KV cache; vLLM's completions API with `echo` and prefix caching). Needs
        `capabilities.prompt_logprobs`. Cached, retried and bounded by the deadline like `chat`.

        Raises:
            LLMError: no prompt-logprob capability, backend failure or timeout (as `chat`).
            LLMReplyError: the reply had no usable logprobs for some continuation.
        """
        if not self.capabilities.prompt_logprobs:
            raise LLMError(f"{self.model_id} does not score continuations (no prompt_logprobs capability)")
        key = None
        if self.cache is not None:
            key = self.cache.key(self.model_id, [{"role": "score", "content": prefix}],
                                 {"continuations": list(continuations), "kind": "score_continuations"})
            hit = self.cache.get(key)
            if hit is not None:
                return ScoreReply(tuple(hit["logprobs"]), tuple(hit["tokens"]), hit["prompt_tokens"],
                                  hit["latency_s"], cached=True)
        start = time.perf_counter()
        with budget(self.timeout_s):
            scorer = self.model.score_continuations  # type: ignore[attr-defined]
            (values, counts, prompt_tokens), attempts = self._retrying(lambda: scorer(prefix, list(continuations)))
        latency = time.perf_counter() - start
        self._log_call(latency, 1)
        if len(values) != len(continuations) or not all(_is_logprob(v) for v in values):
            raise LLMReplyError(f"{self.model_id}: continuation scores unusable: {list(values)[:4]}")
        reply = ScoreReply(tuple(float(v) for v in values), tuple(int(c) for c in counts), int(prompt_tokens),
                           latency, attempts=attempts)
        if self.cache is not None and key is not None:
            self.cache.put(key, {"logprobs": list(reply.logprobs), "tokens": list(reply.tokens),
                                 "prompt_tokens": reply.prompt_tokens, "latency_s": reply.latency_s})
        return reply

    @property
    def default_concurrency(self) -> int:
        """Concurrent calls worth making: the model's `max_concurrency` (embedded: 1), else `SERVER_CONCURRENCY`."""
        value = getattr(self.model, "max_concurrency", None)
        return int(value) if isinstance(value, int) and value >= 1 else SERVER_CONCURRENCY

    def _reply(self, message: Any, messages: Sequence[BaseMessage], latency: float,
               want_logprobs: bool, attempts: int = 1) -> ChatReply:
        if not isinstance(message, AIMessage):
            raise TypeError(f"expected an AIMessage, got {type(message).__name__}")
        text = message.content if isinstance(message.content, str) else json.dumps(message.content)
        reported = message.usage_metadata["input_tokens"] if message.usage_metadata else 0
        prompt_tokens = int(reported or 0) or sum(self.count_tokens(str(m.content)) for m in messages)
        calls = tuple(ToolCall(str(c["name"]), dict(c["args"] or {})) for c in message.tool_calls)
        return ChatReply(text=text, top_logprobs=parse_top_logprobs(message) if want_logprobs else {},
                         prompt_tokens=prompt_tokens, latency_s=latency, message=message, tool_calls=calls,
                         attempts=attempts)

    def _call_kwargs(self, max_tokens: int, top_logprobs: int, json_schema: Mapping[str, Any] | None,
                     json_mode: bool, tools: Sequence[Mapping[str, Any]] | None = None,
                     tool_choice: str = "auto") -> dict[str, Any]:
        caps = self.capabilities
        kwargs: dict[str, Any] = {"max_tokens": max_tokens}
        if top_logprobs and caps.logprobs:
            kwargs.update(logprobs=True, top_logprobs=min(top_logprobs, self.max_logprobs))
        if json_schema is not None and caps.json_schema:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "reply", "schema": dict(json_schema)}}
        elif json_schema is not None and caps.grammar:
            kwargs["json_schema"] = dict(json_schema)
        elif (json_schema is not None or json_mode) and caps.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        if tools is not None:
            kwargs.update(tools=[dict(t) for t in tools], tool_choice=tool_choice)
        return kwargs


def _is_timeout(exc: BaseException) -> bool:
    """A timeout of any layer (builtin, httpx, openai): the deadline is spent, a retry cannot help."""
    return isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__


def _retry_delay(exc: BaseException, attempt: int) -> float | None:
    """Seconds to wait before retrying after an HTTP 429/5xx (its Retry-After, else backoff); None: do not retry."""
    status = getattr(exc, "status_code", None)
    if status not in RETRY_STATUSES:
        return None
    response = getattr(exc, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    try:
        after = float(header) if header is not None else None
    except ValueError:  # an HTTP date: not worth parsing, back off instead
        after = None
    return max(0.0, after) if after is not None and math.isfinite(after) else 0.5 * 2 ** attempt


def _message_dict(message: BaseMessage) -> dict[str, str]:
    return {"role": message.type, "content": str(message.content)}
