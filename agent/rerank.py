"""LLM reranking of retrieval candidates: verbalizer logprobs or constrained JSON, validated and fused.

Candidates are shown with short labels (A, B, C, ...). Two scoring methods, best available first:

    logprobs  one forward pass; the next-token logprobs of the labels score every candidate
              (LlamaRec's verbalizer). Needs `supports_logprobs`.
    json      the model returns {"ranking": [labels]}, constrained by JSON schema / grammar / json mode
              where the backend can; validated, re-asked with the error, repaired.

Nothing the model returns is trusted: unknown labels are dropped (counted as hallucinated ids),
duplicates dropped, missing candidates filled in retrieval order, invalid replies re-asked a bounded
number of times (an unreadable server reply counts as an invalid output), and when every method fails,
or the backend is down or out of time (each call ends by its deadline, `agent.llm.deadline`), the
retrieval order is returned with `fallback=True` and the reasons in `errors`.
`rerank` never raises for model misbehaviour or backend failure and never returns a foreign id.

The LLM score is fused with the retrieval score: fused = (1 - w)·z(retrieval) + w·z(llm), z being a
per-list standardisation; w = 0 reproduces the retriever exactly (the harness tunes w on validation).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from agent.llm.client import LLMClient
from agent.llm.json_reply import extract_json_object
from agent.narrative import NarrativeConfig, build_narrative
from agent.types import RerankResult
from prompts import data_block, load_prompt, quote
from retrieval.candidates.base import Candidate
from retrieval.data.model import Catalog, Event
from retrieval.errors import ConfigError, LLMError, LLMReplyError
from retrieval.log import get_logger

log = get_logger(__name__)

LABELS: tuple[str, ...] = tuple(chr(ord("A") + i) for i in range(26))
METHODS = ("auto", "logprobs", "json", "retrieval")


class InvalidOutput(ValueError):
    """A model reply that cannot be turned into scores (internal: always caught by the reranker)."""


@dataclass(frozen=True)
class RerankConfig:
    """Reranker settings.

    Attributes:
        method: "auto" (logprobs if the backend has them, else json), "logprobs", "json" or
            "retrieval" (no LLM call).
        fusion_weight: weight w of the LLM score in [0, 1]; 0 = retrieval order, 1 = LLM only.
        passes: shuffled passes aggregated (position-bias control); pass 0 keeps retrieval order.
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
    """

    method: str = "auto"
    fusion_weight: float = 0.5
    passes: int = 1
    max_retries: int = 2
    max_candidates: int = 20
    top_logprobs: int = 20
    title_chars: int = 60
    # 400 history tokens keep a 20-candidate prompt near 900 tokens (SmolLM2 tokenizer, ml-100k).
    narrative: NarrativeConfig = field(default_factory=lambda: NarrativeConfig(max_tokens=400))
    seed: int = 0
    calibrate: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown rerank method {self.method!r}; valid: {', '.join(METHODS)}")
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise ConfigError(f"fusion_weight must be in [0, 1], got {self.fusion_weight}")
        if not 1 <= self.max_candidates <= len(LABELS):
            raise ConfigError(f"max_candidates must be in 1..{len(LABELS)}, got {self.max_candidates}")
        if self.passes < 1 or self.max_retries < 0:
            raise ConfigError(f"passes must be ≥ 1 and max_retries ≥ 0: {self}")


@dataclass
class _Counters:
    retries: int = 0
    invalid_outputs: int = 0
    hallucinated_ids: int = 0
    duplicates: int = 0
    missing_filled: int = 0
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    errors: list[str] = field(default_factory=list)

    def record(self, reply_tokens: int, cached: bool) -> None:
        self.calls += 1
        self.cached_calls += int(cached)
        self.prompt_tokens += reply_tokens


@dataclass(frozen=True)
class _Pass:
    """One presentation of the candidates: `order[j]` is the candidate index shown with LABELS[j].

    `history` and `candidates` are rendered <data> blocks; the method picks the template.
    """

    order: list[int]
    system: str
    history: str
    candidates: str

    def messages(self, template: str) -> list[BaseMessage]:
        labels = LABELS[: len(self.order)]
        if template == "rerank":
            user = load_prompt("rerank").render(history=self.history, candidates=self.candidates,
                                                first_label=labels[0], last_label=labels[-1])
        else:
            user = load_prompt("rerank_json").render(history=self.history, candidates=self.candidates,
                                                     n=len(labels), example=_example(labels))
        return [SystemMessage(self.system), HumanMessage(user)]


class RankingMethod:
    """Base class: score one pass. One method to implement."""

    name = "method"

    def score(self, client: LLMClient, one: _Pass, config: RerankConfig, counters: _Counters) -> np.ndarray:
        """Scores per shown position, shape (len(one.order),), higher = better.

        Raises:
            InvalidOutput: the reply(s) gave nothing usable.
            LLMError: the backend failed.
        """
        raise NotImplementedError


class LogprobMethod(RankingMethod):
    """LlamaRec verbalizer: logprobs of the label tokens at the first answer position.

    Args:
        prior: n → per-label log-probabilities to subtract (calibration), or None.
    """

    name = "logprobs"

    def __init__(self, prior: Callable[[int, _Counters], np.ndarray] | None = None) -> None:
        self.prior = prior

    def score(self, client: LLMClient, one: _Pass, config: RerankConfig, counters: _Counters) -> np.ndarray:
        try:
            reply = client.chat(one.messages("rerank"), max_tokens=1, top_logprobs=_top_k(client, config))
        except LLMReplyError as exc:
            raise InvalidOutput(str(exc)) from None
        counters.record(reply.prompt_tokens, reply.cached)
        scores = label_scores(reply.top_logprobs, LABELS[: len(one.order)])
        return scores if self.prior is None else scores - self.prior(len(one.order), counters)


def _top_k(client: LLMClient, config: RerankConfig) -> int:
    """Alternatives to ask for: calibration asks for all the backend gives, so fewer labels sit at the floor."""
    return max(config.top_logprobs, client.max_logprobs) if config.calibrate else config.top_logprobs


def label_scores(top: dict[str, float], labels: Sequence[str]) -> np.ndarray:
    """Per-label log-probability from first-position alternatives, shape (len(labels),).

    Token variants of one label (" A", "A", "A.") are merged with logsumexp. Labels absent from the
    alternatives get one nat below the least likely alternative returned (they are less likely than
    all of those). Raises InvalidOutput when no label is among the alternatives.
    """
    if not top:
        raise InvalidOutput("the reply carried no logprobs")
    index = {lab: i for i, lab in enumerate(labels)}
    found = np.full(len(labels), -np.inf)
    for token, lp in top.items():
        key = token.strip().strip("().:*\"'[]")
        if key in index:
            i = index[key]
            found[i] = np.logaddexp(found[i], lp)
    if not np.isfinite(found).any():
        raise InvalidOutput(f"no candidate label among the top tokens {sorted(top)[:8]}")
    floor = min(top.values()) - 1.0
    return np.where(np.isfinite(found), found, floor)


class JsonMethod(RankingMethod):
    """{"ranking": [labels]} under the strongest constraint the backend has; validated and re-asked."""

    name = "json"

    def score(self, client: LLMClient, one: _Pass, config: RerankConfig, counters: _Counters) -> np.ndarray:
        labels = LABELS[: len(one.order)]
        schema = ranking_schema(labels)
        first = one.messages("rerank_json")
        messages = list(first)
        for attempt in range(config.max_retries + 1):
            try:
                reply = client.chat(messages, max_tokens=6 * len(labels) + 24, json_schema=schema)
            except LLMReplyError as exc:  # the server's reply itself was unreadable: same as invalid JSON
                problem, text = InvalidOutput(str(exc)), ""
            else:
                counters.record(reply.prompt_tokens, reply.cached)
                try:
                    ranked = parse_ranking(reply.text, labels, counters)
                except InvalidOutput as exc:
                    problem, text = exc, reply.text
                else:
                    # Missing labels go after the ranked ones, in the pass's shown (= retrieval, pass 0) order.
                    missing = [lab for lab in labels if lab not in ranked]
                    counters.missing_filled += len(missing)
                    pos = {lab: r for r, lab in enumerate(ranked + missing)}
                    return np.array([float(len(labels) - pos[lab]) for lab in labels])
            if attempt == config.max_retries:
                raise problem  # counted by the caller
            counters.invalid_outputs += 1
            counters.errors.append(f"json attempt {attempt + 1}: {problem}")
            counters.retries += 1
            retry = load_prompt("rerank_retry").render(error=str(problem)[:200], n=len(labels),
                                                       example=_example(labels))
            messages = [*first, AIMessage(text[:400]), HumanMessage(retry)] if text else list(first)
        raise InvalidOutput("unreachable")  # the loop returns or raises


def ranking_schema(labels: Sequence[str]) -> dict[str, object]:
    """JSON schema of the ranking reply: an array of the given labels (bounded length)."""
    return {"type": "object",
            "properties": {"ranking": {"type": "array", "items": {"type": "string", "enum": list(labels)},
                                       "minItems": 1, "maxItems": len(labels)}},
            "required": ["ranking"], "additionalProperties": False}


def _example(labels: Sequence[str]) -> str:
    return json.dumps({"ranking": list(labels[:3]) + ["..."]})


def parse_ranking(text: str, labels: Sequence[str], counters: _Counters) -> list[str]:
    """Valid labels from a JSON ranking reply, in the model's order; foreign and repeated ones dropped.

    Raises:
        InvalidOutput: empty, not JSON, wrong shape, or no valid label at all.
    """
    try:
        data = extract_json_object(text)
    except ValueError as exc:
        raise InvalidOutput(str(exc)) from None
    entries = data.get("ranking")
    if not isinstance(entries, list):
        raise InvalidOutput('the JSON object has no "ranking" list')
    valid = set(labels)
    out: list[str] = []
    for entry in entries:
        key = str(entry).strip().strip(".:)(").upper() if isinstance(entry, str | int) else ""
        if key not in valid:
            counters.hallucinated_ids += 1
        elif key in out:
            counters.duplicates += 1
        else:
            out.append(key)
    if not out:
        raise InvalidOutput(f"none of the {len(entries)} entries is a candidate label ({labels[0]}-{labels[-1]})")
    return out


def _standardise(x: np.ndarray) -> np.ndarray:
    if x.size < 2:
        return np.zeros_like(x, dtype=np.float64)
    std = float(x.std())
    return (x - x.mean()) / std if std > 1e-12 else np.zeros_like(x)


class LLMReranker:
    """Rerank candidates for one user's history with an LLM.

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

    def methods(self) -> list[RankingMethod]:
        """The methods tried in order under the configured method and the backend's capabilities."""
        m = self.config.method
        if m == "retrieval":
            return []
        if m == "logprobs" or (m == "auto" and self.client.capabilities.logprobs):
            return [LogprobMethod(self.label_prior if self.config.calibrate else None), JsonMethod()]
        return [JsonMethod()]

    def rerank(self, history: Sequence[Event], candidates: Sequence[Candidate]) -> RerankResult:
        """Rerank `candidates` (any order; retrieval order = by score, best first) for `history`.

        Never raises for model or backend failure: the result then has `fallback=True` and the
        retrieval order.
        """
        start = time.perf_counter()
        order = sorted(range(len(candidates)), key=lambda i: -candidates[i].score)
        ranked = [candidates[i] for i in order]
        head, tail = ranked[: self.config.max_candidates], ranked[self.config.max_candidates:]
        counters = _Counters()
        llm: np.ndarray | None = None
        used = "retrieval"
        methods = self.methods() if len(head) > 1 else []
        if methods:
            passes = self._passes(history, head)
            for method in methods:
                try:
                    llm = self._score_passes(method, passes, counters)
                    used = method.name
                    break
                except InvalidOutput as exc:
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
        out = [Candidate(head[i].item_id, float(fused[i]), source or head[i].source) for i in best]
        low = min((c.score for c in out), default=0.0)
        out += [Candidate(c.item_id, low - 1.0 - j, c.source) for j, c in enumerate(tail)]
        return RerankResult(
            candidates=out, llm_scores=scores, method=used, fallback=bool(methods) and llm is None,
            retries=counters.retries, invalid_outputs=counters.invalid_outputs,
            hallucinated_ids=counters.hallucinated_ids, duplicates=counters.duplicates,
            missing_filled=counters.missing_filled, errors=tuple(counters.errors), calls=counters.calls,
            cached_calls=counters.cached_calls, prompt_tokens=counters.prompt_tokens,
            latency_s=time.perf_counter() - start)

    def label_prior(self, n: int, counters: _Counters) -> np.ndarray:
        """Per-label log-probabilities for n labels under a content-free prompt (asked once per n).

        Raises:
            LLMError: the backend failed (the rerank then stops, as for any backend failure).
        """
        if n not in self._priors:
            blank = quote("N/A")
            empty = _Pass(list(range(n)), self._system, data_block("history", ["N/A"]),
                          data_block("candidates", [f"{lab}. {blank}" for lab in LABELS[:n]]))
            try:
                reply = self.client.chat(empty.messages("rerank"), max_tokens=1,
                                         top_logprobs=_top_k(self.client, self.config))
                counters.record(reply.prompt_tokens, reply.cached)
                self._priors[n] = label_scores(reply.top_logprobs, LABELS[:n])
            except (InvalidOutput, LLMReplyError) as exc:
                counters.errors.append(f"calibration: {exc}; labels left uncalibrated")
                self._priors[n] = np.zeros(n)
        return self._priors[n]

    def _score_passes(self, method: RankingMethod, passes: list[_Pass], counters: _Counters) -> np.ndarray:
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
            per_candidate = np.empty_like(shown)
            per_candidate[one.order] = shown
            total += _standardise(per_candidate)
            done += 1
        if done == 0:
            raise last or InvalidOutput("no pass succeeded")
        return total / done

    def _passes(self, history: Sequence[Event], head: Sequence[Candidate]) -> list[_Pass]:
        narrative = build_narrative(history, self.catalog, self.config.narrative, self.client.count_tokens)
        block = data_block("history", [narrative.text])
        rng = np.random.default_rng(self.config.seed)
        out = []
        for p in range(self.config.passes):
            order = list(range(len(head))) if p == 0 else [int(i) for i in rng.permutation(len(head))]
            out.append(_Pass(order, self._system, block, self._candidate_block([head[i] for i in order])))
        return out

    def _candidate_block(self, shown: Sequence[Candidate]) -> str:
        lines = []
        for lab, cand in zip(LABELS, shown, strict=False):
            item = self.catalog[cand.item_id]
            cats = " " + quote(", ".join(item.categories[:3])) if item.categories else ""
            lines.append(f"{lab}. {quote(item.title, self.config.title_chars)}{cats}")
        return data_block("candidates", lines)


def fuse(retrieval: np.ndarray, llm: np.ndarray, weight: float) -> np.ndarray:
    """(1 - w)·z(retrieval) + w·llm for arrays of shape (n,), `llm` already standardised."""
    if not math.isfinite(weight) or not 0.0 <= weight <= 1.0:
        raise ConfigError(f"fusion weight must be in [0, 1], got {weight}")
    return (1.0 - weight) * _standardise(retrieval) + weight * llm
