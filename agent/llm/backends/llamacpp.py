"""The embedded backend: llama.cpp in-process (llama-cpp-python) on a GGUF file, as a LangChain chat model.

GGUFs come from PyPI packages (`agent.llm.packaged`) or a path the caller gives; llama-cpp-python is
imported only when the model is first used.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from agent.llm.cpu import has_amx, safe_model_params
from agent.llm.deadline import expired, remaining
from agent.llm.settings import LLMSettings
from retrieval.errors import ConfigError, LLMError, LLMTimeoutError, MissingDependencyError
from retrieval.log import get_logger

log = get_logger(__name__)


class EmbeddedChatModel(BaseChatModel):
    """llama.cpp in-process (llama-cpp-python) on a GGUF file, as a LangChain chat model.

    Extra call kwargs (all optional): `max_tokens`, `logprobs` + `top_logprobs` (first-position
    alternatives from the last-token logits: ONE prefill, one "generated" token), `json_schema`
    (grammar-constrained output), `stop`. The KV cache is reused for the longest shared token
    prefix with the previous call, so prompts that put the shared history first are cheap to repeat.

    Thread-safe: one llama.cpp context serves one call at a time (a lock per model), so several threads
    may share one model (and one `LLMClient` / `LLMReranker` over it); their calls run one after another.
    Deadlines (`agent.llm.deadline`): waiting for the lock counts, and generation stops when the deadline
    passes (`LLMTimeoutError`); a prompt's prefill, once started, runs to its end.
    On a CPU with AMX the model loads without llama.cpp's extra weight buffers (`agent.llm.cpu`).
    """

    supports_logprobs: ClassVar[bool] = True
    supports_json_schema: ClassVar[bool] = False
    supports_grammar: ClassVar[bool] = True
    supports_tools: ClassVar[bool] = False
    supports_json_mode: ClassVar[bool] = False
    supports_prompt_logprobs: ClassVar[bool] = True
    max_top_logprobs: ClassVar[int] = 100
    # One llama.cpp context serves one call at a time: more threads only queue on the lock.
    max_concurrency: ClassVar[int] = 1

    model_path: str
    n_ctx: int = 4096
    n_threads: int | None = None
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int = 256
    _llm: Any = PrivateAttr(default=None)
    _format: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.RLock)

    @property
    def _llm_type(self) -> str:
        return "driftrec-embedded-llamacpp"

    @property
    def model_id(self) -> str:
        return Path(self.model_path).name

    def _load(self) -> Any:
        with self._lock:
            return self._load_locked()

    def _load_locked(self) -> Any:
        if self._llm is None:
            try:
                from llama_cpp import Llama
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter
            except ImportError as exc:
                raise MissingDependencyError(
                    "the embedded LLM backend needs llama-cpp-python: pip install 'driftrec[llm]'") from exc
            if not Path(self.model_path).is_file():
                raise ConfigError(f"GGUF model file not found: {self.model_path}")
            from agent.llm.packaged import check_gguf

            check_gguf(Path(self.model_path))
            amx = has_amx()
            if amx:
                log.info("CPU has AMX: loading %s without llama.cpp's AMX/repack weight buffers", self.model_path)
            from agent.llm.backends.llamacpp_score import parallel_sequences

            with safe_model_params(disable_extra_buffers=amx), parallel_sequences():
                try:
                    self._llm = Llama(model_path=self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                                      seed=self.seed, verbose=False, logits_all=False)
                except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
                    raise ConfigError(f"llama.cpp cannot load {self.model_path}: a truncated, damaged or "
                                      "unsupported GGUF file") from exc
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
        with self._lock:
            return len(self._load().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def prompt_tokens(self, messages: Sequence[BaseMessage]) -> list[int]:
        """The chat-templated prompt (with the assistant turn opened) as token ids."""
        roles = {"system": "system", "human": "user", "ai": "assistant"}
        chat = [{"role": roles.get(m.type, "user"), "content": str(m.content)} for m in messages]
        with self._lock:
            llm = self._load()
            prompt = self._format(messages=chat).prompt
            return llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        # The KV cache and the logits buffer belong to one call at a time; waiting counts against the deadline.
        left = remaining()
        if not self._lock.acquire(timeout=-1 if left is None else max(0.0, left)):
            raise LLMTimeoutError("the embedded model stayed busy with other calls until the deadline")
        try:
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
        finally:
            self._lock.release()
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _first_token_logprobs(self, tokens: list[int], top: int) -> AIMessage:
        import numpy as np

        from agent.llm.backends.llamacpp_score import next_token_logprobs

        logp = next_token_logprobs(self._load(), tokens)
        best = np.argsort(-logp)[:top]
        pieces = [(self._piece(int(t)), float(logp[t])) for t in best]
        entries: list[dict[str, Any]] = [{"token": tok, "logprob": lp} for tok, lp in pieces]
        content = [{"token": pieces[0][0], "logprob": pieces[0][1], "top_logprobs": entries}]
        return AIMessage(content=pieces[0][0], response_metadata={"logprobs": {"content": content}},
                         usage_metadata={"input_tokens": len(tokens), "output_tokens": 1,
                                         "total_tokens": len(tokens) + 1})

    def score_continuations(self, prefix: str, continuations: Sequence[str]) -> tuple[list[float], list[int], int]:
        """Summed log-probability of each continuation's tokens right after `prefix` (plain text).

        The prefix is evaluated once (keeping what the KV cache already holds), then all continuations
        in one batched decode, each in its own sequence sharing the prefix's cache cells
        (`llamacpp_score.score_after_prefix`); they are removed again, so the next call with the same
        prefix (and any chat call sharing it) starts from the cached prefix.

        Returns:
            (logprobs, token counts, prompt tokens: the prefix plus every continuation), the first two of
            length len(continuations).

        Raises:
            LLMTimeoutError: the deadline passed (waiting for the model or between continuations).
            LLMError: the prompt does not fit `n_ctx`, or llama.cpp failed.
        """
        from agent.llm.backends.llamacpp_score import score_after_prefix

        left = remaining()
        if not self._lock.acquire(timeout=-1 if left is None else max(0.0, left)):
            raise LLMTimeoutError("the embedded model stayed busy with other calls until the deadline")
        try:
            llm = self._load()
            head = llm.tokenize(prefix.encode("utf-8"), add_bos=True, special=False)
            tails = [llm.tokenize(c.encode("utf-8"), add_bos=False, special=False) for c in continuations]
            if not head or any(not t for t in tails):
                raise LLMError("an empty prefix or continuation cannot be scored")
            if len(head) + max(len(t) for t in tails) >= self.n_ctx:
                raise LLMError(f"prefix of {len(head)} tokens plus a continuation exceeds n_ctx={self.n_ctx}")
            try:
                values = score_after_prefix(llm, head, tails)
            except RuntimeError as exc:
                llm.n_tokens = 0  # the cache state is unknown after a failed decode
                raise LLMError(f"llama.cpp failed: {exc}") from exc
            return values, [len(t) for t in tails], len(head) + sum(len(t) for t in tails)
        finally:
            self._lock.release()

    def _piece(self, token: int) -> str:
        with self._lock:
            return self._load().detokenize([token]).decode("utf-8", errors="replace")

    def _complete(self, tokens: list[int], stop: list[str] | None, kwargs: Mapping[str, Any]) -> AIMessage:
        llm = self._load()
        grammar = None
        if kwargs.get("json_schema") is not None:
            from llama_cpp import LlamaGrammar

            grammar = LlamaGrammar.from_json_schema(json.dumps(kwargs["json_schema"]), verbose=False)
        from llama_cpp import StoppingCriteriaList

        if expired():
            raise LLMTimeoutError("the deadline passed before generation started")
        out = llm.create_completion(tokens, max_tokens=int(kwargs.get("max_tokens") or self.max_tokens),
                                    temperature=self.temperature, seed=self.seed, stop=stop or kwargs.get("stop"),
                                    grammar=grammar, stopping_criteria=StoppingCriteriaList([_past_deadline]))
        if expired():  # generation was cut at the deadline: the text is incomplete
            raise LLMTimeoutError("generation was cut off at the deadline")
        usage = out["usage"]
        return AIMessage(content=out["choices"][0]["text"],
                         usage_metadata={"input_tokens": usage["prompt_tokens"],
                                         "output_tokens": usage["completion_tokens"],
                                         "total_tokens": usage["total_tokens"]})


def _past_deadline(input_ids: Any, logits: Any) -> bool:
    """llama.cpp stopping criterion: stop generating once the call's deadline has passed."""
    return expired()


def build(settings: LLMSettings) -> BaseChatModel:
    """The "embedded" backend on `settings.model`, converted once to `settings.cpu_format`.

    `settings.model` is a packaged model name, a GGUF path, or None (the default packaged model);
    `cpu_format` None means `DEFAULT_CPU_FORMAT` for packaged models and "original" for paths.
    """
    from agent.llm.packaged import DEFAULT_CPU_FORMAT, PACKAGED, convert, resolve_model_path

    path = resolve_model_path(settings.model)
    packaged = settings.model is None or settings.model in PACKAGED
    path = convert(path, settings.cpu_format or (DEFAULT_CPU_FORMAT if packaged else "original"))
    return EmbeddedChatModel(model_path=str(path), n_ctx=settings.n_ctx, n_threads=settings.n_threads,
                             seed=settings.seed, temperature=settings.temperature, max_tokens=settings.max_tokens)
