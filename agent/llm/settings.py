"""How to build an LLM client: one frozen settings object, built at the edge (CLI, harness) and passed in."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from agent.llm.packaged import CpuFormat
from retrieval.errors import ConfigError


class LLMSettings(BaseModel):
    """How to build a chat model.

    Attributes:
        backend: backend name, one of `agent.llm.backends.BACKENDS` (checked when built). Not a
            `Literal`: third parties add backends through the `driftrec.llm_backends` entry points.
        model: embedded: a packaged model name (see `agent.llm.packaged.PACKAGED`) or a GGUF path;
            servers: the served model name.
        base_url: server URL, e.g. "http://127.0.0.1:8000/v1" (server backends only).
        api_key: sent to OpenAI-compatible servers (local servers ignore it). None (the default) reads
            `DRIFTREC_LLM_API_KEY`, then `OPENAI_API_KEY`, else sends "not-needed". Kept as a
            `SecretStr`: it never appears in a repr or a log.
        temperature: sampling temperature; 0 = greedy (reproducible).
        max_tokens: default generation cap.
        timeout_s: deadline of one LLM call in seconds, connect, read and retries included (all backends;
            a server that never answers or trickles bytes is cut off by it).
        n_ctx: embedded context window in tokens.
        n_threads: embedded CPU threads (None = llama.cpp's default).
        seed: sampling seed.
        cache_dir: directory of the on-disk response cache (None = no cache).
        capabilities: server backends: the capability names (`agent.llm.client.Capabilities.names()`:
            logprobs, json_schema, grammar, tools, json_mode, prompt_logprobs) the endpoint supports,
            replacing the backend's own declaration; for hosted OpenAI-compatible endpoints. None = the
            backend's.
        adapter: transformers backend: a LoRA adapter directory written by `driftrec tune-ranker`, merged
            into `model` at load time (its manifest must name the same base weights). None = the base model.
        cpu_format: embedded: convert the GGUF once to this llama.cpp type for faster CPU inference;
            None = `agent.llm.packaged.DEFAULT_CPU_FORMAT` for packaged models and "original" for
            GGUF paths the caller gives.

    Raises:
        ConfigError: unknown backend name (the message lists the valid ones).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str = "embedded"
    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=256, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)
    n_ctx: int = Field(default=4096, gt=0)
    n_threads: int | None = None
    seed: int = 0
    cache_dir: Path | None = None
    cpu_format: CpuFormat | None = None
    adapter: Path | None = None
    capabilities: tuple[str, ...] | None = None

    def resolved_api_key(self) -> str:
        """The key to send: the setting, else `DRIFTREC_LLM_API_KEY`, else `OPENAI_API_KEY`, else "not-needed"."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return os.environ.get("DRIFTREC_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or "not-needed"

    @field_validator("capabilities")
    @classmethod
    def _known_capabilities(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        from agent.llm.client import Capabilities

        valid = Capabilities.names()
        for name in names or ():
            if name not in valid:
                raise ConfigError(f"unknown LLM capability {name!r}; valid: {', '.join(valid)}")
        return names

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, name: str) -> str:
        # Imported here: the backends import this module. ConfigError is not a ValueError, so
        # pydantic lets it through unwrapped and callers see the error that lists the valid names.
        from agent.llm.backends import check_backend

        return check_backend(name)
