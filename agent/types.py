"""Typed results of the agent: grounded texts, explanations, recommendations, chat replies and sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TextSource = Literal["llm", "regenerated", "template"]
Intent = Literal["recommend", "more_like", "different", "why", "recent_interests", "help"]
INTENTS: tuple[str, ...] = ("recommend", "more_like", "different", "why", "recent_interests", "help")


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
        evidence: history item ids the explanation may cite (most similar first).
        text: the grounded explanation.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: str
    title: str
    evidence: tuple[str, ...]
    text: GroundedText


class Recommendation(BaseModel):
    """A ranked list for one user with explanations and the interest-shift text.

    Attributes:
        user: user id.
        items: item ids, best first.
        titles: their titles.
        scores: final scores (reranked when an LLM reranker ran, else retrieval scores).
        explanations: one per item when requested, same order; empty otherwise.
        interest_shift: the grounded description of how the user's interests moved, if requested.
        flags: how the list was made: reranking method, fallback, retries, invalid outputs, notes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str
    items: tuple[str, ...]
    titles: tuple[str, ...]
    scores: tuple[float, ...]
    explanations: tuple[Explanation, ...] = ()
    interest_shift: GroundedText | None = None
    flags: dict[str, str | int | float | bool] = Field(default_factory=dict)

    def explanation(self, item_id: str) -> Explanation | None:
        """The explanation of one item, or None."""
        return next((e for e in self.explanations if e.item_id == item_id), None)


class ChatReply(BaseModel):
    """The agent's answer to one chat message.

    Attributes:
        text: what to show the user.
        intent: the intent the message was routed to.
        recommendations: the list shown with this reply, if any.
        interest_shift: the interest-shift text, if the reply includes one.
        flags: routing method ("tools", "llm", "keywords"), fallbacks, unknown titles, errors.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    intent: Intent
    recommendations: Recommendation | None = None
    interest_shift: GroundedText | None = None
    flags: dict[str, str | int | float | bool] = Field(default_factory=dict)


@dataclass
class ChatSession:
    """What one conversation remembers: items shown (with explanations) and the turns so far.

    Attributes:
        user: the user the session belongs to (a session is never reused across users).
        shown: item ids already shown, oldest first ("more" excludes them).
        last: the latest list shown ("why the second one?").
        explanations: item id → explanation for shown items ("why did you suggest X").
        turns: (role, text) pairs, user messages stored verbatim as data.
    """

    user: str
    shown: list[str] = field(default_factory=list)
    last: list[str] = field(default_factory=list)
    explanations: dict[str, Explanation] = field(default_factory=dict)
    turns: list[tuple[str, str]] = field(default_factory=list)

    def remember(self, rec: Recommendation) -> None:
        """Record a shown list."""
        self.last = list(rec.items)
        for item in rec.items:
            if item not in self.shown:
                self.shown.append(item)
        for exp in rec.explanations:
            self.explanations[exp.item_id] = exp
