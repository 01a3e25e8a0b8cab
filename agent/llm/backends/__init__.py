"""LLM backends, chosen by name, and the public constructors `make_chat_model` and `make_client`.

Built-in backends:
    embedded         llama.cpp in-process on a GGUF shipped in a PyPI package (`llamacpp.EmbeddedChatModel`)
    vllm             vLLM's OpenAI-compatible server by URL (JSON schema + logprobs)
    llamacpp-server  llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`; json_object only)
    openai           any OpenAI-compatible endpoint, no optional capability assumed
    transformers     a HF model in process (PyTorch), with a LoRA adapter from `driftrec tune-ranker` (`hf.py`)
    fake             `fake.FakeChatModel`: scripted replies and a call history (for tests and demos)
Third parties add one through the `driftrec.llm_backends` entry-point group: a callable taking
`LLMSettings` and returning a LangChain `BaseChatModel`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from langchain_core.language_models import BaseChatModel

from agent.llm.backends import fake, hf, llamacpp, openai
from agent.llm.client import LLMClient
from agent.llm.settings import LLMSettings
from retrieval.errors import ConfigError
from retrieval.registry import Registry

BackendFactory = Callable[[LLMSettings], BaseChatModel]

BACKENDS: Registry[BackendFactory] = Registry("LLM backend", "driftrec.llm_backends")
BACKENDS.register("embedded", llamacpp.build)
for _kind in openai.SERVER_KINDS:
    BACKENDS.register(_kind, openai.factory(_kind))
BACKENDS.register("transformers", hf.build)
BACKENDS.register("fake", fake.build)


def check_backend(name: str) -> str:
    """`name` when it is a registered backend.

    Raises:
        ConfigError: unknown name; the message lists the valid ones.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown LLM backend {name!r}; valid: {', '.join(BACKENDS.names())}")
    return name


def make_chat_model(settings: LLMSettings) -> BaseChatModel:
    """The chat model for `settings.backend`; an unknown name raises ConfigError listing valid ones."""
    return BACKENDS.get(check_backend(settings.backend))(settings)


def make_client(settings: LLMSettings, model: BaseChatModel | None = None) -> LLMClient:
    """An `LLMClient` for a passed-in chat model, or for the one `settings` names; cache from settings."""
    cache = None
    if settings.cache_dir is not None:
        from agent.llm.cache import ResponseCache

        cache = ResponseCache(Path(settings.cache_dir) / "responses.sqlite")
    return LLMClient(model if model is not None else make_chat_model(settings), cache=cache,
                     timeout_s=settings.timeout_s)
