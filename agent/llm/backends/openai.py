"""Server backends: OpenAI-compatible chat servers (vLLM, llama.cpp's server, any OpenAI endpoint) by URL.

Each kind is a `ChatOpenAI` subclass declaring that server's capabilities, built lazily so that
importing this module never imports langchain-openai.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal, get_args

from langchain_core.language_models import BaseChatModel

from agent.llm.settings import LLMSettings
from retrieval.errors import ConfigError, MissingDependencyError
from retrieval.log import get_logger

log = get_logger(__name__)

ServerKind = Literal["vllm", "llamacpp-server", "openai"]
SERVER_KINDS: tuple[ServerKind, ...] = get_args(ServerKind)

_CAPABILITIES: dict[ServerKind, dict[str, bool]] = {
    # vLLM: guided decoding with response_format json_schema; logprobs up to --max-logprobs (20);
    # prompt logprobs through the completions API with echo (continuation scoring).
    "vllm": dict(supports_logprobs=True, supports_json_schema=True, supports_tools=True,
                 supports_prompt_logprobs=True),
    # llama.cpp server: json_schema returns HTTP 500; json_object and function calling work.
    "llamacpp-server": dict(supports_logprobs=True, supports_json_mode=True, supports_tools=True),
    "openai": {},
}
_SERVER_CLASSES: dict[tuple[ServerKind, tuple[str, ...] | None], type] = {}


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


def score_continuations(self: Any, prefix: str, continuations: Sequence[str]) -> tuple[list[float], list[int], int]:
    """Continuation log-likelihoods from the completions API: `echo` with `logprobs`, one request.

    All prompts share `prefix`, so a server with prefix caching (vLLM) evaluates it once. A token
    counts toward a continuation when its text span overlaps the continuation's characters.

    Raises:
        openai errors (retried or translated by `LLMClient`); KeyError/TypeError/ValueError on a reply
        of the wrong shape (an unreadable reply).
    """
    start = len(prefix)
    prompts = [prefix + c for c in continuations]
    reply = self.root_client.completions.create(model=self.model_name, prompt=prompts, max_tokens=1,
                                                temperature=0.0, echo=True, logprobs=1)
    choices = sorted(reply.choices, key=lambda c: c.index)
    if len(choices) != len(prompts):
        raise ValueError(f"{len(choices)} choices for {len(prompts)} prompts")
    values: list[float] = []
    counts: list[int] = []
    for choice, prompt in zip(choices, prompts, strict=True):
        offsets, lps = list(choice.logprobs.text_offset), list(choice.logprobs.token_logprobs)
        ends = offsets[1:] + [len(prompt)]
        picked = [lp for off, end, lp in zip(offsets, ends, lps, strict=True)
                  if off < len(prompt) and end > start]  # the echo ends with the generated token: not ours
        if not picked or any(lp is None for lp in picked):
            raise ValueError("the reply carried no prompt logprobs for a continuation")
        values.append(float(sum(picked)))
        counts.append(len(picked))
    usage = getattr(reply, "usage", None)
    return values, counts, int(getattr(usage, "prompt_tokens", 0) or 0)


# Where each server kind counts tokens with the served model's own tokenizer: the path below the API root
# (the base URL without "/v1") and how the request and reply look. A hosted OpenAI endpoint has none.
_TOKENIZE: dict[ServerKind, tuple[str, Callable[[str, str], dict[str, Any]], Callable[[Any], int]]] = {
    "vllm": ("/tokenize", lambda model, text: {"model": model, "prompt": text, "add_special_tokens": False},
             lambda body: int(body["count"])),
    "llamacpp-server": ("/tokenize", lambda model, text: {"content": text}, lambda body: len(body["tokens"])),
}
_COUNTS: dict[tuple[str, str, str], int] = {}  # (API root, model, text) -> tokens; narratives repeat lines
_COUNTS_MAX = 100_000
_NO_TOKENIZE: set[str] = set()  # API roots whose tokenize endpoint failed once: estimated from then on
# A local server answers a tokenize request in milliseconds. One that does not answer in this time
# (hung, or far away) must not add a full request timeout before every prompt is even sent.
TOKENIZE_TIMEOUT_S = 0.5


def _token_counter(kind: ServerKind) -> Callable[[Any, str], int]:
    """`count_tokens(self, text)` through the server's tokenize endpoint, so a prompt's token budget
    (the narrative) is filled as the embedded model fills it, not by a conservative estimate.

    Counts are remembered per server and text. A server whose endpoint fails once (an old version, a
    proxy that does not pass it, no answer within `TOKENIZE_TIMEOUT_S`) is estimated from then on in
    this process, with one warning.
    """
    path, body, count = _TOKENIZE[kind]

    def count_tokens(self: Any, text: str) -> int:
        from agent.llm.backends.http import deadline_client
        from agent.llm.client import estimate_tokens
        from agent.llm.deadline import budget

        root = str(self.openai_api_base or "").rstrip("/").removesuffix("/v1")
        key = (root, str(self.model_name), text)
        if key in _COUNTS:
            return _COUNTS[key]
        if not root or root in _NO_TOKENIZE:
            return estimate_tokens(text)
        try:
            secret = getattr(self, "openai_api_key", None)
            api_key = secret.get_secret_value() if secret is not None else ""
            headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
            client = self.http_client or deadline_client(TOKENIZE_TIMEOUT_S)
            with budget(TOKENIZE_TIMEOUT_S):  # bounds the whole request, even one trickled byte by byte
                reply = client.post(root + path, json=body(str(self.model_name), text), headers=headers)
            reply.raise_for_status()
            n = count(reply.json())
        except Exception as exc:  # any transport, HTTP or shape failure: estimate, as before this endpoint
            _NO_TOKENIZE.add(root)
            log.warning("%s: token counting through %s failed (%s); estimating token counts instead",
                        kind, root + path, type(exc).__name__)
            return estimate_tokens(text)
        if len(_COUNTS) >= _COUNTS_MAX:
            _COUNTS.clear()
        _COUNTS[key] = n
        return n
    return count_tokens


def server_chat_class(kind: ServerKind, declared: Sequence[str] | None = None) -> type:
    """`ChatOpenAI` subclass with the capabilities of a server kind: "vllm", "llamacpp-server", "openai".

    Args:
        kind: the server kind.
        declared: capability names (`Capabilities.names()`) that replace the kind's own, for a hosted
            endpoint whose features the caller knows (e.g. ("logprobs", "json_schema")).
    """
    key = (kind, None if declared is None else tuple(sorted(declared)))
    if key not in _SERVER_CLASSES:
        base = _chat_openai_class()
        caps = _CAPABILITIES[kind] if declared is None else {f"supports_{n}": True for n in sorted(declared)}
        attrs: dict[str, Any] = {"__annotations__": {k: ClassVar[bool] for k in caps}, **caps,
                                 "__module__": __name__, "_get_request_payload": _max_tokens_payload(base)}
        if caps.get("supports_prompt_logprobs"):
            attrs["score_continuations"] = score_continuations
        if kind in _TOKENIZE:
            attrs["count_tokens"] = _token_counter(kind)
        name = "".join(p.capitalize() for p in kind.replace("-", " ").split()) + "ChatModel"
        _SERVER_CLASSES[key] = type(name, (base,), attrs)
    return _SERVER_CLASSES[key]


def factory(kind: ServerKind) -> Callable[[LLMSettings], BaseChatModel]:
    """The backend factory of one server kind (needs `settings.base_url`)."""
    def build(settings: LLMSettings) -> BaseChatModel:
        if not settings.base_url:
            raise ConfigError(f"backend {kind!r} needs base_url, e.g. http://127.0.0.1:8000/v1")
        from agent.llm.backends.http import deadline_client

        cls = server_chat_class(kind, settings.capabilities)
        # No retries here: `LLMClient.chat` retries within the call's deadline (429 Retry-After, 5xx).
        model: BaseChatModel = cls(base_url=settings.base_url, api_key=settings.resolved_api_key(),
                                   model=settings.model or "default", temperature=settings.temperature,
                                   max_tokens=settings.max_tokens, timeout=settings.timeout_s, max_retries=0,
                                   seed=settings.seed, http_client=deadline_client(settings.timeout_s))
        return model
    return build
