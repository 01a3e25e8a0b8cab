"""LLM reranking of retrieval candidates: listwise (verbalizer logprobs / JSON) or pointwise likelihood, fused.

Methods (`RerankConfig.method`):

    logprobs   listwise verbalizer (`agent.listwise.LogprobMethod`): candidates labelled A, B, C ...,
               the next-token logprobs of the labels score them in one forward pass.
    json       listwise constrained JSON ranking (`agent.listwise.JsonMethod`), validated and re-asked.
    pointwise  each candidate's title as the continuation of the narrative, calibrated by its
               likelihood without a history (`agent.pointwise`); no labels, so no position bias.
    auto       logprobs when the backend has them, else json.
    retrieval  no LLM call.

Nothing the model returns is trusted: unknown labels are dropped (counted as hallucinated ids),
duplicates dropped, missing candidates filled in retrieval order, invalid replies re-asked a bounded
number of times (an unreadable server reply counts as an invalid output), and when every method fails,
or the backend is down or out of time (each call ends by its deadline, `agent.llm.deadline`), the
retrieval order is returned with `fallback=True` and the reasons in `errors`. HTTP retries of a call
(429/5xx) are counted in `RerankResult.backend_retries`.
`rerank` never raises for model misbehaviour or backend failure and never returns a foreign id.

The LLM score is fused with the retrieval score: fused = (1 - w)·z(retrieval) + w·z(llm), z being a
per-list standardisation; w = 0 reproduces the retriever exactly (the harness tunes w on validation).
`rerank_batch` reranks many users with a bounded number of concurrent LLM calls.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from langchain_core.messages import BaseMessage

from agent.concurrency import map_bounded
from agent.listwise import (
    LABELS,
    Counters,
    InvalidOutput,
    JsonMethod,
    LogprobMethod,
    Pass,
    RankingMethod,
    label_scores,
    parse_ranking,
    ranking_schema,
    top_k,
)
from agent.llm.client import LLMClient
from agent.narrative import NarrativeConfig, build_narrative
from agent.pointwise import PointwiseScorer
from agent.rerank_context import context_block, shift_summary
from agent.types import RerankResult
from prompts import data_block, load_prompt, quote
from retrieval.candidates.base import Candidate
from retrieval.data.model import Catalog, Event
from retrieval.errors import ConfigError, LLMError, LLMReplyError
from retrieval.log import get_logger

log = get_logger(__name__)

__all__ = ["LABELS", "METHODS", "InvalidOutput", "JsonMethod", "LLMReranker", "LogprobMethod", "RankingMethod",
           "RerankConfig", "RerankResult", "fuse", "label_scores", "parse_ranking", "ranking_schema"]

RerankMethod = Literal["auto", "logprobs", "json", "pointwise", "retrieval"]
METHODS: tuple[str, ...] = ("auto", "logprobs", "json", "pointwise", "retrieval")


@dataclass(frozen=True)
class RerankConfig:
    """Reranker settings.

    Attributes:
        method: "auto" (logprobs if the backend has them, else json), "logprobs", "json", "pointwise"
            (title likelihood after the narrative; needs the `prompt_logprobs` capability, else json) or
            "retrieval" (no LLM call).
        fusion_weight: weight w of the LLM score in [0, 1]; 0 = retrieval order, 1 = LLM only.
        passes: listwise: passes aggregated (position-bias control); pass 0 keeps retrieval order unless
            `shuffle_all`, every other pass has its own seeded permutation.
        shuffle_all: listwise: shuffle pass 0 as well (every pass an independent permutation).
        max_retries: re-asks after an invalid JSON reply.
        max_candidates: the top candidates shown to the LLM (≤ 26); the rest keep retrieval order below.
        top_logprobs: alternatives requested per position (servers cap at 20).
        title_chars: titles are cut to this many characters in the candidate list.
        narrative: history rendering and its token budget.
        seed: seed of the shuffled passes.
        calibrate: logprob method: subtract each label's log-probability under a content-free
            prompt (same template, history and titles "N/A"; one extra call per candidate count,
            remembered) so that a model's preference for a label position is not read as a
            preference for the item shown there (contextual calibration, Zhao et al. 2021).
        pmi_alpha: pointwise: score = log p(item | history) - pmi_alpha · log p(item | no history).
        with_categories: pointwise: the scored text is the title plus its categories.
        shift_summary: add a one-line interest-shift summary (categories earlier vs newest events,
            `agent.rerank_context.shift_summary`) to the prompt.
    """

    method: RerankMethod = "auto"
    fusion_weight: float = 0.5
    passes: int = 1
    shuffle_all: bool = False
    max_retries: int = 2
    max_candidates: int = 20
    top_logprobs: int = 20
    title_chars: int = 60
    # 400 history tokens keep a 20-candidate prompt near 900 tokens (SmolLM2 tokenizer, ml-100k).
    narrative: NarrativeConfig = field(default_factory=lambda: NarrativeConfig(max_tokens=400))
    seed: int = 0
    calibrate: bool = False
    pmi_alpha: float = 0.5
    with_categories: bool = False
    shift_summary: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown rerank method {self.method!r}; valid: {', '.join(METHODS)}")
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise ConfigError(f"fusion_weight must be in [0, 1], got {self.fusion_weight}")
        if not 1 <= self.max_candidates <= len(LABELS):
            raise ConfigError(f"max_candidates must be in 1..{len(LABELS)}, got {self.max_candidates}")
        if self.passes < 1 or self.max_retries < 0:
            raise ConfigError(f"passes must be ≥ 1 and max_retries ≥ 0: {self}")
        if not math.isfinite(self.pmi_alpha):
            raise ConfigError(f"pmi_alpha must be finite, got {self.pmi_alpha}")


class PointwiseMethod:
    """Marker of the pointwise method in `LLMReranker.methods()` (scored by `agent.pointwise`)."""

    name = "pointwise"


def _standardise(x: np.ndarray) -> np.ndarray:
    if x.size < 2:
        return np.zeros_like(x, dtype=np.float64)
    std = float(x.std())
    return (x - x.mean()) / std if std > 1e-12 else np.zeros_like(x)


class LLMReranker:
    """Rerank candidates for one user's history with an LLM.

    Thread-safe (with a thread-safe client): `rerank_batch` runs several reranks at once.

    Args:
        client: the LLM client (capabilities decide the method under "auto").
        catalog: items, for titles and categories.
        config: reranker settings.
    """

    def __init__(self, client: LLMClient, catalog: Catalog, config: RerankConfig | None = None) -> None:
        self.client = client
        self.catalog = catalog
        self.config = config or RerankConfig()
        self._system = load_prompt("system").render()
        self._priors: dict[int, np.ndarray] = {}
        self.pointwise = PointwiseScorer(client, catalog, self.config.narrative, self.config.with_categories,
                                         self.config.title_chars)

    def methods(self) -> list[RankingMethod | PointwiseMethod]:
        """The methods tried in order under the configured method and the backend's capabilities."""
        m, caps = self.config.method, self.client.capabilities
        if m == "retrieval":
            return []
        listwise: list[RankingMethod] = [JsonMethod()]
        if m == "logprobs" or (m in ("auto", "pointwise") and caps.logprobs):
            listwise.insert(0, LogprobMethod(self.label_prior if self.config.calibrate else None))
        if m == "pointwise" and caps.prompt_logprobs:
            return [PointwiseMethod(), *listwise]
        return list(listwise)

    def rerank(self, history: Sequence[Event], candidates: Sequence[Candidate],
               request: str | None = None) -> RerankResult:
        """Rerank `candidates` (any order; retrieval order = by score, best first) for `history`.

        Args:
            history: the user's events, oldest first.
            candidates: the candidates to rerank.
            request: the user's chat request (untrusted text: quoted in its own data block), or None.

        Never raises for model or backend failure: the result then has `fallback=True` and the
        retrieval order.
        """
        start = time.perf_counter()
        order = sorted(range(len(candidates)), key=lambda i: -candidates[i].score)
        ranked = [candidates[i] for i in order]
        head, tail = ranked[: self.config.max_candidates], ranked[self.config.max_candidates:]
        counters = Counters()
        llm: np.ndarray | None = None
        parts: dict[str, tuple[float, float]] = {}
        used = "retrieval"
        methods = self.methods() if len(head) > 1 else []
        if methods:
            shift = shift_summary(history, self.catalog) if self.config.shift_summary else None
            context = context_block(request, shift)
            for method in methods:
                try:
                    if isinstance(method, PointwiseMethod):
                        llm, parts = self._pointwise(history, head, counters, context)
                    else:
                        llm = self._score_passes(method, self._passes(history, head, context), counters)
                    used = method.name
                    break
                except (InvalidOutput, LLMReplyError) as exc:
                    counters.invalid_outputs += 1
                    counters.errors.append(f"{method.name}: {exc}")
                except LLMError as exc:
                    # A backend failure (timeout, server down) would repeat for the next method: stop.
                    counters.errors.append(f"{method.name}: {exc}")
                    break
        if methods and llm is None:
            log.warning("rerank fell back to retrieval order for %d candidates: %s", len(head),
                        "; ".join(counters.errors)[:500])
        retrieval = np.array([c.score for c in head], dtype=np.float64)
        if llm is None:
            fused = _standardise(retrieval)
            scores: dict[str, float] = {}
        else:
            fused = fuse(retrieval, llm, self.config.fusion_weight)
            scores = {c.item_id: float(s) for c, s in zip(head, llm, strict=True)}
        # Stable sort: ties keep retrieval order, so w = 0 reproduces the retriever exactly.
        best = sorted(range(len(head)), key=lambda i: -fused[i])
        source = "rerank" if llm is not None else None
        # replace(): a candidate keeps its evidence through the rerank
        out = [replace(head[i], score=float(fused[i]), source=source or head[i].source) for i in best]
        low = min((c.score for c in out), default=0.0)
        out += [replace(c, score=low - 1.0 - j) for j, c in enumerate(tail)]
        return RerankResult(
            candidates=out, llm_scores=scores, method=used, fallback=bool(methods) and llm is None,
            retries=counters.retries, invalid_outputs=counters.invalid_outputs,
            hallucinated_ids=counters.hallucinated_ids, duplicates=counters.duplicates,
            missing_filled=counters.missing_filled, errors=tuple(counters.errors), calls=counters.calls,
            cached_calls=counters.cached_calls, prompt_tokens=counters.prompt_tokens,
            latency_s=time.perf_counter() - start, backend_retries=counters.backend_retries,
            top_positions=tuple(counters.top_positions) if used in ("logprobs", "json") else (),
            llm_parts=parts)

    def rerank_batch(self, histories: Sequence[Sequence[Event]], candidates: Sequence[Sequence[Candidate]],
                     requests: Sequence[str | None] | None = None, max_concurrency: int | None = None,
                     progress: bool = False) -> list[RerankResult]:
        """`rerank` for many users, at most `max_concurrency` at once (None: `client.default_concurrency`).

        Results are in input order and equal to the serial ones (the shuffles are seeded per user).
        """
        if len(histories) != len(candidates) or (requests is not None and len(requests) != len(histories)):
            raise ConfigError("rerank_batch: histories, candidates and requests must have the same length")
        asks = list(requests) if requests is not None else [None] * len(histories)
        jobs = list(zip(histories, candidates, asks, strict=True))
        limit = max_concurrency or self.client.default_concurrency
        return map_bounded(lambda job: self.rerank(job[0], job[1], job[2]), jobs, limit, desc="rerank",
                           progress=progress)

    def label_prior(self, n: int, counters: Counters) -> np.ndarray:
        """Per-label log-probabilities for n labels under a content-free prompt (asked once per n).

        Raises:
            LLMError: the backend failed (the rerank then stops, as for any backend failure).
        """
        if n not in self._priors:
            blank = quote("N/A")
            empty = Pass(list(range(n)), self._system, data_block("history", ["N/A"]),
                         data_block("candidates", [f"{lab}. {blank}" for lab in LABELS[:n]]))
            try:
                reply = self.client.chat(empty.messages("rerank"), max_tokens=1,
                                         top_logprobs=top_k(self.client, self.config))
                counters.record(reply.prompt_tokens, reply.cached, reply.attempts)
                self._priors[n] = label_scores(reply.top_logprobs, LABELS[:n])
            except (InvalidOutput, LLMReplyError) as exc:
                counters.errors.append(f"calibration: {exc}; labels left uncalibrated")
                self._priors[n] = np.zeros(n)
        return self._priors[n]

    def _pointwise(self, history: Sequence[Event], head: Sequence[Candidate], counters: Counters,
                   context: str) -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
        """Standardised PMI scores of `head`, shape (len(head),), and the raw parts per item."""
        ids = [c.item_id for c in head]
        raw = self.pointwise.score(history, ids, counters, context)
        parts = {i: (float(c), float(u)) for i, c, u in zip(ids, raw.conditional, raw.unconditional, strict=True)}
        return _standardise(raw.pmi(self.config.pmi_alpha)), parts

    def _score_passes(self, method: RankingMethod, passes: list[Pass], counters: Counters) -> np.ndarray:
        """Mean standardised score per candidate over the passes that succeeded (≥ 1 or raise)."""
        total = np.zeros(len(passes[0].order))
        done = 0
        last: InvalidOutput | None = None
        for one in passes:
            try:
                shown = method.score(self.client, one, self.config, counters)
            except InvalidOutput as exc:
                if done == 0 and one is passes[0]:
                    raise
                counters.invalid_outputs += 1
                counters.errors.append(f"{method.name} pass: {exc}")
                last = exc
                continue
            counters.top_positions.append(int(np.argmax(shown)))
            per_candidate = np.empty_like(shown)
            per_candidate[one.order] = shown
            total += _standardise(per_candidate)
            done += 1
        if done == 0:
            raise last or InvalidOutput("no pass succeeded")
        return total / done

    def _passes(self, history: Sequence[Event], head: Sequence[Candidate], context: str = "") -> list[Pass]:
        """The presentations: pass 0 in retrieval order (unless `shuffle_all`), the others each shuffled.

        Every pass has its own permutation, seeded by `config.seed`, the history and the candidate ids,
        so users get different orders and a rerun gets the same ones.
        """
        block = self._history_block(history)
        ids = "\x1f".join([*(e.item for e in history), "", *(c.item_id for c in head)]).encode("utf-8")
        rng = np.random.default_rng([self.config.seed, zlib.crc32(ids)])
        out = []
        for p in range(self.config.passes):
            keep = p == 0 and not self.config.shuffle_all
            order = list(range(len(head))) if keep else [int(i) for i in rng.permutation(len(head))]
            out.append(Pass(order, self._system, block, self._candidate_block([head[i].item_id for i in order]),
                            context))
        return out

    def label_prompt(self, history: Sequence[Event], shown: Sequence[str]) -> list[BaseMessage]:
        """The verbalizer prompt with item `shown[j]` labelled LABELS[j] (what `driftrec tune-ranker` trains on).

        Raises:
            ConfigError: more items than labels.
        """
        if not 1 <= len(shown) <= len(LABELS):
            raise ConfigError(f"a label prompt shows 1..{len(LABELS)} items, got {len(shown)}")
        one = Pass(list(range(len(shown))), self._system, self._history_block(history), self._candidate_block(shown))
        return one.messages("rerank")

    def _history_block(self, history: Sequence[Event]) -> str:
        narrative = build_narrative(history, self.catalog, self.config.narrative, self.client.count_tokens)
        return data_block("history", [narrative.text])

    def _candidate_block(self, shown: Sequence[str]) -> str:
        lines = []
        for lab, item_id in zip(LABELS, shown, strict=False):
            item = self.catalog[item_id]
            cats = " " + quote(", ".join(item.categories[:3])) if item.categories else ""
            lines.append(f"{lab}. {quote(item.title, self.config.title_chars)}{cats}")
        return data_block("candidates", lines)


def fuse(retrieval: np.ndarray, llm: np.ndarray, weight: float) -> np.ndarray:
    """(1 - w)·z(retrieval) + w·llm for arrays of shape (n,), `llm` already standardised."""
    if not math.isfinite(weight) or not 0.0 <= weight <= 1.0:
        raise ConfigError(f"fusion weight must be in [0, 1], got {weight}")
    return (1.0 - weight) * _standardise(retrieval) + weight * llm
