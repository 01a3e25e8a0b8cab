"""Server backends: OpenAI-compatible chat servers (vLLM, llama.cpp's server, any OpenAI endpoint) by URL.

Each kind is a `ChatOpenAI` subclass declaring that server's capabilities, built lazily so that
importing this module never imports langchain-openai.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, get_args

from langchain_core.language_models import BaseChatModel

from agent.llm.settings import LLMSettings
from retrieval.errors import ConfigError, MissingDependencyError

ServerKind = Literal["vllm", "llamacpp-server", "openai"]
SERVER_KINDS: tuple[ServerKind, ...] = get_args(ServerKind)

_CAPABILITIES: dict[ServerKind, dict[str, bool]] = {
    # vLLM: guided decoding with response_format json_schema; logprobs up to --max-logprobs (20).
    "vllm": dict(supports_logprobs=True, supports_json_schema=True, supports_tools=True),
    # llama.cpp server: json_schema returns HTTP 500; json_object and function calling work.
    "llamacpp-server": dict(supports_logprobs=True, supports_json_mode=True, supports_tools=True),
    "openai": {},
}
_SERVER_CLASSES: dict[ServerKind, type] = {}


def _chat_openai_class() -> type:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as exc:
        raise MissingDependencyError("server backends need langchain-openai: pip install 'driftrec[vllm]'") from exc
    return ChatOpenAI


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


def server_chat_class(kind: ServerKind) -> type:
    """`ChatOpenAI` subclass with the capabilities of a server kind: "vllm", "llamacpp-server", "openai"."""
    if kind not in _SERVER_CLASSES:
        base = _chat_openai_class()
        caps = _CAPABILITIES[kind]
        attrs: dict[str, Any] = {"__annotations__": {k: ClassVar[bool] for k in caps}, **caps,
                                 "__module__": __name__, "_get_request_payload": _max_tokens_payload(base)}
        name = "".join(p.capitalize() for p in kind.replace("-", " ").split()) + "ChatModel"
        _SERVER_CLASSES[kind] = type(name, (base,), attrs)
    return _SERVER_CLASSES[kind]


def factory(kind: ServerKind) -> Callable[[LLMSettings], BaseChatModel]:
    """The backend factory of one server kind (needs `settings.base_url`)."""
    def build(settings: LLMSettings) -> BaseChatModel:
        if not settings.base_url:
            raise ConfigError(f"backend {kind!r} needs base_url, e.g. http://127.0.0.1:8000/v1")
        from agent.llm.backends.http import deadline_client

        cls = server_chat_class(kind)
        # No retries here: `LLMClient.chat` retries within the call's deadline (429 Retry-After, 5xx).
        model: BaseChatModel = cls(base_url=settings.base_url, api_key=settings.resolved_api_key(),
                                   model=settings.model or "default", temperature=settings.temperature,
                                   max_tokens=settings.max_tokens, timeout=settings.timeout_s, max_retries=0,
                                   seed=settings.seed, http_client=deadline_client(settings.timeout_s))
        return model
    return build
