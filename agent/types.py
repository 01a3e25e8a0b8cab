"""Typed results of the agent: grounded texts, explanations, recommendations, chat replies and sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field

from retrieval.candidates.base import Candidate, Evidence

TextSource = Literal["llm", "regenerated", "template"]


@dataclass(frozen=True)
class RerankResult:
    """A reranked list and how it was obtained.

    Attributes:
        candidates: the input candidates reordered, best first; `score` is the fused score and
            `source` is "rerank" (or the original source on fallback).
        llm_scores: item id → standardised LLM score (empty when no method succeeded).
        method: "logprobs", "json", "pointwise" or "retrieval" (the method whose scores were used).
        fallback: True when an LLM was asked but retrieval order was returned.
        retries: re-asks after invalid replies.
        invalid_outputs: replies that could not be used (unparseable, no label, empty, ...).
        hallucinated_ids: labels/ids in replies that are not candidates (dropped).
        duplicates: repeated labels in replies (dropped).
        missing_filled: candidates absent from a JSON ranking, filled in retrieval order.
        errors: backend errors and validation messages, in order.
        calls: LLM calls made (cache hits included).
        cached_calls: calls served from the response cache.
        prompt_tokens: prompt tokens over all calls.
        latency_s: wall time of the whole rerank.
        backend_retries: HTTP attempts repeated after a 429/5xx (within each call's deadline).
        top_positions: listwise: per pass, the shown position (0 = label A) of the candidate the model
            scored highest; how often it is the same position measures position following.
        llm_parts: pointwise: item id → (log p(item | history), log p(item | no history)), the raw parts
            of its LLM score (the harness tunes the calibration weight on them).
    """

    candidates: list[Candidate]
    llm_scores: dict[str, float]
    method: str
    fallback: bool = False
    retries: int = 0
    invalid_outputs: int = 0
    hallucinated_ids: int = 0
    duplicates: int = 0
    missing_filled: int = 0
    errors: tuple[str, ...] = ()
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    latency_s: float = 0.0
    backend_retries: int = 0
    top_positions: tuple[int, ...] = ()
    llm_parts: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def item_ids(self) -> list[str]:
        """Reranked item ids, best first."""
        return [c.item_id for c in self.candidates]


class Diagnostics(BaseModel):
    """How a list or a chat reply was made: a typed record, never prose to parse.

    Attributes:
        candidates: candidates handed to the reranker, after dropping seen titles (None: no retrieval ran).
        generator: name of the candidate generator (None: no retrieval ran).
        dropped_seen_titles: candidates dropped because the user rated another copy of the same title.
        rerank: the reranker's typed result; None when no reranker ran (retrieval order kept).
        explanations_template: explanations built from the evidence template (LLM answers rejected or no LLM).
        explanations_regenerated: explanations whose first LLM answer failed grounding and a re-ask passed.
        short_list: fewer items than asked for.
        parse_source: which parsers made the chat request ("rules", "rules+llm"); None outside chat.
        llm_parse_used: the LLM's parse added or changed something in the request.
        llm_parse_fallback: the LLM was asked to parse the message but its reply was unusable.
        llm_parse_error: why the LLM's parse was unusable.
        matching: catalogue items that satisfy the constraints in force (not yet seen or shown).
        ambiguous_title: the message named a title that several catalogue titles match (asked back).
        unknown_title: the message named a title that is not in the catalogue.
        no_index: "more like" found the title but there are no item vectors.
        anchor: the item id "more like" searched around.
        widened_to_popularity: "different" ran short and added popular items outside the recent genres.
        not_suggested: "why" named a title that was not suggested in this conversation.
        shift_source: how the interest-shift text was obtained.
        evidence_s: wall time spent attributing the shown items' scores to history items (evidence).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    candidates: int | None = None
    generator: str | None = None
    dropped_seen_titles: int = 0
    rerank: RerankResult | None = None
    explanations_template: int = 0
    explanations_regenerated: int = 0
    short_list: bool = False
    parse_source: Literal["rules", "rules+llm"] | None = None
    llm_parse_used: bool = False
    llm_parse_fallback: bool = False
    llm_parse_error: str | None = None
    matching: int | None = None
    ambiguous_title: bool = False
    unknown_title: bool = False
    no_index: bool = False
    anchor: str | None = None
    widened_to_popularity: bool = False
    not_suggested: bool = False
    shift_source: TextSource | None = None
    evidence_s: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rerank_method(self) -> str:
        """"logprobs", "json" or "retrieval" from the reranker; "none" when no reranker ran."""
        return self.rerank.method if self.rerank is not None else "none"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rerank_fallback(self) -> bool:
        """True when an LLM reranker was asked but retrieval order was returned."""
        return self.rerank is not None and self.rerank.fallback


class GroundingReport(BaseModel):
    """Mentions of catalogue categories and titles found in a text, checked against the evidence.

    Attributes:
        categories: category mentions found (canonical catalogue names).
        titles: title mentions found (canonical catalogue titles), including quoted unknown titles.
        ungrounded: the mentions (categories or titles) that are not in the evidence.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    categories: tuple[str, ...] = ()
    titles: tuple[str, ...] = ()
    ungrounded: tuple[str, ...] = ()

    @property
    def grounded(self) -> bool:
        """True when every mention is in the evidence."""
        return not self.ungrounded


class GroundedText(BaseModel):
    """A generated text after the grounding check, with how it was obtained.

    Attributes:
        text: the final text (always grounded: an LLM text that failed the check is replaced).
        source: "llm" (first answer passed), "regenerated" (a re-ask passed) or "template" (built from evidence).
        attempts: LLM calls made (0 when no LLM was used).
        ungrounded_first: ungrounded mentions in the first LLM answer (0 when no LLM answer).
        ungrounded_final: ungrounded mentions in the final text (0 unless the check itself is broken).
        errors: why LLM answers were rejected (ungrounded mentions, empty text, backend errors), in order.
        latency_s: wall time spent producing the text.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    source: TextSource
    attempts: int = 0
    ungrounded_first: int = 0
    ungrounded_final: int = 0
    errors: tuple[str, ...] = ()
    latency_s: float = 0.0


class Explanation(BaseModel):
    """Why one item is recommended, citing history items.

    Attributes:
        item_id: the recommended item.
        title: its title.
        evidence: history item ids the explanation may cite (largest contribution first); for a "more
            like X" item, X.
        text: the grounded explanation.
        evidence_detail: the typed evidence behind `evidence`: each cited item's contribution to the
            score, the generator that measured it and its kind (co-occurrence, content, sequence, ...).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: str
    title: str
    evidence: tuple[str, ...]
    text: GroundedText
    evidence_detail: tuple[Evidence, ...] = ()


class Recommendation(BaseModel):
    """A ranked list for one user with explanations and the interest-shift text.

    Attributes:
        user: user id.
        items: item ids, best first.
        titles: their titles.
        scores: final scores (reranked when an LLM reranker ran, else retrieval scores).
        explanations: one per item when requested, same order; empty otherwise.
        interest_shift: the grounded description of how the user's interests moved, if requested.
        diagnostics: how the list was made (reranker result, dropped titles, template explanations, ...).
        evidence: per item, same order as `items`, the generator's evidence for it (history items and their
            contributions, largest first), so "why X?" can answer later; computed with explanations only
            (empty tuples otherwise, and for items the generator did not score).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str
    items: tuple[str, ...]
    titles: tuple[str, ...]
    scores: tuple[float, ...]
    explanations: tuple[Explanation, ...] = ()
    interest_shift: GroundedText | None = None
    diagnostics: Diagnostics = Diagnostics()
    evidence: tuple[tuple[Evidence, ...], ...] = ()

    def explanation(self, item_id: str) -> Explanation | None:
        """The explanation of one item, or None."""
        return next((e for e in self.explanations if e.item_id == item_id), None)
