"""The `transformers` backend: a HF causal LM in process (PyTorch), optionally with a LoRA adapter.

This is how a ranker tuned with `driftrec tune-ranker` (`agent.tuning`) is served without a server:
`LLMSettings(backend="transformers", model="smollm2-135m", adapter="runs/ranker")`. The base is a HF
model directory, or a packaged GGUF name converted once to HF weights in the model cache
(`hf_model_dir`). The adapter is merged into the weights at load time (peft's `merge_and_unload`), so a
tuned model costs what the base costs.

Capabilities: `logprobs` (next-token distribution from the last prompt position, any top-k: the
verbalizer reads label probabilities there) and `prompt_logprobs` (`score_continuations`: the prefix
runs once, its KV cache is repeated for a batch of continuations). No grammar or JSON schema: the JSON
rerank method runs prompt-only and is validated as usual. One forward pass at a time (a lock).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from agent.llm.deadline import expired, remaining
from agent.llm.settings import LLMSettings
from retrieval.errors import ConfigError, LLMError, LLMTimeoutError, MissingDependencyError
from retrieval.log import get_logger

log = get_logger(__name__)

INSTALL = "pip install 'driftrec[tune]'"


def import_torch_transformers() -> tuple[Any, Any]:
    """(torch, transformers), or MissingDependencyError naming the extra to install."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(f"the transformers backend needs torch and transformers: {INSTALL}") from exc
    return torch, transformers


def hf_model_dir(name_or_dir: str | None) -> Path:
    """A HF model directory: the given one, or a packaged GGUF (`agent.llm.packaged`) converted once.

    Conversions live in `<model cache>/hf/<name>` (`agent.llm.servers.convert_gguf_to_hf`, needs gguf
    and accelerate).

    Raises:
        ConfigError: neither a directory with config.json nor a packaged model name.
    """
    from agent.llm.packaged import DEFAULT_MODEL, PACKAGED, default_cache_dir, resolve_model_path

    name = name_or_dir or DEFAULT_MODEL
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        return path
    if name not in PACKAGED:
        raise ConfigError(f"{name!r} is neither a HF model directory (with config.json) nor a packaged model "
                          f"({', '.join(PACKAGED)})")
    from agent.llm.servers import convert_gguf_to_hf

    out = default_cache_dir() / "hf" / name
    if not (out / "config.json").is_file():
        log.info("converting the packaged %s GGUF to HF weights in %s (once)", name, out)
    return convert_gguf_to_hf(resolve_model_path(name), out)


def load_causal_lm(model_dir: Path, adapter_dir: Path | None = None, merge: bool = True) -> tuple[Any, Any]:
    """(model in eval mode on the CPU or CUDA, tokenizer) in float32, with the adapter applied when given.

    Raises:
        ConfigError: the adapter was trained on another base model (its manifest says so).
        MissingDependencyError: torch / transformers / peft missing.
    """
    torch, transformers = import_torch_transformers()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).to(device)
    if adapter_dir is not None:
        from agent.llm.adapter import check_adapter_base, import_peft

        check_adapter_base(adapter_dir, model_dir)
        peft = import_peft()
        model = peft.PeftModel.from_pretrained(model, str(adapter_dir))
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return model, tokenizer


