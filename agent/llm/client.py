"""LLM backends behind LangChain chat models, their declared capabilities, and one typed call path.

Backends (chosen by name, see `BACKENDS`):
    embedded         llama.cpp in-process on a GGUF shipped in a PyPI package (`EmbeddedChatModel`)
    vllm             vLLM's OpenAI-compatible server by URL (JSON schema + logprobs)
    llamacpp-server  llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`; json_object only)
    openai           any OpenAI-compatible endpoint, no optional capability assumed
    fake             `tests.fakes.FakeChatModel`-style scripted replies (for tests and demos)
Any `BaseChatModel` object may also be passed in directly; its capabilities are read from the
`supports_*` attributes when present, else assumed absent.

Every call goes through `LLMClient.chat`, which returns a typed `ChatReply` (text, next-token
logprobs, prompt tokens, latency, cache hit) or raises `LLMError` (timeout, server down, bad reply).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from retrieval.errors import ConfigError, LLMError, MissingDependencyError

# Characters per token assumed when no tokenizer is available: 3 over-counts English BPE text
# (~4 chars/token), so budgets computed with it are conservative.
CHARS_PER_TOKEN = 3


class LLMSettings(BaseModel):
    """How to build a chat model. Built once at the edge (CLI, harness) and passed in.

    Attributes:
        backend: backend name, one of `BACKENDS`.
        model: embedded: a packaged model name (see `agent.llm.packaged.PACKAGED`) or a GGUF path;
            servers: the served model name.
        base_url: server URL, e.g. "http://127.0.0.1:8000/v1" (server backends only).
        api_key: sent to OpenAI-compatible servers (local servers ignore it).
        temperature: sampling temperature; 0 = greedy (reproducible).
        max_tokens: default generation cap.
        timeout_s: per-request timeout for server backends.
        n_ctx: embedded context window in tokens.
        n_threads: embedded CPU threads (None = llama.cpp's default).
        seed: sampling seed.
        cache_dir: directory of the on-disk response cache (None = no cache).
        cpu_format: embedded: convert the GGUF once to this llama.cpp type for faster CPU inference
            ("original", "q8_0", "q4_0", "f16"); None = `agent.llm.packaged.DEFAULT_CPU_FORMAT` for
            packaged models and "original" for GGUF paths the caller gives.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str = "embedded"
    model: str | None = None
    base_url: str | None = None
    api_key: str = "not-needed"
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=256, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)
    n_ctx: int = Field(default=4096, gt=0)
    n_threads: int | None = None
    seed: int = 0
    cache_dir: Path | None = None
    cpu_format: Literal["original", "q8_0", "q4_0", "f16"] | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a backend supports; the reranker and agent pick the best method from these."""

    logprobs: bool = False
    json_schema: bool = False
    grammar: bool = False
    tools: bool = False
    json_mode: bool = False


def capabilities(model: BaseChatModel) -> Capabilities:
    """Capabilities declared by a chat model's `supports_*` attributes (absent = False)."""
    def flag(name: str) -> bool:
        return bool(getattr(model, f"supports_{name}", False))

    return Capabilities(flag("logprobs"), flag("json_schema"), flag("grammar"), flag("tools"), flag("json_mode"))


