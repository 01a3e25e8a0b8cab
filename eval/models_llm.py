"""Harness model `llm-rerank`: the LLM reranker over a protocol's candidates, fused with retrieval scores.

Under `rerank` the candidates carry the retriever's scores; under `llmrank` they do not, and the
`base` model (default "interest") scores them instead. The LLM score of each candidate is computed
once per user (standardised logprob or JSON-rank score) and fused:
fused = (1 - w)·z(retrieval) + w·llm. `tune` picks w on the validation stage from a grid that
includes 0 (= the retriever alone), so on validation the fusion is never worse than the retriever.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agent.llm import LLMClient, LLMSettings, make_client
from agent.narrative import NarrativeConfig
from agent.rerank import LLMReranker, RerankConfig, RerankResult, fuse
from eval.metrics import ndcg_at
from eval.models import RankedCandidates, Recommender, TrainData, ValidationData, make_model, register
from retrieval.candidates.base import Candidate
from retrieval.data.datasets import cache_dir as user_cache_dir
from retrieval.data.model import Event
from retrieval.errors import ConfigError

DEFAULT_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


@register("llm-rerank")
class LLMRerankModel(Recommender):
    """LLM reranking as an evaluated model.

    Args:
        backend: LLM backend name ("embedded", "vllm", "llamacpp-server", "openai", "fake").
        model: packaged model name / GGUF path (embedded) or served model name.
        base_url: server URL for server backends.
        method: rerank method ("auto", "logprobs", "json").
        fusion_weight: fixed LLM weight; None = tuned on validation over `weights`.
        weights: grid for tuning, comma-separated or a sequence.
        passes: shuffled passes per rerank (position-bias control).
        history_tokens: narrative token budget.
        calibrate: subtract the label prior of a content-free prompt from the logprob scores
            (see `agent.rerank.RerankConfig.calibrate`).
        cpu_format: embedded GGUF conversion ("original", "q8_0", "q4_0", "f16"); "" = the default
            (see `agent.llm.client.LLMSettings.cpu_format`).
        cache_dir: response cache directory (resumable, reproducible runs); default the user cache dir
            (`<cache>/llm`, as the CLI uses); "" = no cache.
        base: model scoring candidates that arrive without scores (llmrank protocol); "none" = zeros.
        embedder: passed to the base model.
        seed: seed of shuffled passes and sampling.
        chat_model: a LangChain chat model object to use instead of `backend` (tests, custom clients).
        progress: show a progress bar per stage.
    """

    name = "llm-rerank"

    def __init__(self, backend: str = "embedded", model: str | None = None, base_url: str | None = None,
                 method: str = "auto", fusion_weight: float | None = None,
                 weights: str | Sequence[float] = DEFAULT_WEIGHTS, passes: int = 1, history_tokens: int = 400,
                 cache_dir: str | None = None, base: str = "interest", embedder: str = "sentence-transformers",
                 seed: int = 0, chat_model: Any = None, progress: bool = False, cpu_format: str = "",
                 calibrate: bool = False) -> None:
        grid = [float(w) for w in (weights.split(",") if isinstance(weights, str) else weights)]
        if not grid or any(not 0.0 <= w <= 1.0 for w in grid):
            raise ConfigError(f"fusion weights must be in [0, 1]: {weights!r}")
        self.grid = sorted(set(grid) | {0.0})
        self.fusion_weight = None if fusion_weight is None else float(fusion_weight)
        cache = user_cache_dir() / "llm" if cache_dir is None else Path(cache_dir) if cache_dir else None
        self.settings = LLMSettings(backend=backend, model=model, base_url=base_url, seed=int(seed), cache_dir=cache,
                                    cpu_format=cpu_format or None)  # type: ignore[arg-type]
        self.chat_model = chat_model
        self.rerank_config = RerankConfig(method=method, fusion_weight=1.0, passes=int(passes), seed=int(seed),
                                          calibrate=bool(calibrate),
                                          narrative=NarrativeConfig(max_tokens=int(history_tokens)))
        self.base_name, self.embedder, self.seed = base, embedder, int(seed)
        self.progress = progress
        self.results: list[RerankResult] = []
        self.tuning: dict[str, float] = {}

    def fit(self, train: TrainData) -> LLMRerankModel:
        self.train = train
        self.client: LLMClient = make_client(self.settings, self.chat_model)
        self.reranker = LLMReranker(self.client, train.catalog, self.rerank_config)
        self.base: Recommender | None = None
        if self.base_name != "none":
            self.base = make_model(self.base_name, **_base_kwargs(self.base_name, self.embedder, self.seed))
            self._base_fitted = False
        return self

    def llm_scores(self, inputs: Sequence[Sequence[Event]], candidates: Sequence[Sequence[str]],
                   desc: str = "llm rerank") -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per user, (retrieval scores, standardised LLM scores), each of shape (len(candidates[u]),).

        LLM scores are zeros for a user whose rerank fell back (the fusion then keeps retrieval order).
        """
        retrieval = self._retrieval_scores(inputs, candidates)
        llm: list[np.ndarray] = []
        for hist, cands, r in tqdm(list(zip(inputs, candidates, retrieval, strict=True)), desc=desc, leave=False,
                                    disable=not self.progress):
            cand_objs = [Candidate(i, float(s), "retrieval") for i, s in zip(cands, r, strict=True)]
            result = self.reranker.rerank(hist, cand_objs)
            self.results.append(result)
            # Candidates past the reranker's head were never shown to the LLM: below every judged one,
            # not at the standardised mean (0.0), which would lift them over below-average items.
            floor = min(result.llm_scores.values(), default=0.0) - 1.0
            llm.append(np.array([result.llm_scores.get(i, floor) for i in cands], dtype=np.float64))
        return retrieval, llm

    def score_candidates(self, inputs: Sequence[Sequence[Event]],
                         candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        retrieval, llm = self.llm_scores(inputs, candidates)
        w = self.fusion_weight if self.fusion_weight is not None else 0.5
        return [fuse(r, s, w) for r, s in zip(retrieval, llm, strict=True)]

    def score_batch(self, inputs: Sequence[Sequence[Event]]) -> np.ndarray:
        raise ConfigError("llm-rerank scores candidates only: use --protocol rerank or llmrank")

    def tune(self, validation: ValidationData) -> None:
        """Pick the fusion weight with the best validation NDCG@10 (ties: the smaller weight)."""
        if self.fusion_weight is not None and not self.tuning:
            self.tuning = {"fixed": self.fusion_weight}
            return
        if validation.candidates is None:
            raise ConfigError("llm-rerank needs a candidate protocol (rerank or llmrank)")
        retrieval, llm = self.llm_scores(validation.inputs, validation.candidates, desc="llm rerank (validation)")
        best_w, best = 0.0, -1.0
        for w in self.grid:
            ndcg = float(np.mean([_ndcg10(fuse(r, s, w), cands, target) for r, s, cands, target in
                                  zip(retrieval, llm, validation.candidates, validation.targets, strict=True)]))
            self.tuning[f"val_ndcg@10_w{w:g}"] = ndcg
            if ndcg > best + 1e-12:
                best_w, best = w, ndcg
        self.fusion_weight = best_w
        self.validation_results, self.results = self.results, []

    def diagnostics(self) -> dict[str, float]:
        """Test-stage counters: invalid-output, fallback and hallucinated-id rates, tokens, latency."""
        out = dict(self.tuning)
        out["fusion_weight"] = float(self.fusion_weight if self.fusion_weight is not None else 0.5)
        out.update(summarise_results(self.results))
        return out

    def _retrieval_scores(self, inputs: Sequence[Sequence[Event]],
                          candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        out: list[np.ndarray | None] = []
        need: list[int] = []
        for u, cands in enumerate(candidates):
            scores = getattr(cands, "scores", None) if isinstance(cands, RankedCandidates) else None
            out.append(None if scores is None else np.asarray(scores, dtype=np.float64))
            if scores is None:
                need.append(u)
        if need and self.base is not None:
            if not self._base_fitted:
                self.base.fit(self.train)
                self._base_fitted = True
            filled = self.base.score_candidates([inputs[u] for u in need], [candidates[u] for u in need])
            for u, s in zip(need, filled, strict=True):
                out[u] = np.asarray(s, dtype=np.float64)
        return [s if s is not None else np.zeros(len(c)) for s, c in zip(out, candidates, strict=True)]


def summarise_results(results: Sequence[RerankResult]) -> dict[str, float]:
    """Rates and distributions over rerank results (empty input → zeros)."""
    n = len(results)
    if n == 0:
        return {"reranks": 0.0}
    lat = np.array([r.latency_s for r in results])
    return {
        "reranks": float(n),
        "invalid_output_rate": sum(r.invalid_outputs > 0 for r in results) / n,
        "fallback_rate": sum(r.fallback for r in results) / n,
        "hallucinated_id_rate": sum(r.hallucinated_ids > 0 for r in results) / n,
        "retries_mean": float(np.mean([r.retries for r in results])),
        "method_logprobs_share": sum(r.method == "logprobs" for r in results) / n,
        "method_json_share": sum(r.method == "json" for r in results) / n,
        "prompt_tokens_mean": float(np.mean([r.prompt_tokens for r in results])),
        "prompt_tokens_max": float(max(r.prompt_tokens for r in results)),
        "calls_per_rerank": float(np.mean([r.calls for r in results])),
        "cached_call_share": sum(r.cached_calls for r in results) / max(1, sum(r.calls for r in results)),
        "latency_p50_s": float(np.percentile(lat, 50)),
        "latency_p95_s": float(np.percentile(lat, 95)),
    }


def _ndcg10(scores: np.ndarray, candidates: Sequence[str], target: str) -> float:
    if target not in candidates:
        return 0.0
    t = list(candidates).index(target)
    # Pessimistic ties (as the harness): items scoring equal to the target rank before it.
    rank = int(np.sum(scores > scores[t]) + np.sum(scores[:t] == scores[t]) + np.sum(scores[t + 1:] == scores[t]))
    return float(ndcg_at(np.array([rank + 1.0]), 10)[0])


def _base_kwargs(name: str, embedder: str, seed: int) -> dict[str, Any]:
    from eval.models import with_defaults

    return with_defaults(name, {}, {"embedder": embedder, "seed": seed})
