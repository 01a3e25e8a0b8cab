"""LoRA fine-tuning of the LLM ranker (peft + transformers) on a split's training events.

Each example is the reranker's own prompt for a training-history cut (`agent.tuning.examples`) and its
answer: the target's label token (verbalizer) or its quoted title (pointwise). The loss is the
cross-entropy of the answer tokens only; gradients are accumulated over `batch_size` examples. Only
the LoRA matrices train (`target_modules`, rank `rank`, scale `alpha / rank`); the base stays frozen.

Validation runs the real reranker (`LLMReranker`, LLM score alone, w = 1) through the in-process
transformers backend on the model being trained, over a fixed set of validation users, before training
(step 0 = the base model) and every `eval_every` examples; the best state is kept and saved, and
training stops after `patience` evaluations without a better validation NDCG@10, at `max_minutes`, or
after `epochs` passes. The saved adapter is `agent.llm.adapter`'s format.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agent.listwise import LABELS
from agent.llm.adapter import FORMAT, base_digest, import_peft, save_adapter
from agent.llm.backends.hf import TransformersChatModel, chat_prompt_ids, hf_model_dir, import_torch_transformers
from agent.llm.client import LLMClient
from agent.narrative import NarrativeConfig
from agent.rerank import LLMReranker, RerankConfig
from agent.tuning.examples import OBJECTIVES, History, Objective, RankingCase, training_cases, validation_cases
from retrieval.candidates.base import Candidate
from retrieval.data.model import Catalog
from retrieval.errors import ConfigError
from retrieval.log import get_logger
from retrieval.vectors.fingerprint import events_fingerprint

log = get_logger(__name__)


@dataclass(frozen=True)
class RankerTuneConfig:
    """Ranker fine-tuning settings (LlamaRec's LoRA settings by default).

    Attributes:
        objective: "verbalizer" (the target's label among shuffled candidates) or "pointwise" (the
            target's title after the narrative).
        candidates: candidates per example, the target included (≤ 26).
        per_user: training targets per user, counted back from the last training event.
        history_tokens: narrative budget of the prompt (as `llm-rerank`'s `history_tokens` at inference).
        max_examples: train on a seeded sample of this many examples (None = all).
        max_minutes: stop training after this many minutes (then validate and save the best state).
        epochs: passes over the examples.
        batch_size: examples per optimiser step (gradient accumulation).
        lr: AdamW learning rate.
        rank, alpha, dropout, target_modules: LoRA settings.
        eval_every: examples between validations.
        valid_users: validate on a seeded sample of this many validation users.
        patience: validations without a better NDCG@10 before stopping.
        pmi_alpha: pointwise validation: score = log p(item | history) - pmi_alpha · log p(item | no history).
        seed: seeds examples, negatives, validation sample and LoRA initialisation.
    """

    objective: Objective = "verbalizer"
    candidates: int = 20
    per_user: int = 1
    history_tokens: int = 400
    max_examples: int | None = None
    max_minutes: float | None = None
    epochs: int = 1
    batch_size: int = 8
    lr: float = 1e-4
    rank: int = 8
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    eval_every: int = 128
    valid_users: int = 100
    patience: int = 3
    pmi_alpha: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}; valid: {', '.join(OBJECTIVES)}")
        if not 2 <= self.candidates <= len(LABELS):
            raise ConfigError(f"candidates must be in 2..{len(LABELS)}, got {self.candidates}")
        for name in ("per_user", "history_tokens", "epochs", "batch_size", "rank", "alpha", "eval_every",
                     "valid_users", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.max_examples is not None and self.max_examples < 1:
            raise ConfigError(f"max_examples must be ≥ 1, got {self.max_examples}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be > 0, got {self.max_minutes}")
        if not (self.lr > 0 and 0 <= self.dropout < 1) or not self.target_modules:
            raise ConfigError("lr must be > 0, dropout in [0, 1) and target_modules non-empty")


@dataclass
class RankerTuneReport:
    """What a tuning run did; `manifest` is what was saved beside the adapter."""

    adapter_dir: Path
    best_step: int
    validation: list[dict[str, float]] = field(default_factory=list)  # per validation; index 0 = base model
    seconds: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> dict[str, float]:
        """Validation metrics of the kept state."""
        return next(v for v in self.validation if v["examples"] == self.best_step)


def tune_ranker(catalog: Catalog, train: Mapping[str, History], validation: Sequence[tuple[str, History, str]],
                out: str | Path, config: RankerTuneConfig | None = None, base: str | None = None,
                progress: bool = True) -> RankerTuneReport:
    """Train a LoRA adapter for the LLM ranker on training events and save it with its manifest.

    Args:
        catalog: every item.
        train: user → TRAINING events only, oldest first.
        validation: (user, training events, validation target) per user, for picking the state.
        out: adapter directory to write (replaced atomically; an unrelated directory is refused).
        config: settings.
        base: a packaged model name (converted once to HF weights) or a HF model directory; None = the
            default packaged model.
        progress: tqdm bar over examples.

    Returns:
        the report; `report.manifest` is the saved manifest.
    """
    from retrieval.vectors.store import check_replaceable

    config = config or RankerTuneConfig()
    check_replaceable(Path(out).absolute(), FORMAT.split("/")[0])  # before training, not after it
    torch, _ = import_torch_transformers()
    peft = import_peft()
    base_dir = hf_model_dir(base)
    cases = training_cases(train, catalog.ids, config.candidates, config.per_user, seed=config.seed)
    if not cases:
        raise ConfigError("no training examples: every training history is shorter than 4 events")
    available = len(cases)
    cases = cases[: config.max_examples] if config.max_examples else cases
    valid = validation_cases(validation, catalog.ids, config.candidates, config.seed)
    if len(valid) > config.valid_users:
        valid = [valid[i] for i in sorted(np.random.default_rng(config.seed).choice(len(valid), config.valid_users,
                                                                                   replace=False))]
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    from agent.llm.backends.hf import load_causal_lm

    model, tokenizer = load_causal_lm(base_dir)
    lora = peft.LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                           target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lora)
    chat = TransformersChatModel.from_loaded(model, tokenizer, base_dir)
    rerank_config = RerankConfig(method="logprobs" if config.objective == "verbalizer" else "pointwise",
                                 fusion_weight=1.0, pmi_alpha=config.pmi_alpha,
                                 narrative=NarrativeConfig(max_tokens=config.history_tokens))
    encoder = _Encoder(chat, catalog, rerank_config, config.objective)

    history = [dict(validate(chat, catalog, rerank_config, valid), examples=0)]
    log.info("tune-ranker: base model validation %s", history[0])
    params = [p for p in model.parameters() if p.requires_grad]
    best_step, best_state = 0, _state(model)
    opt = torch.optim.AdamW(params, lr=config.lr)
    deadline = started + 60 * config.max_minutes if config.max_minutes else math.inf
    seen, since_best = 0, 0
    losses: list[float] = []

    def checkpoint(recent: int) -> bool:
        """Apply pending gradients, validate and record; True when this state is the best so far (kept)."""
        nonlocal best_step, best_state
        opt.step()
        opt.zero_grad()
        history.append(dict(validate(chat, catalog, rerank_config, valid), examples=seen,
                            train_loss=float(np.mean(losses[-recent:]))))
        log.info("tune-ranker: after %d examples validation %s", seen, history[-1])
        if history[-1]["ndcg@10"] <= max(h["ndcg@10"] for h in history[:-1]):
            return False
        best_step, best_state = seen, _state(model)
        return True

    stop = False
    bar = tqdm(total=config.epochs * len(cases), desc="tune ranker", unit="example", disable=not progress)
    for _epoch in range(config.epochs):
        for case in cases:
            model.train()
            loss = encoder.loss(case) / config.batch_size
            loss.backward()
            losses.append(float(loss.detach()) * config.batch_size)
            seen += 1
            if seen % config.batch_size == 0:
                opt.step()
                opt.zero_grad()
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-config.batch_size * 4:]):.3f}")
            out_of_time = time.perf_counter() > deadline
            if seen % config.eval_every == 0 or out_of_time:
                since_best = 0 if checkpoint(config.eval_every) else since_best + 1
                stop = out_of_time or since_best >= config.patience
            if stop:
                break
        if stop:
            break
    if not stop and seen % config.eval_every:  # the examples after the last validation
        checkpoint(seen % config.eval_every)
    bar.close()
    model.load_state_dict(best_state, strict=False)
    seconds = time.perf_counter() - started
    manifest = {
        "base": {"name": base or "smollm2-135m", "dir": str(base_dir), "sha256": base_digest(base_dir)},
        "trained_on": events_fingerprint(train),
        "objective": config.objective,
        "prompt": {"method": rerank_config.method, "history_tokens": config.history_tokens,
                   "candidates": config.candidates},
        "config": {**asdict(config), "target_modules": list(config.target_modules)},
        "examples": {"available": available, "used": len(cases), "seen": seen},
        "best_examples": best_step,
        "seconds": round(seconds, 1),
        "validation": {"metric": f"NDCG@10 of the target among {config.candidates} candidates (target + uniform "
                                 "unseen negatives), LLM score alone", "users": len(valid),
                       "history": history, "best": next(h for h in history if h["examples"] == best_step)},
    }
    target = save_adapter(model, out, manifest)
    from agent.llm.adapter import read_manifest

    return RankerTuneReport(target, best_step, history, seconds, read_manifest(target))


def validate(chat: TransformersChatModel, catalog: Catalog, rerank_config: RerankConfig,
             cases: Sequence[RankingCase]) -> dict[str, float]:
    """NDCG@10 / HR@1 / MRR of the targets under the reranker's LLM score alone (model in eval mode).

    A fresh reranker per call: the pointwise method remembers unconditional likelihoods, which change
    as the model trains.
    """
    import torch

    chat._model.eval()
    reranker = LLMReranker(LLMClient(chat, timeout_s=3600.0), catalog, rerank_config)
    ranks, fallbacks = [], 0
    with torch.no_grad():
        for case in cases:
            # Descending retrieval scores keep the shown order: label A is shown[0], as in training.
            cands = [Candidate(item, float(len(case.shown) - j), "retrieval") for j, item in enumerate(case.shown)]
            result = reranker.rerank(case.history, cands)
            fallbacks += int(result.fallback)
            ranks.append([c.item_id for c in result.candidates].index(case.target))
    r = np.asarray(ranks)
    return {"ndcg@10": float(np.mean(np.where(r < 10, 1.0 / np.log2(r + 2), 0.0))),
            "hr@1": float(np.mean(r == 0)), "mrr": float(np.mean(1.0 / (r + 1))), "users": float(len(r)),
            "fallbacks": float(fallbacks)}


def _state(model: Any) -> dict[str, Any]:
    """A copy of the trainable (LoRA) weights."""
    return {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}


class _Encoder:
    """Ranking case → (prompt token ids, answer token ids) → loss of the answer tokens."""

    def __init__(self, chat: TransformersChatModel, catalog: Catalog, rerank_config: RerankConfig,
                 objective: Objective) -> None:
        self.chat, self.objective = chat, objective
        self.tokenizer = chat._tokenizer
        self.reranker = LLMReranker(LLMClient(chat, timeout_s=3600.0), catalog, rerank_config)
        self.labels: list[int] = []
        for label in LABELS:
            ids = self.tokenizer.encode(label, add_special_tokens=False)
            if len(ids) != 1:
                raise ConfigError(f"label {label!r} is {len(ids)} tokens for this tokenizer; the verbalizer needs one")
            self.labels.append(ids[0])

    def encode(self, case: RankingCase) -> tuple[list[int], list[int]]:
        """(prompt ids, answer ids) as the reranker would send them."""
        if self.objective == "verbalizer":
            prompt = chat_prompt_ids(self.tokenizer, self.reranker.label_prompt(case.history, case.shown))
            return prompt, [self.labels[case.label_index]]
        scorer = self.reranker.pointwise
        prompt = self.tokenizer.encode(scorer.prefix(case.history), add_special_tokens=True)
        return prompt, self.tokenizer.encode(scorer.item_text(case.target), add_special_tokens=False)

    def loss(self, case: RankingCase) -> Any:
        """Mean cross-entropy of the answer tokens given the prompt (a scalar tensor with gradients)."""
        import torch

        prompt, answer = self.encode(case)
        model = self.chat._model
        ids = torch.tensor([prompt + answer[:-1]], device=model.device)
        logits = model(input_ids=ids, logits_to_keep=len(answer)).logits[0]
        return torch.nn.functional.cross_entropy(logits.float(), torch.tensor(answer, device=model.device))
