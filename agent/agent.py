"""RecommenderAgent: retrieval → LLM rerank → grounded explanations and interest shift; chat on top.

The agent composes parts built elsewhere: a `CandidateGenerator` (e.g. `InterestRetriever`), the
`LLMReranker`, the `Explainer` and the interest-evolution summary. Chat replies are assembled from
typed results (grounded texts, catalogue titles), never from free LLM prose, so a prompt injection in
the user's message can at most change the parsed request, which is validated against the catalogue.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.chat.llm_parse import PARSE_MODES, ParseMode
from agent.explain import ExplainConfig, Explainer
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
from agent.types import Diagnostics, Explanation, GroundedText, Recommendation
from retrieval.candidates.base import Candidate, CandidateGenerator
from retrieval.data.model import Dataset, Event
from retrieval.errors import ConfigError, UnknownItemError
from retrieval.vectors.embed import Embedder
from retrieval.vectors.index import VectorIndex

if TYPE_CHECKING:
    from agent.chat.reply import ChatReply
    from agent.chat.session import ChatSession

@dataclass(frozen=True)
class AgentConfig:
    """Agent settings.

    Attributes:
        candidates: retrieval depth handed to the reranker (at most `agent.limits.MAX_K`).
        period: interest-timeline window ("day", "week", "month", "events:N").
        parsing: how chat messages are parsed: "rules" (the deterministic parser; the default, as the
            packaged LLMs do not parse better, docs/chat.md), "rules+llm" (also the
            LLM under constrained output, merged), "auto" (the LLM too, when the backend can constrain
            its output and the rules found nothing but the intent or no intent: `agent.chat.llm_parse.needs_llm`).
        chat_k: items per chat reply (each explained: at most `agent.limits.MAX_EXPLAINED`).
        recent_events: events that define "what I watched lately" for the "different" intent.
        verify_citations: an explanation cites the fewest of the item's largest contributors whose
            removal from the history takes it out of the generator's top k (checked by asking the
            generator again: `retrieval.candidates.counterfactual`); off, it cites the 3 largest.
        llm_budget_s: LLM time one recommendation may spend (rerank, explanations, shift text), on top of
            each call's own deadline (`LLMSettings.timeout_s`); once spent, the rerank falls back to
            retrieval order and the remaining texts are templates (flagged in `diagnostics`). None = no
            budget beyond the per-call deadlines.
    """

    candidates: int = 20
    period: str = "week"
    parsing: ParseMode = "rules"
    chat_k: int = 5
    recent_events: int = 20
    llm_budget_s: float | None = 120.0
    verify_citations: bool = True

    def __post_init__(self) -> None:
        check_count(self.candidates, "candidates", MAX_K)
        check_count(self.chat_k, "chat_k", MAX_EXPLAINED)
        check_count(self.recent_events, "recent_events", None)
        if self.llm_budget_s is not None and not self.llm_budget_s > 0:
            raise ConfigError(f"llm_budget_s must be > 0 seconds or None, got {self.llm_budget_s}")
        if self.parsing not in PARSE_MODES:  # a dataclass does not check its Literal at run time
            raise ConfigError(f"unknown parsing {self.parsing!r}; valid: {', '.join(PARSE_MODES)}")


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
        embedder: the embedder of `index`, for free-text preferences in chat ("something dark and funny");
            None = such text only reaches the reranker's prompt.
    """

    def __init__(self, dataset: Dataset, generator: CandidateGenerator, index: VectorIndex | None = None,
                 client: LLMClient | None = None, reranker: Any = None, explainer: Explainer | None = None,
                 config: AgentConfig | None = None, explain_config: ExplainConfig | None = None,
                 embedder: Embedder | None = None) -> None:
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
        self.embedder = embedder
        self._responder: Any = None
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
        diag = Diagnostics(candidates=len(candidates), generator=self.generator.name,
                           dropped_seen_titles=len(generated) - len(candidates))
        with budget(self.config.llm_budget_s):
            return self.rank(user_id, history, candidates, k, explain, diag=diag)

    def recommend_batch(self, user_ids: Sequence[str], k: int = 10, explain: bool = True,
                        max_concurrency: int | None = None) -> list[Recommendation]:
        """`recommend` for many users, at most `max_concurrency` at once, results in input order.

        A server backend (vLLM) batches the concurrent LLM calls; the embedded model serves one at a
        time. None = the client's default (`LLMClient.default_concurrency`: 1 embedded, 8 for servers;
        1 without a client). Each recommendation keeps its own LLM budget (`AgentConfig.llm_budget_s`).

        Raises:
            as `recommend`, for the first user that fails.
        """
        from agent.concurrency import map_bounded

        limit = max_concurrency or (self.client.default_concurrency if self.client is not None else 1)
        return map_bounded(lambda u: self.recommend(u, k=k, explain=explain), list(user_ids), limit)

    def rank(self, user_id: str, history: Sequence[Event], candidates: Sequence[Candidate], k: int,
             explain: bool = True, request: str | None = None, diag: Diagnostics | None = None) -> Recommendation:
        """Rerank given candidates (by the reranker when set), keep the top k, explain them.

        Args:
            user_id: the user (for the interest-shift text).
            history: the user's events, oldest first.
            candidates: candidates in retrieval order, best first (already filtered by the caller).
            k: items to keep.
            explain: add explanations and the interest-shift text.
            request: the chat message the list answers, shown to the reranker as quoted data.
            diag: diagnostics so far (candidates, generator, ...).
        """
        result = None
        if self.reranker is not None and candidates:
            result = (self.reranker.rerank(history, candidates, request=request) if request is not None
                      else self.reranker.rerank(history, candidates))
        diag = (diag or Diagnostics(candidates=len(candidates), generator=self.generator.name)).model_copy(
            update={"rerank": result})
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
        if explain:  # evidence only where it is read: lists without explanations stay as cheap as before
            start = time.perf_counter()
            picks = self._with_evidence(history, picks)
            cited = self._citations(history, picks, k)
            diag = diag.model_copy(update={"evidence_s": time.perf_counter() - start})
            rising = self.evolution(user_id).short_term
            explanations = tuple(self.explainer.explain(history, items, evidence={c.item_id: c.evidence for c in picks},
                                                        rising=rising, cited=cited))
            shift = self.interest_shift(user_id)
            diag = diag.model_copy(update={
                "explanations_template": sum(e.text.source == "template" for e in explanations),
                "explanations_regenerated": sum(e.text.source == "regenerated" for e in explanations)})
        if len(items) < k:
            diag = diag.model_copy(update={"short_list": True})
        return Recommendation(user=user_id, items=items, titles=tuple(self.catalog[i].title for i in items),
                              scores=tuple(float(c.score) for c in picks), explanations=explanations,
                              interest_shift=shift, diagnostics=diag, evidence=tuple(c.evidence for c in picks))

    def explain_items(self, user_id: str, item_ids: Sequence[str]) -> list[Explanation]:
        """Explanations of given items for a user, citing the evidence the agent's generator gives each item
        (what `recommend` would cite had it listed them).

        Raises:
            UnknownUserError: the user is not in the dataset.
        """
        history = self.history(user_id)
        picks = self._with_evidence(history, [Candidate(i, 0.0, self.generator.name) for i in item_ids])
        return self.explainer.explain(history, list(item_ids), evidence={c.item_id: c.evidence for c in picks},
                                      rising=self.evolution(user_id).short_term)

    def _citations(self, history: Sequence[Event], picks: Sequence[Candidate], k: int) -> dict[str, tuple[str, ...]]:
        """Item → its counterfactually verified citation (`AgentConfig.verify_citations`), for the items the
        generator attributed; items it could not verify, or another source's, cite their largest contributors."""
        own = [c for c in picks if c.source in (self.generator.name, "rerank") and c.evidence]
        if not self.config.verify_citations or not own:
            return {}
        from retrieval.candidates.counterfactual import verified_citations

        found = verified_citations(self.generator, [history], [own], k)[0]
        return {c.item_id: cite.items for c, cite in zip(own, found, strict=True) if cite.verified}

    def _with_evidence(self, history: Sequence[Event], picks: Sequence[Candidate]) -> list[Candidate]:
        """The shown candidates with the generator's evidence, computed for them only (one batch).

        Candidates that carry evidence already (e.g. "more like X") keep it; only the generator's own
        candidates (reranked or not) are attributed, never items another source added.
        """
        own = [c for c in picks if not c.evidence and c.source in (self.generator.name, "rerank")]
        if not own:
            return list(picks)
        found = {c.item_id: c for c in self.generator.with_evidence([history], [own])[0]}
        return [found.get(c.item_id, c) for c in picks]

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
        """Answer one chat message; `session` carries the conversation (updated in place).

        The message is parsed into a typed `ChatRequest` (intent, hard constraints, named titles, free-text
        preference, k: `agent.chat.parse`, plus the LLM under constrained output when the backend allows,
        `agent.chat.llm_parse`); the session accumulates the constraints across turns ("no more comedies"
        stays until lifted); hard constraints filter the candidates, free text and named titles steer
        them, and the reranker sees the message (`agent.chat.respond`).

        Args:
            user_id: user id (UnknownUserError when absent).
            message: the user's message (untrusted data), non-blank and at most
                `agent.limits.MAX_CHAT_MESSAGE_CHARS` characters.
            session: the conversation so far (`agent.chat.session.ChatSession`; save it with `.save(path)`
                and resume with `ChatSession.load(path)`); a new one when None.

        Raises:
            ConfigError: a blank user id; a blank, non-string or too long message; another user's session.
            UnknownUserError: the user is not in the dataset.
        """
        from agent.chat.session import ChatSession

        self.history(user_id)
        check_message(message)
        session = session if session is not None else ChatSession(user=user_id)
        return self.prepare_chat().reply(user_id, message, session)

    def prepare_chat(self) -> Any:
        """The chat responder with the catalogue's vocabulary (`agent.chat.respond.ChatResponder`), built once;
        a server calls it before requests can race to build it."""
        if self._responder is None:
            from agent.chat.respond import ChatResponder

            self._responder = ChatResponder(self)
        return self._responder

    def recent_categories(self, history: Sequence[Event], n: int = 2) -> tuple[str, ...]:
        """The n most frequent categories among the user's recent events."""
        counts: dict[str, float] = {}
        for ev in history[-self.config.recent_events:]:
            cats = self.catalog[ev.item].categories
            for c in cats:
                counts[c] = counts.get(c, 0.0) + 1.0 / len(cats)
        return tuple(sorted(counts, key=lambda c: (-counts[c], c))[:n])