class TransformersChatModel(BaseChatModel):
    """A HF causal LM in process (PyTorch), optionally with a LoRA adapter merged in.

    Extra call kwargs (all optional): `max_tokens`, `logprobs` + `top_logprobs` (first-position
    alternatives from one forward pass), `stop`. Thread-safe: one call at a time (a lock per model).
    Deadlines: waiting for the lock counts; generation stops when the deadline passes.
    """

    supports_logprobs: ClassVar[bool] = True
    supports_json_schema: ClassVar[bool] = False
    supports_grammar: ClassVar[bool] = False
    supports_tools: ClassVar[bool] = False
    supports_json_mode: ClassVar[bool] = False
    supports_prompt_logprobs: ClassVar[bool] = True
    max_top_logprobs: ClassVar[int] = 100
    max_concurrency: ClassVar[int] = 1

    model_dir: str
    adapter_dir: str | None = None
    n_threads: int | None = None
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int = 256
    n_ctx: int = 4096
    _model: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.RLock)
    _adapter_id: str | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "driftrec-transformers"

    @property
    def model_id(self) -> str:
        """Base directory name, plus the adapter's weights digest (so cached replies never mix models)."""
        if self.adapter_dir is None:
            return Path(self.model_dir).name
        if self._adapter_id is None:  # hashed once: the client asks for the id on every cached call
            from agent.llm.adapter import adapter_digest

            self._adapter_id = f"{Path(self.adapter_dir).name}-{adapter_digest(self.adapter_dir)[:12]}"
        return f"{Path(self.model_dir).name}+{self._adapter_id}"

    @classmethod
    def from_loaded(cls, model: Any, tokenizer: Any, model_dir: str | Path) -> TransformersChatModel:
        """A chat model over an already loaded model (e.g. a peft model being trained, `agent.tuning.train`)."""
        chat = cls(model_dir=str(model_dir))
        chat._model, chat._tokenizer = model, tokenizer
        return chat

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                torch, _ = import_torch_transformers()
                if self.n_threads:
                    torch.set_num_threads(self.n_threads)
                adapter = Path(self.adapter_dir) if self.adapter_dir else None
                self._model, self._tokenizer = load_causal_lm(Path(self.model_dir), adapter)
                if not getattr(self._tokenizer, "chat_template", None):
                    raise ConfigError(f"{self.model_dir} has no chat template (a base model?); use an instruct model")
            return self._model, self._tokenizer

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` under this model's tokenizer."""
        _, tok = self._load()
        return len(tok.encode(text, add_special_tokens=False))

    def prompt_tokens(self, messages: Sequence[BaseMessage]) -> list[int]:
        """The chat-templated prompt (with the assistant turn opened) as token ids."""
        _, tok = self._load()
        return chat_prompt_ids(tok, messages)

    def _acquire(self) -> None:
        left = remaining()
        if not self._lock.acquire(timeout=-1 if left is None else max(0.0, left)):
            raise LLMTimeoutError("the transformers model stayed busy with other calls until the deadline")

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        self._acquire()
        try:
            tokens = self.prompt_tokens(messages)
            if len(tokens) >= self.n_ctx:
                raise LLMError(f"prompt of {len(tokens)} tokens exceeds n_ctx={self.n_ctx}")
            if kwargs.get("logprobs"):
                message = self._first_token_logprobs(tokens, int(kwargs.get("top_logprobs") or 20))
            else:
                message = self._complete(tokens, stop or kwargs.get("stop"), int(kwargs.get("max_tokens")
                                                                                 or self.max_tokens))
        finally:
            self._lock.release()
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _first_token_logprobs(self, tokens: list[int], top: int) -> AIMessage:
        torch, _ = import_torch_transformers()
        model, tok = self._load()
        with torch.no_grad():
            logits = model(torch.tensor([tokens], device=model.device), logits_to_keep=1).logits[0, -1]
        logp = torch.log_softmax(logits.double(), dim=-1)
        values, ids = torch.topk(logp, min(top, logp.numel()))
        pieces = [(tok.decode([int(t)]), float(v)) for t, v in zip(ids.tolist(), values.tolist(), strict=True)]
        entries = [{"token": t, "logprob": lp} for t, lp in pieces]
        content = [{"token": pieces[0][0], "logprob": pieces[0][1], "top_logprobs": entries}]
        return AIMessage(content=pieces[0][0], response_metadata={"logprobs": {"content": content}},
                         usage_metadata={"input_tokens": len(tokens), "output_tokens": 1,
                                         "total_tokens": len(tokens) + 1})

    def _complete(self, tokens: list[int], stop: Sequence[str] | None, max_tokens: int) -> AIMessage:
        torch, transformers = import_torch_transformers()
        model, tok = self._load()
        if expired():
            raise LLMTimeoutError("the deadline passed before generation started")

        class PastDeadline(transformers.StoppingCriteria):  # type: ignore[misc, name-defined]
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return expired()

        sample = self.temperature > 0
        if sample:
            torch.manual_seed(self.seed)
        with torch.no_grad():
            out = model.generate(torch.tensor([tokens], device=model.device), max_new_tokens=max_tokens,
                                 do_sample=sample, temperature=self.temperature if sample else None,
                                 top_p=None, top_k=None, stop_strings=list(stop) if stop else None, tokenizer=tok,
                                 stopping_criteria=transformers.StoppingCriteriaList([PastDeadline()]),
                                 pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        if expired():
            raise LLMTimeoutError("generation was cut off at the deadline")
        new = out[0, len(tokens):].tolist()
        text = tok.decode(new, skip_special_tokens=True)
        for s in stop or ():
            text = text.split(s)[0]
        return AIMessage(content=text, usage_metadata={"input_tokens": len(tokens), "output_tokens": len(new),
                                                       "total_tokens": len(tokens) + len(new)})

    def score_continuations(self, prefix: str, continuations: Sequence[str]) -> tuple[list[float], list[int], int]:
        """Summed log-probability of each continuation's tokens right after `prefix` (plain text).

        The prefix runs once; its KV cache is repeated for one batch of all continuations (right-padded:
        a padded position comes after every real token of its row, so no real token attends to it).

        Returns:
            (logprobs, token counts, prompt tokens: the prefix plus every continuation).

        Raises:
            LLMTimeoutError: the deadline passed waiting for the model.
            LLMError: an empty prefix or continuation, or a prompt longer than `n_ctx`.
        """
        torch, _ = import_torch_transformers()
        self._acquire()
        try:
            model, tok = self._load()
            head = tok.encode(prefix, add_special_tokens=True)
            tails = [tok.encode(c, add_special_tokens=False) for c in continuations]
            if not head or any(not t for t in tails):
                raise LLMError("an empty prefix or continuation cannot be scored")
            if len(head) + max(len(t) for t in tails) >= self.n_ctx:
                raise LLMError(f"prefix of {len(head)} tokens plus a continuation exceeds n_ctx={self.n_ctx}")
            values = continuation_logprobs(model, head, tails)
            return values, [len(t) for t in tails], len(head) + sum(len(t) for t in tails)
        finally:
            self._lock.release()


def chat_prompt_ids(tokenizer: Any, messages: Sequence[BaseMessage]) -> list[int]:
    """Token ids of the chat-templated `messages` with the assistant turn opened."""
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    chat = [{"role": roles.get(m.type, "user"), "content": str(m.content)} for m in messages]
    text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    return list(tokenizer.encode(text, add_special_tokens=False))


def continuation_logprobs(model: Any, head: Sequence[int], tails: Sequence[Sequence[int]]) -> list[float]:
    """Summed log-probability of each token list in `tails` after the token list `head`.

    One forward pass over `head` with a KV cache, then one over all tails (right-padded), the cache
    repeated once per tail.
    """
    import torch

    device = model.device
    with torch.no_grad():
        out = model(torch.tensor([list(head)], device=device), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(out.logits[0, -1].double(), dim=-1)
        values = [float(first[t[0]]) for t in tails]
        longest = max(len(t) for t in tails)
        if longest < 2:
            return values
        cache = getattr(out, "cache", None) or out.past_key_values
        cache.batch_repeat_interleave(len(tails))
        width = longest - 1
        ids = torch.zeros(len(tails), width, dtype=torch.long, device=device)
        for k, t in enumerate(tails):
            ids[k, : len(t) - 1] = torch.tensor(t[:-1])
        positions = torch.arange(len(head), len(head) + width, device=device).expand(len(tails), -1)
        mask = torch.ones(len(tails), len(head) + width, dtype=torch.long, device=device)
        logits = model(ids, position_ids=positions, attention_mask=mask, **{_cache_arg(model): cache}).logits
        logp = torch.log_softmax(logits.double(), dim=-1)
        for k, t in enumerate(tails):
            for j in range(len(t) - 1):
                values[k] += float(logp[k, j, t[j + 1]])
    return values


def _cache_arg(model: Any) -> str:
    """The forward argument that takes a KV cache: `cache` (transformers ≥ 5.2x) or `past_key_values`."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model wraps it
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def build(settings: LLMSettings) -> BaseChatModel:
    """The "transformers" backend on `settings.model` (HF directory or packaged name) and `settings.adapter`."""
    import_torch_transformers()
    model_dir = hf_model_dir(settings.model)
    adapter = str(settings.adapter) if settings.adapter else None
    return TransformersChatModel(model_dir=str(model_dir), adapter_dir=adapter,
                                 n_threads=settings.n_threads, seed=settings.seed, temperature=settings.temperature,
                                 max_tokens=settings.max_tokens, n_ctx=settings.n_ctx)