@dataclass(frozen=True)
class ChatReply:
    """One model reply.

    Attributes:
        text: generated text ("" when the model returned nothing).
        top_logprobs: for the FIRST generated position, token text → logprob (empty unless asked).
        prompt_tokens: tokens in the prompt (reported by the backend, else estimated).
        latency_s: wall time of the call (of the original call when served from cache).
        cached: True when served from the response cache.
        message: the raw LangChain message (None when cached), e.g. for tool calls.
    """

    text: str
    top_logprobs: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    message: AIMessage | None = None


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
    """
    meta = message.response_metadata.get("logprobs") or {}
    content = meta.get("content") if isinstance(meta, Mapping) else None
    if not content:
        return {}
    first = content[0]
    out: dict[str, float] = {}
    for entry in first.get("top_logprobs") or []:
        token, lp = entry.get("token"), entry.get("logprob")
        if isinstance(token, str) and isinstance(lp, int | float):
            out[token] = max(float(lp), out.get(token, -math.inf))
    if not out and isinstance(first.get("token"), str):
        out[first["token"]] = float(first.get("logprob", 0.0))
    return out


def to_messages(system: str | None, user: str) -> list[BaseMessage]:
    """A [system, user] message list (system omitted when None)."""
    out: list[BaseMessage] = [SystemMessage(system)] if system else []
    out.append(HumanMessage(user))
    return out


def _transient_errors() -> tuple[type[BaseException], ...]:
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

    Args:
        model: any LangChain chat model.
        cache: optional `agent.llm.cache.ResponseCache`; replies are keyed by (model, messages, params).
        max_logprobs: most alternatives a backend returns per position (OpenAI-compatible servers: 20).
    """

    def __init__(self, model: BaseChatModel, cache: Any = None, max_logprobs: int | None = None) -> None:
        self.model = model
        self.capabilities = capabilities(model)
        self.cache = cache
        self.model_id = model_id(model)
        self.max_logprobs = max_logprobs or int(getattr(model, "max_top_logprobs", 20))
        self._errors = _transient_errors()

    def __repr__(self) -> str:
        return f"<LLMClient {self.model_id} {self.capabilities}>"

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` with the model's tokenizer when available, else a conservative estimate."""
        return count_tokens(self.model, text)

    def chat(self, messages: Sequence[BaseMessage], *, max_tokens: int = 256, top_logprobs: int = 0,
             json_schema: Mapping[str, Any] | None = None, json_mode: bool = False) -> ChatReply:
        """Send messages; return the typed reply.

        Args:
            messages: the conversation.
            max_tokens: generation cap.
            top_logprobs: when > 0, ask for that many next-token alternatives at the first position
                (capped at `max_logprobs`); needs `capabilities.logprobs`.
            json_schema: constrain the output to this JSON schema where the backend can
                (json_schema or grammar capability; json_mode falls back to any JSON object).
            json_mode: ask for a JSON object (no schema) where supported.

        Raises:
            LLMError: the backend timed out, is unreachable or failed.
        """
        kwargs = self._call_kwargs(max_tokens, top_logprobs, json_schema, json_mode)
        key = None
        if self.cache is not None:
            key = self.cache.key(self.model_id, [_message_dict(m) for m in messages], kwargs)
            hit = self.cache.get(key)
            if hit is not None:
                return ChatReply(text=hit["text"], top_logprobs=hit["top_logprobs"],
                                 prompt_tokens=hit["prompt_tokens"], latency_s=hit["latency_s"], cached=True)
        start = time.perf_counter()
        try:
            message = self.model.invoke(list(messages), **kwargs)
        except self._errors as exc:
            raise LLMError(f"{self.model_id}: {type(exc).__name__}: {exc}") from exc
        latency = time.perf_counter() - start
        if not isinstance(message, AIMessage):
            raise LLMError(f"{self.model_id}: expected an AIMessage, got {type(message).__name__}")
        text = message.content if isinstance(message.content, str) else json.dumps(message.content)
        reported = message.usage_metadata["input_tokens"] if message.usage_metadata else 0
        prompt_tokens = int(reported or 0) or sum(
            self.count_tokens(str(m.content)) for m in messages)
        reply = ChatReply(text=text, top_logprobs=parse_top_logprobs(message) if top_logprobs else {},
                          prompt_tokens=prompt_tokens, latency_s=latency, message=message)
        if self.cache is not None and key is not None:
            self.cache.put(key, {"text": reply.text, "top_logprobs": reply.top_logprobs,
                                 "prompt_tokens": reply.prompt_tokens, "latency_s": reply.latency_s})
        return reply

    def _call_kwargs(self, max_tokens: int, top_logprobs: int, json_schema: Mapping[str, Any] | None,
                     json_mode: bool) -> dict[str, Any]:
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
        return kwargs


def _message_dict(message: BaseMessage) -> dict[str, str]:
    return {"role": message.type, "content": str(message.content)}


# --------------------------------------------------------------------------- embedded llama.cpp


class EmbeddedChatModel(BaseChatModel):
    """llama.cpp in-process (llama-cpp-python) on a GGUF file, as a LangChain chat model.

    Extra call kwargs (all optional): `max_tokens`, `logprobs` + `top_logprobs` (first-position
    alternatives from the last-token logits: ONE prefill, one "generated" token), `json_schema`
    (grammar-constrained output), `stop`. The KV cache is reused for the longest shared token
    prefix with the previous call, so prompts that put the shared history first are cheap to repeat.
    """

    supports_logprobs: ClassVar[bool] = True
    supports_json_schema: ClassVar[bool] = False
    supports_grammar: ClassVar[bool] = True
    supports_tools: ClassVar[bool] = False
    supports_json_mode: ClassVar[bool] = False
    max_top_logprobs: ClassVar[int] = 100

    model_path: str
    n_ctx: int = 4096
    n_threads: int | None = None
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int = 256
    _llm: Any = PrivateAttr(default=None)
    _format: Any = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "driftrec-embedded-llamacpp"

    @property
    def model_id(self) -> str:
        return Path(self.model_path).name

    def _load(self) -> Any:
        if self._llm is None:
            try:
                from llama_cpp import Llama
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter
            except ImportError as exc:
                raise MissingDependencyError(
                    "the embedded LLM backend needs llama-cpp-python: pip install 'driftrec[llm]'") from exc
            if not Path(self.model_path).is_file():
                raise ConfigError(f"GGUF model file not found: {self.model_path}")
            self._llm = Llama(model_path=self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                              seed=self.seed, verbose=False, logits_all=False)
            meta = self._llm.metadata
            template = meta.get("tokenizer.chat_template")
            if not template:
                raise ConfigError(f"{self.model_path} has no chat template (a base model?); use an instruct GGUF")
            vocab = self._llm._model
            eos = vocab.token_get_text(self._llm.token_eos()) if self._llm.token_eos() >= 0 else ""
            bos = vocab.token_get_text(self._llm.token_bos()) if self._llm.token_bos() >= 0 else ""
            self._format = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        return self._llm

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` under this model's tokenizer."""
        return len(self._load().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def prompt_tokens(self, messages: Sequence[BaseMessage]) -> list[int]:
        """The chat-templated prompt (with the assistant turn opened) as token ids."""
        llm = self._load()
        roles = {"system": "system", "human": "user", "ai": "assistant"}
        chat = [{"role": roles.get(m.type, "user"), "content": str(m.content)} for m in messages]
        prompt = self._format(messages=chat).prompt
        return llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        tokens = self.prompt_tokens(messages)
        if len(tokens) >= self.n_ctx:
            raise LLMError(f"prompt of {len(tokens)} tokens exceeds n_ctx={self.n_ctx}")
        try:
            if kwargs.get("logprobs"):
                message = self._first_token_logprobs(tokens, int(kwargs.get("top_logprobs") or 20))
            else:
                message = self._complete(tokens, stop, kwargs)
        except RuntimeError as exc:  # llama_decode failures surface as RuntimeError
            raise LLMError(f"llama.cpp failed: {exc}") from exc
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _first_token_logprobs(self, tokens: list[int], top: int) -> AIMessage:
        import numpy as np

        llm = self._load()
        # Keep the longest prefix already in the KV cache (at least one token must be evaluated).
        keep = 0
        for a, b in zip(llm._input_ids.tolist(), tokens[:-1], strict=False):
            if a != b:
                break
            keep += 1
        llm.n_tokens = keep
        llm.eval(tokens[keep:])
        # Without logits_all, llama.cpp keeps logits for the last token of the last batch only:
        # exactly the next-token distribution, at no cost for the other prompt positions.
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype(np.float64)
        logits = logits - logits.max()
        logp = logits - math.log(float(np.exp(logits).sum()))
        best = np.argsort(-logp)[:top]
        pieces = [(self._piece(int(t)), float(logp[t])) for t in best]
        entries: list[dict[str, Any]] = [{"token": tok, "logprob": lp} for tok, lp in pieces]
        content = [{"token": pieces[0][0], "logprob": pieces[0][1], "top_logprobs": entries}]
        return AIMessage(content=pieces[0][0], response_metadata={"logprobs": {"content": content}},
                         usage_metadata={"input_tokens": len(tokens), "output_tokens": 1,
                                         "total_tokens": len(tokens) + 1})

    def _piece(self, token: int) -> str:
        return self._load().detokenize([token]).decode("utf-8", errors="replace")

    def _complete(self, tokens: list[int], stop: list[str] | None, kwargs: Mapping[str, Any]) -> AIMessage:
        llm = self._load()
        grammar = None
        if kwargs.get("json_schema") is not None:
            from llama_cpp import LlamaGrammar

            grammar = LlamaGrammar.from_json_schema(json.dumps(kwargs["json_schema"]), verbose=False)
        out = llm.create_completion(tokens, max_tokens=int(kwargs.get("max_tokens") or self.max_tokens),
                                    temperature=self.temperature, seed=self.seed, stop=stop or kwargs.get("stop"),
                                    grammar=grammar)
        usage = out["usage"]
        return AIMessage(content=out["choices"][0]["text"],
                         usage_metadata={"input_tokens": usage["prompt_tokens"],
                                         "output_tokens": usage["completion_tokens"],
                                         "total_tokens": usage["total_tokens"]})


# --------------------------------------------------------------------------- OpenAI-compatible servers


def _chat_openai_class() -> type:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as exc:
        raise MissingDependencyError("server backends need langchain-openai: pip install 'driftrec[vllm]'") from exc
    return ChatOpenAI


_SERVER_CLASSES: dict[str, type] = {}


def _max_tokens_payload(base: type) -> Callable[..., dict[str, Any]]:
    """`base._get_request_payload` with `max_completion_tokens` sent as `max_tokens`.

    langchain-openai renames max_tokens for OpenAI's API; llama.cpp's server reads only max_tokens
    (a 1-token logprob call would otherwise generate up to its default); vLLM reads both.
    """
    def payload(self: Any, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        out: dict[str, Any] = getattr(base, "_get_request_payload")(self, input_, stop=stop, **kwargs)  # noqa: B009
        if "max_completion_tokens" in out:
            out["max_tokens"] = out.pop("max_completion_tokens")
        return out
    return payload


def server_chat_class(kind: str) -> type:
    """`ChatOpenAI` subclass with the capabilities of a server kind: "vllm", "llamacpp-server", "openai".

    Built lazily so that importing this module never imports langchain-openai.
    """
    if kind not in _SERVER_CLASSES:
        base = _chat_openai_class()
        caps = {
            # vLLM: guided decoding with response_format json_schema; logprobs up to --max-logprobs (20).
            "vllm": dict(supports_logprobs=True, supports_json_schema=True, supports_tools=True),
            # llama.cpp server: json_schema returns HTTP 500; json_object and function calling work.
            "llamacpp-server": dict(supports_logprobs=True, supports_json_mode=True, supports_tools=True),
            "openai": {},
        }[kind]
        attrs: dict[str, Any] = {"__annotations__": {k: ClassVar[bool] for k in caps}, **caps,
                                 "__module__": __name__, "_get_request_payload": _max_tokens_payload(base)}
        name = "".join(p.capitalize() for p in kind.replace("-", " ").split()) + "ChatModel"
        _SERVER_CLASSES[kind] = type(name, (base,), attrs)
    return _SERVER_CLASSES[kind]


def _server(kind: str) -> Callable[[LLMSettings], BaseChatModel]:
    def build(settings: LLMSettings) -> BaseChatModel:
        if not settings.base_url:
            raise ConfigError(f"backend {kind!r} needs base_url, e.g. http://127.0.0.1:8000/v1")
        cls = server_chat_class(kind)
        model: BaseChatModel = cls(base_url=settings.base_url, api_key=settings.api_key,
                                   model=settings.model or "default", temperature=settings.temperature,
                                   max_tokens=settings.max_tokens, timeout=settings.timeout_s, max_retries=0,
                                   seed=settings.seed)
        return model
    return build


def _embedded(settings: LLMSettings) -> BaseChatModel:
    from agent.llm.packaged import DEFAULT_CPU_FORMAT, PACKAGED, convert, resolve_model_path

    path = resolve_model_path(settings.model)
    packaged = settings.model is None or settings.model in PACKAGED
    path = convert(path, settings.cpu_format or (DEFAULT_CPU_FORMAT if packaged else "original"))
    return EmbeddedChatModel(model_path=str(path), n_ctx=settings.n_ctx, n_threads=settings.n_threads,
                             seed=settings.seed, temperature=settings.temperature, max_tokens=settings.max_tokens)


def _fake(settings: LLMSettings) -> BaseChatModel:
    try:
        from tests.fakes import FakeChatModel
    except ImportError as exc:
        raise ConfigError("backend 'fake' needs the repository's tests/ on sys.path (it is for tests)") from exc
    return FakeChatModel(replies=[])


BACKENDS: dict[str, Callable[[LLMSettings], BaseChatModel]] = {
    "embedded": _embedded,
    "vllm": _server("vllm"),
    "llamacpp-server": _server("llamacpp-server"),
    "openai": _server("openai"),
    "fake": _fake,
}


def make_chat_model(settings: LLMSettings) -> BaseChatModel:
    """The chat model for `settings.backend`; an unknown name raises ConfigError listing valid ones."""
    try:
        build = BACKENDS[settings.backend]
    except KeyError:
        raise ConfigError(f"unknown LLM backend {settings.backend!r}; valid: {', '.join(sorted(BACKENDS))}") from None
    return build(settings)


def make_client(settings: LLMSettings, model: BaseChatModel | None = None) -> LLMClient:
    """An `LLMClient` for a passed-in chat model, or for the one `settings` names; cache from settings."""
    cache = None
    if settings.cache_dir is not None:
        from agent.llm.cache import ResponseCache

        cache = ResponseCache(Path(settings.cache_dir) / "responses.sqlite")
    return LLMClient(model if model is not None else make_chat_model(settings), cache=cache)
