"""RecommenderAgent: retrieval → LLM rerank → grounded explanations and interest shift; chat on top.

The agent composes parts built elsewhere: a `CandidateGenerator` (e.g. `InterestRetriever`), the
`LLMReranker`, the `Explainer` and the interest-evolution summary. Chat replies are assembled from
typed results (grounded texts, catalogue titles), never from free LLM prose, so a prompt injection in
the user's message can at most change which of the fixed intents runs.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.explain import ExplainConfig, Explainer
from agent.grounding import display_title, title_aliases
from agent.intent import Route, route
from agent.limits import (
    MAX_EXPLAINED,
    MAX_K,
    check_count,
    check_explained,
    check_item_ids,
    check_message,
    check_user_id,
)
from agent.llm.client import LLMClient
from agent.llm.deadline import budget, expired
from agent.seen_titles import SeenTitles
from agent.types import (
    ROUTINGS,
    ChatReply,
    ChatSession,
    Diagnostics,
    Explanation,
    GroundedText,
    Recommendation,
    Routing,
)
from retrieval.candidates.base import Candidate, CandidateGenerator
from retrieval.data.model import Dataset, Event, Item
from retrieval.errors import ConfigError, UnknownItemError
from retrieval.vectors.index import VectorIndex

_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
             "eighth": 8, "ninth": 9, "tenth": 10}
_ORDINAL = re.compile(r"^(?:the\s+)?(?:(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth)"
                      r"(?:\s+one)?|(?:number|no\.?|#)\s*(\d+))$", re.IGNORECASE)


@dataclass(frozen=True)
class AgentConfig:
    """Agent settings.

    Attributes:
        candidates: retrieval depth handed to the reranker (at most `agent.limits.MAX_K`).
        period: interest-timeline window ("day", "week", "month", "events:N").
        routing: chat routing: "auto" (tools when supported, else LLM), "tools", "llm", "keywords".
        chat_k: items per chat reply (each explained: at most `agent.limits.MAX_EXPLAINED`).
        recent_events: events that define "what I watched lately" for the "different" intent.
        llm_budget_s: LLM time one recommendation may spend (rerank, explanations, shift text), on top of
            each call's own deadline (`LLMSettings.timeout_s`); once spent, the rerank falls back to
            retrieval order and the remaining texts are templates (flagged in `diagnostics`). None = no
            budget beyond the per-call deadlines.
    """

    candidates: int = 20
    period: str = "week"
    routing: Routing = "auto"
    chat_k: int = 5
    recent_events: int = 20
    llm_budget_s: float | None = 120.0

    def __post_init__(self) -> None:
        check_count(self.candidates, "candidates", MAX_K)
        check_count(self.chat_k, "chat_k", MAX_EXPLAINED)
        check_count(self.recent_events, "recent_events", None)
        if self.llm_budget_s is not None and not self.llm_budget_s > 0:
            raise ConfigError(f"llm_budget_s must be > 0 seconds or None, got {self.llm_budget_s}")
        if self.routing not in ROUTINGS:  # a dataclass does not check its Literal at run time
            raise ConfigError(f"unknown routing {self.routing!r}; valid: {', '.join(ROUTINGS)}")


class RecommenderAgent:
    """Recommendations with explanations and interest shifts, and a chat front end.

    Args:
        dataset: catalogue and histories.
        generator: candidate generator (must cover every user of `dataset`).
        index: item vectors (supporting items, "more like", window vectors); optional.
        client: LLM client; None = retrieval order and template texts (no LLM at all).
        reranker: an `agent.rerank.LLMReranker` (or anything with `rerank(history, candidates)`); None = none.
        explainer: defaults to an `Explainer` over `client`.
        config: agent settings.
    """

    def __init__(self, dataset: Dataset, generator: CandidateGenerator, index: VectorIndex | None = None,
                 client: LLMClient | None = None, reranker: Any = None, explainer: Explainer | None = None,
                 config: AgentConfig | None = None, explain_config: ExplainConfig | None = None) -> None:
        self.dataset = dataset
        self.catalog = dataset.catalog
        self.generator = generator
        self.index = index
        self.client = client
        self.reranker = reranker
        self.explainer = explainer or Explainer(dataset.catalog, client, index, explain_config)
        self.config = config or AgentConfig()
        self._evolutions: dict[str, Any] = {}
        self._shifts: dict[str, GroundedText] = {}
        self._aliases: dict[str, list[str]] | None = None
        self._popularity: Counter[str] | None = None
        self.seen_titles = SeenTitles(dataset.catalog)

    def history(self, user_id: str) -> tuple[Event, ...]:
        """The user's events, oldest first: the agent's one user lookup (generators take histories).

        Raises:
            ConfigError: the id is not a string, or blank.
            UnknownUserError: the user is not in the dataset.
        """
        return self.dataset.history(check_user_id(user_id))

    # ------------------------------------------------------------------ recommend

    def recommend(self, user_id: str, k: int = 10, explain: bool = True, exclude: Sequence[str] = ()) -> Recommendation:
        """Top-k items for a user, reranked by the LLM when a reranker is set.

        Args:
            user_id: user id (UnknownUserError when absent).
            k: items to return, 1 ≤ k ≤ `agent.limits.MAX_K` (fewer when fewer are left: `short_list`).
            explain: add per-item explanations and the interest-shift text (k ≤ `agent.limits.MAX_EXPLAINED`).
            exclude: item ids not to return (e.g. already shown in a chat).

        Raises:
            ConfigError: a blank user id, k out of range, k above the explanation cap with `explain`, or a
                malformed `exclude`.
            UnknownUserError: the user is not in the dataset.
            UnknownItemError: `exclude` names an item the catalogue does not hold.
        """
        check_count(k, "k", MAX_K)
        if explain:
            check_explained(k)
        history = self.history(user_id)
        skip = self._exclusions(exclude)
        depth = self.seen_titles.depth(history, max(self.config.candidates, k) + len(skip))
        generated = [c for c in self.generator.generate(history, depth) if c.item_id not in skip]
        candidates = self.seen_titles.keep(history, generated)
        with budget(self.config.llm_budget_s):
            result = None
            if self.reranker is not None and candidates:
                result = self.reranker.rerank(history, candidates)
            diag = Diagnostics(candidates=len(candidates), generator=self.generator.name,
                               dropped_seen_titles=len(generated) - len(candidates), rerank=result)
            if result is not None:
                candidates = list(result.candidates)
            return self._package(user_id, history, candidates[:k], explain, diag, k)

    def _exclusions(self, exclude: Sequence[str]) -> set[str]:
        skip = set(check_item_ids(exclude, "exclude"))
        unknown = sorted(i for i in skip if i not in self.catalog)
        if unknown:
            raise UnknownItemError(f"exclude names {len(unknown):,} item id(s) not in the catalogue, e.g. "
                                   f"{unknown[0]!r}")
        return skip

    def _package(self, user_id: str, history: Sequence[Event], picks: Sequence[Candidate], explain: bool,
                 diag: Diagnostics, k: int) -> Recommendation:
        items = tuple(c.item_id for c in picks)
        explanations: tuple[Explanation, ...] = ()
        shift = None
        if explain:
            explanations = tuple(self.explainer.explain(history, items))
            shift = self.interest_shift(user_id)
            diag = diag.model_copy(update={
                "explanations_template": sum(e.text.source == "template" for e in explanations),
                "explanations_regenerated": sum(e.text.source == "regenerated" for e in explanations)})
        if len(items) < k:
            diag = diag.model_copy(update={"short_list": True})
        return Recommendation(user=user_id, items=items, titles=tuple(self.catalog[i].title for i in items),
                              scores=tuple(float(c.score) for c in picks), explanations=explanations,
                              interest_shift=shift, diagnostics=diag)

    def evolution(self, user_id: str) -> Any:
        """The user's `retrieval.evolution.summary.Evolution` (computed once per user)."""
        if user_id not in self._evolutions:
            from retrieval.evolution.summary import summarize_evolution

            self._evolutions[user_id] = summarize_evolution(user_id, self.history(user_id), self.catalog,
                                                            self.index, self.config.period)
        return self._evolutions[user_id]

    def interest_shift(self, user_id: str) -> GroundedText:
        """The grounded interest-shift description (computed once per user)."""
        if user_id in self._shifts:
            return self._shifts[user_id]
        text = self.explainer.describe_shift(self.evolution(user_id))
        if not expired():  # a template forced by a spent budget is not remembered
            self._shifts[user_id] = text
        return text

    # ------------------------------------------------------------------ LangChain

    def as_retriever(self, user_id: str, k: int = 10) -> Any:
        """This user's recommendations as a LangChain `BaseRetriever` (see `agent.adapters`).

        `invoke(query)` ignores the query text and returns `recommend(user_id, k, explain=False)` as
        Documents: the title as `page_content`; `item_id`, `score`, `rank`, `categories` in `metadata`.

        Raises:
            ConfigError: a blank user id, or k outside 1 to `agent.limits.MAX_K`.
            UnknownUserError: the user is not in the dataset.
        """
        from agent.adapters import make_retriever  # LangChain only when asked for

        return make_retriever(self, user_id, k)

    def as_tool(self, name: str = "recommend_items", k: int = 5) -> Any:
        """The agent as a LangChain `StructuredTool` (user_id, k, optional message) → JSON text.

        See `agent.adapters.make_tool`: without a message, `recommend(user_id, k, explain=False)`; with
        one, `chat` (one session per user). The agent's errors are raised, not returned as text.

        Raises:
            ConfigError: the default k is outside 1 to `agent.limits.MAX_K`.
        """
        from agent.adapters import make_tool

        return make_tool(self, name, k)

    # ------------------------------------------------------------------ chat

    def chat(self, user_id: str, message: str, session: ChatSession | None = None) -> ChatReply:
        """Answer one chat message; `session` carries what was shown before (updated in place).

        Args:
            user_id: user id (UnknownUserError when absent).
            message: the user's message (untrusted: it only selects one of the fixed intents), non-blank
                and at most `agent.limits.MAX_CHAT_MESSAGE_CHARS` characters.
            session: the conversation so far; a new one when None.

        Raises:
            ConfigError: a blank user id; a blank, non-string or too long message; another user's session.
            UnknownUserError: the user is not in the dataset.
        """
        history = self.history(user_id)
        check_message(message)
        session = session if session is not None else ChatSession(user=user_id)
        if session.user != user_id:
            raise ConfigError(f"session belongs to user {session.user!r}, not {user_id!r}")
        r = route(self.client, message, self.config.routing)
        diag = Diagnostics(route=r.method, route_fallback=r.fallback, route_overridden=r.overridden,
                           route_error=r.error or None)
        handler = {"recommend": self._chat_recommend, "more_like": self._chat_more_like,
                   "different": self._chat_different, "why": self._chat_why,
                   "recent_interests": self._chat_recent, "help": self._chat_help}[r.intent]
        reply = handler(user_id, history, r, session, diag)
        session.turns.append(("user", message))
        session.turns.append(("assistant", reply.text))
        return reply

    def _listing(self, intro: str, rec: Recommendation) -> str:
        lines = [intro]
        for n, (item_id, title) in enumerate(zip(rec.items, rec.titles, strict=True), 1):
            exp = rec.explanation(item_id)
            lines.append(f"{n}. {display_title(title)}" + (f" — {exp.text.text}" if exp else ""))
        return "\n".join(lines)

    def _chat_recommend(self, user_id: str, history: Sequence[Event], r: Route, session: ChatSession,
                        diag: Diagnostics) -> ChatReply:
        rec = self.recommend(user_id, self.config.chat_k, explain=True, exclude=session.shown)
        if not rec.items:
            return ChatReply(text="I have nothing new left to recommend.", intent="recommend", diagnostics=diag)
        more = bool(session.shown)
        session.remember(rec)
        intro = "Here are more picks you have not seen yet:" if more else "Here are my picks for you:"
        return ChatReply(text=self._listing(intro, rec), intent="recommend", recommendations=rec, diagnostics=diag)

    def resolve_title(self, text: str | None, among: Sequence[str] | None = None) -> Item | None:
        """The catalogue item a user's title text means, or None (never a guess from a fragment).

        Tries, case-insensitively: the whole text as a title or alias ("the godfather", "heat (1995)"),
        then shorter leading parts ("toy story please" → "toy story"), then titles containing the whole
        text as words (≥ 2 words or ≥ 5 letters); several hits → the most popular.

        Args:
            text: title as the user wrote it.
            among: restrict to these item ids (e.g. the items shown in a session).
        """
        if not text:
            return None
        allowed = set(among) if among is not None else None
        aliases = self._title_aliases()
        words = text.lower().split()
        for n in range(len(words), 0, -1):
            hits = [i for i in aliases.get(" ".join(words[:n]), ()) if allowed is None or i in allowed]
            if hits:
                return self.catalog[self._most_popular(hits)]
        query = " ".join(words)
        if len(words) < 2 and len(query) < 5:
            return None
        pattern = re.compile(rf"(?<!\w){re.escape(query)}(?!\w)")
        ids = allowed if allowed is not None else self.catalog.ids
        hits = [i for i in ids if pattern.search(self.catalog[i].title.lower())]
        return self.catalog[self._most_popular(hits)] if hits else None

    def _title_aliases(self) -> dict[str, list[str]]:
        if self._aliases is None:
            self._aliases = {}
            for item in self.catalog:
                for alias in title_aliases(item.title):
                    self._aliases.setdefault(alias.lower(), []).append(item.id)
        return self._aliases

    def _most_popular(self, ids: Sequence[str]) -> str:
        if self._popularity is None:
            self._popularity = self.dataset.item_popularity()
        return max(ids, key=lambda i: self._popularity.get(i, 0))  # type: ignore[union-attr]

    def _unknown(self, intent: str, title: str | None, diag: Diagnostics) -> ChatReply:
        shown = (title or "")[:80]
        text = (f"I could not find a title matching “{shown}” in the catalogue, so I will not guess. "
                "Please check the spelling or give the exact title.") if shown else \
            "Which title do you mean? Please name it."
        return ChatReply(text=text, intent=intent,  # type: ignore[arg-type]
                         diagnostics=diag.model_copy(update={"unknown_title": True}))

    def _chat_more_like(self, user_id: str, history: Sequence[Event], r: Route, session: ChatSession,
                        diag: Diagnostics) -> ChatReply:
        anchor = self.resolve_title(r.title)
        if anchor is None:
            return self._unknown("more_like", r.title, diag)
        if self.index is None or anchor.id not in self.index:
            return ChatReply(text=f"I found {display_title(anchor.title)}, but I have no item vectors to find "
                                  "similar titles.",
                             intent="more_like", diagnostics=diag.model_copy(update={"no_index": True}))
        skip = {ev.item for ev in history} | set(session.shown) | {anchor.id}
        k = self.config.chat_k
        picks = [Candidate(i, s, "more_like") for i, s in similar_items(self.index, anchor.id, k, skip)]
        rec = self._package(user_id, history, picks, True, diag.model_copy(update={"anchor": anchor.id}), k)
        session.remember(rec)
        intro = f"Titles close to {display_title(anchor.title)} that you have not seen:"
        return ChatReply(text=self._listing(intro, rec),
                         intent="more_like", recommendations=rec, diagnostics=rec.diagnostics)

    def recent_categories(self, history: Sequence[Event], n: int = 2) -> tuple[str, ...]:
        """The n most frequent categories among the user's recent events."""
        counts: dict[str, float] = {}
        for ev in history[-self.config.recent_events:]:
            cats = self.catalog[ev.item].categories
            for c in cats:
                counts[c] = counts.get(c, 0.0) + 1.0 / len(cats)
        return tuple(sorted(counts, key=lambda c: (-counts[c], c))[:n])

    def _chat_different(self, user_id: str, history: Sequence[Event], r: Route, session: ChatSession,
                        diag: Diagnostics) -> ChatReply:
        recent = set(self.recent_categories(history))
        skip = {ev.item for ev in history} | set(session.shown)
        k = self.config.chat_k
        pool = self.generator.generate(history, max(200, 10 * k) + len(session.shown))
        picks = [c for c in pool if c.item_id not in skip and not recent & set(self.catalog[c.item_id].categories)]
        if len(picks) < k:
            # The user's neighbourhood is all one genre: widen to popular items outside the recent genres.
            popular = self.dataset.item_popularity().most_common()
            chosen = {c.item_id for c in picks}
            picks += [Candidate(i, float(n), "popularity") for i, n in popular
                      if i not in skip and i not in chosen and not recent & set(self.catalog[i].categories)]
            diag = diag.model_copy(update={"widened_to_popularity": True})
        rec = self._package(user_id, history, picks[:k], True, diag, k)
        session.remember(rec)
        from agent.evidence import join_words

        intro = (f"Something different from the {join_words(sorted(recent))} you watched lately:" if recent
                 else "Something different from what you watched lately:")
        return ChatReply(text=self._listing(intro, rec), intent="different", recommendations=rec,
                         diagnostics=rec.diagnostics)

    def _chat_why(self, user_id: str, history: Sequence[Event], r: Route, session: ChatSession,
                  diag: Diagnostics) -> ChatReply:
        if not r.title:
            if not session.shown:
                return ChatReply(text="I have not suggested anything yet in this conversation.", intent="why",
                                 diagnostics=diag)
            titles = ", ".join(self.catalog[i].title for i in session.shown[-5:])
            return ChatReply(text=f"Which title do you mean? I suggested: {titles}.", intent="why", diagnostics=diag)
        shown = self._ordinal(r.title, session) or self.resolve_title(r.title, among=session.shown)
        if shown is None:
            item = self.resolve_title(r.title)
            if item is None:
                return self._unknown("why", r.title, diag)
            return ChatReply(text=f"I did not suggest {display_title(item.title)} in this conversation.",
                             intent="why", diagnostics=diag.model_copy(update={"not_suggested": True}))
        exp = session.explanations.get(shown.id)
        if exp is None:
            exp = self.explainer.explain(history, [shown.id])[0]
            session.explanations[shown.id] = exp
        return ChatReply(text=f"I suggested {display_title(shown.title)} because: {exp.text.text}", intent="why",
                         diagnostics=diag)

    def _ordinal(self, text: str, session: ChatSession) -> Item | None:
        """ "the first one", "number 2", "#3": a position in the latest list shown."""
        m = _ORDINAL.search(text)
        if not m or not session.last:
            return None
        pos = _ORDINALS[m.group(1).lower()] if m.group(1) else int(m.group(2))
        return self.catalog[session.last[pos - 1]] if 1 <= pos <= len(session.last) else None

    def _chat_recent(self, user_id: str, history: Sequence[Event], r: Route, session: ChatSession,
                     diag: Diagnostics) -> ChatReply:
        shift = self.interest_shift(user_id)
        return ChatReply(text=shift.text, intent="recent_interests", interest_shift=shift,
                         diagnostics=diag.model_copy(update={"shift_source": shift.source}))

    def _chat_help(self, user_id: str, history: Sequence[Event], r: Route, session: ChatSession,
                   diag: Diagnostics) -> ChatReply:
        text = ("I can recommend titles for you, find more like a title you name, suggest something different "
                "from what you watched lately, tell you why I suggested a title, or describe what you have "
                "been into lately.")
        return ChatReply(text=text, intent="help", diagnostics=diag)


def similar_items(index: VectorIndex, item_id: str, k: int, skip: set[str]) -> list[tuple[str, float]]:
    """Nearest items to one item, minus `skip`; (item id, cosine) pairs, best first."""
    hits = index.search(np.asarray(index.vector(item_id), dtype=np.float32), k + len(skip) + 1)
    return [(i, s) for i, s in hits if i not in skip and i != item_id][:k]
