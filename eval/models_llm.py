"""Harness model `llm-rerank`: the LLM reranker over a protocol's candidates, fused with retrieval scores.

Under `rerank` the candidates carry the retriever's scores; under `llmrank` they do not, and the
`base` model (default "interest") scores them instead. The LLM score of each candidate is computed
once per user (standardised logprob, JSON-rank or pointwise PMI score) and fused:
fused = (1 - w)·z(retrieval) + w·llm. `tune` picks w on the validation stage from a grid that
includes 0 (= the retriever alone), so on validation the fusion is never worse than the retriever;
for the pointwise method it picks the calibration weight alpha on validation too. Users are reranked
`max_concurrency` at a time (default: 1 for the embedded model, 8 for a server).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


@register("llm-rerank")
class LLMRerankModel(Recommender):
    """LLM reranking as an evaluated model.

    Args:
        backend: LLM backend name ("embedded", "transformers", "vllm", "llamacpp-server", "openai", "fake").
        model: packaged model name / GGUF path (embedded), packaged name / HF directory (transformers) or
            served model name.
        adapter: transformers backend: a tuned ranker from `driftrec tune-ranker`; it must have been tuned on
            this run's training events, else `LeakageError`.
        base_url: server URL for server backends.
        method: rerank method ("auto", "logprobs", "json").
        fusion_weight: fixed LLM weight; None = tuned on validation over `weights`.
        weights: grid for tuning, comma-separated or a sequence.
        passes: shuffled passes per rerank (position-bias control).
        history_tokens: narrative token budget.
        pmi_alphas: pointwise: calibration weights alpha tried on validation (score = log p(item | history)
            - alpha · log p(item | no history)); comma-separated or a sequence.
        with_categories: pointwise: score the title plus its categories.
        shift_summary: add the interest-shift summary line to the prompt.
        shuffle_all: listwise: shuffle the first pass too (every pass its own permutation).
        max_concurrency: reranks in flight at once; None = the client's default (embedded 1, servers 8).
        timeout_s: deadline of one LLM call (`LLMSettings.timeout_s`).
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
                 weights: str | float | Sequence[float] = DEFAULT_WEIGHTS, passes: int = 1, history_tokens: int = 400,
                 cache_dir: str | None = None, base: str = "interest", embedder: str = "sentence-transformers",
                 seed: int = 0, chat_model: Any = None, progress: bool = False, cpu_format: str = "",
                 calibrate: bool = False, pmi_alphas: str | float | Sequence[float] = DEFAULT_ALPHAS,
                 with_categories: bool = False, shift_summary: bool = False, shuffle_all: bool = False,
                 max_concurrency: int | None = None, timeout_s: float = 60.0, adapter: str = "") -> None:
        grid = _numbers(weights, "weights")
        if not grid or any(not 0.0 <= w <= 1.0 for w in grid):
            raise ConfigError(f"fusion weights must be in [0, 1]: {weights!r}")
        self.grid = sorted(set(grid) | {0.0})
        self.fusion_weight = None if fusion_weight is None else float(fusion_weight)
        cache = user_cache_dir() / "llm" if cache_dir is None else Path(cache_dir) if cache_dir else None
        self.settings = LLMSettings(backend=backend, model=model, base_url=base_url, seed=int(seed), cache_dir=cache,
                                    timeout_s=float(timeout_s), adapter=Path(adapter) if adapter else None,
                                    cpu_format=cpu_format or None)  # type: ignore[arg-type]
        self.chat_model = chat_model
        self.alphas = sorted(set(_numbers(pmi_alphas, "pmi_alphas")))
        if not self.alphas:
            raise ConfigError(f"pmi_alphas must list at least one weight: {pmi_alphas!r}")
        self.pmi_alpha = 0.5 if 0.5 in self.alphas else self.alphas[0]
        self.rerank_config = RerankConfig(method=method, fusion_weight=1.0, passes=int(passes), seed=int(seed),  # type: ignore[arg-type]
                                          calibrate=bool(calibrate), with_categories=bool(with_categories),
                                          shift_summary=bool(shift_summary), shuffle_all=bool(shuffle_all),
                                          narrative=NarrativeConfig(max_tokens=int(history_tokens)))
        if max_concurrency is not None and int(max_concurrency) < 1:
            raise ConfigError(f"max_concurrency must be ≥ 1, got {max_concurrency}")
        self.max_concurrency = None if max_concurrency is None else int(max_concurrency)
        self.base_name, self.embedder, self.seed = base, embedder, int(seed)
        self.progress = progress
        self.results: list[RerankResult] = []
        self.tuning: dict[str, float] = {}
        # The last scored stage, per user: retrieval scores and LLM results (for analyses beyond the harness).
        self.last_retrieval: list[np.ndarray] = []
        self.last_results: list[RerankResult] = []
        self.last_candidates: list[Sequence[str]] = []

    def fit(self, train: TrainData) -> LLMRerankModel:
        self.train = train
        if self.settings.adapter is not None:
            from agent.llm.adapter import check_trained_on

            check_trained_on(self.settings.adapter, train.histories)  # LeakageError when tuned on other events
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
        retrieval, results = self.rerank_stage(inputs, candidates, desc)
        return retrieval, [llm_array(r, c, self.pmi_alpha) for r, c in zip(results, candidates, strict=True)]

    def rerank_stage(self, inputs: Sequence[Sequence[Event]], candidates: Sequence[Sequence[str]],
                     desc: str = "llm rerank") -> tuple[list[np.ndarray], list[RerankResult]]:
        """Per user, the retrieval scores (shape (len(candidates[u]),)) and the rerank result."""
        retrieval = self._retrieval_scores(inputs, candidates)
        cand_objs = [[Candidate(i, float(s), "retrieval") for i, s in zip(cands, r, strict=True)]
                     for cands, r in zip(candidates, retrieval, strict=True)]
        results = self.reranker.rerank_batch(list(inputs), cand_objs, max_concurrency=self.max_concurrency,
                                             progress=self.progress)
        self.results.extend(results)
        self.last_retrieval, self.last_results, self.last_candidates = retrieval, results, list(candidates)
        return retrieval, results

    def score_candidates(self, inputs: Sequence[Sequence[Event]],
                         candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        retrieval, llm = self.llm_scores(inputs, candidates)
        w = self.fusion_weight if self.fusion_weight is not None else 0.5
        return [fuse(r, s, w) for r, s in zip(retrieval, llm, strict=True)]

    def score_batch(self, inputs: Sequence[Sequence[Event]]) -> np.ndarray:
        raise ConfigError("llm-rerank scores candidates only: use --protocol rerank or llmrank")

    def tune(self, validation: ValidationData) -> None:
        """Pick the fusion weight (and, pointwise, the calibration weight alpha) with the best validation
        NDCG@10; ties go to the smaller weight, then the smaller alpha."""
        if self.fusion_weight is not None and not self.tuning:
            self.tuning = {"fixed": self.fusion_weight}
            return
        if validation.candidates is None:
            raise ConfigError("llm-rerank needs a candidate protocol (rerank or llmrank)")
        retrieval, results = self.rerank_stage(validation.inputs, validation.candidates,
                                               desc="llm rerank (validation)")
        pointwise = any(r.llm_parts for r in results)
        best_w, best_a, best = 0.0, self.pmi_alpha, -1.0
        for a in self.alphas if pointwise else [self.pmi_alpha]:
            llm = [llm_array(r, c, a) for r, c in zip(results, validation.candidates, strict=True)]
            for w in self.grid:
                ndcg = float(np.mean([_ndcg10(fuse(r, s, w), cands, target) for r, s, cands, target in
                                      zip(retrieval, llm, validation.candidates, validation.targets, strict=True)]))
                self.tuning[f"val_ndcg@10_w{w:g}" + (f"_a{a:g}" if pointwise else "")] = ndcg
                if ndcg > best + 1e-12:
                    best_w, best_a, best = w, a, ndcg
        self.fusion_weight, self.pmi_alpha = best_w, best_a
        self.validation_results, self.results = self.results, []

    def diagnostics(self) -> dict[str, float]:
        """Test-stage counters: invalid-output, fallback and hallucinated-id rates, tokens, latency."""
        out = dict(self.tuning)
        out["fusion_weight"] = float(self.fusion_weight if self.fusion_weight is not None else 0.5)
        if self.rerank_config.method == "pointwise":
            out["pmi_alpha"] = self.pmi_alpha
        out.update(summarise_results(self.results, shuffled_first=self.rerank_config.shuffle_all))
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


def _numbers(value: str | float | Sequence[float], what: str) -> list[float]:
    """A grid given as "0,0.5,1", one number (`--model-arg llm-rerank.pmi_alphas=0.5` reads as 0.5) or a list."""
    items = value.split(",") if isinstance(value, str) else [value] if isinstance(value, int | float) else value
    try:
        return [float(v) for v in items if not (isinstance(v, str) and not v.strip())]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be numbers, e.g. 0,0.5,1: got {value!r}") from None


def llm_array(result: RerankResult, candidates: Sequence[str], alpha: float) -> np.ndarray:
    """One user's standardised LLM scores in candidate order, shape (len(candidates),).

    Pointwise results are recomputed from their raw parts with calibration weight `alpha`. Candidates
    past the reranker's head were never shown to the LLM: below every judged one, not at the
    standardised mean (0.0), which would lift them over below-average items. A fallback gives zeros.
    """
    scores = result.llm_scores
    if result.llm_parts:
        ids = [i for i in candidates if i in result.llm_parts]
        raw = np.array([result.llm_parts[i][0] - alpha * result.llm_parts[i][1] for i in ids])
        std = float(raw.std()) if raw.size > 1 else 0.0
        z = (raw - raw.mean()) / std if std > 1e-12 else np.zeros_like(raw)
        scores = dict(zip(ids, z.tolist(), strict=True))
    floor = min(scores.values(), default=0.0) - 1.0
    return np.array([scores.get(i, floor) for i in candidates], dtype=np.float64)


def position_following(results: Sequence[RerankResult], shuffled_first: bool = False) -> dict[str, float]:
    """How much listwise choices follow the label position rather than the item.

    Over the shuffled passes (every pass after the first, or all with `shuffled_first`; with one pass,
    over the unshuffled ones, where position and retrieval rank coincide): the share of passes whose
    top choice sits at the most frequent top position, that position (0 = label A), and the share at
    label A. A model that reads the items picks positions spread over the list (about 1/n each
    under shuffling); one that follows position keeps picking the same label.
    """
    tops = [p for r in results for j, p in enumerate(r.top_positions) if shuffled_first or j > 0]
    shuffled = 1.0
    if not tops:
        tops, shuffled = [p for r in results for p in r.top_positions], 0.0
    if not tops:
        return {}
    counts = np.bincount(np.array(tops))
    return {"position_modal_share": float(counts.max() / len(tops)), "position_modal": float(counts.argmax()),
            "position_first_share": float(counts[0] / len(tops)), "position_passes": float(len(tops)),
            "position_shuffled": shuffled}


def summarise_results(results: Sequence[RerankResult], shuffled_first: bool = False) -> dict[str, float]:
    """Rates and distributions over rerank results (empty input → zeros)."""
    n = len(results)
    if n == 0:
        return {"reranks": 0.0}
    lat = np.array([r.latency_s for r in results])
    return {**position_following(results, shuffled_first),
            "backend_retry_rate": sum(r.backend_retries > 0 for r in results) / n,
            "method_pointwise_share": sum(r.method == "pointwise" for r in results) / n,
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
