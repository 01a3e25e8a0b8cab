"""Executing a parsed chat request: hard constraints filter, free text and named titles steer, the
session remembers; replies say plainly when a constraint cannot be met or a title is unknown.

Replies are assembled from typed results (catalogue titles, grounded texts), never from free LLM prose,
so a prompt injection in a message can at most change the parsed request, which is validated against
the catalogue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.chat.llm_parse import parse_request
from agent.chat.reply import ChatReply
from agent.chat.request import ChatRequest, Constraints, TitleRef
from agent.chat.session import ChatSession
from agent.chat.vocabulary import CatalogVocabulary
from agent.evidence import join_words
from agent.grounding import display_title
from agent.limits import MAX_EXPLAINED
from agent.llm.deadline import budget
from agent.types import Diagnostics, Recommendation
from retrieval.candidates.base import Candidate, Evidence
from retrieval.data.model import Event
from retrieval.errors import ConfigError

if TYPE_CHECKING:
    from agent.agent import RecommenderAgent

RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al., 2009)


class ChatResponder:
    """Answers chat messages for one `RecommenderAgent` (built by it on first use)."""

    def __init__(self, agent: RecommenderAgent) -> None:
        self.agent = agent
        self.catalog = agent.catalog
        self.vocab = CatalogVocabulary(agent.catalog, agent.dataset.item_popularity())

    # ------------------------------------------------------------------ entry

    def reply(self, user_id: str, message: str, session: ChatSession) -> ChatReply:
        """Parse, update the session's constraints, run the intent, record the turn."""
        history = self.agent.history(user_id)
        if session.user != user_id:
            raise ConfigError(f"session belongs to user {session.user!r}, not {user_id!r}")
        parsed = parse_request(self.agent.client, message, self.vocab, self.agent.config.parsing)
        req = parsed.request
        last_years = [y for i in session.last if (y := self.vocab.year(i)) is not None]
        session.constraints = session.constraints.apply(req, last_years)
        diag = Diagnostics(parse_source="rules+llm" if parsed.llm_asked else "rules", llm_parse_used=parsed.llm_used,
                           llm_parse_fallback=parsed.fallback, llm_parse_error=parsed.error)
        handler = {"recommend": self._recommend, "refine": self._recommend, "more_like": self._more_like,
                   "different": self._different, "explain": self._explain, "interests": self._interests,
                   "unknown": self._help}[req.intent]
        with budget(self.agent.config.llm_budget_s):
            text, rec, extra = handler(user_id, history, req, session, message)
        diag = diag.model_copy(update=extra)
        if rec is not None:
            session.remember(rec)
            rec = rec.model_copy(update={"diagnostics": rec.diagnostics.model_copy(update=extra | {
                k: getattr(diag, k) for k in ("parse_source", "llm_parse_used", "llm_parse_fallback",
                                              "llm_parse_error")})})
            diag = rec.diagnostics
        session.add_turn("user", message)
        session.add_turn("assistant", text)
        return ChatReply(text=text, intent=req.intent, request=req, constraints=session.constraints,
                         recommendations=rec, interest_shift=rec.interest_shift if rec else None,
                         diagnostics=diag)

    # ------------------------------------------------------------------ lists

    def _recommend(self, user_id: str, history: Sequence[Event], req: ChatRequest, session: ChatSession,
                   message: str) -> tuple[str, Recommendation | None, dict[str, Any]]:
        lists: list[tuple[list[Candidate], float]] = []
        if req.preference:
            lists.append((self._text_search(req.preference), 1.0))
        intro = "Here are more picks you have not seen yet" if session.shown else "Here are my picks for you"
        return self._answer(user_id, history, req, session, message, lists, intro)

    def _more_like(self, user_id: str, history: Sequence[Event], req: ChatRequest, session: ChatSession,
                   message: str) -> tuple[str, Recommendation | None, dict[str, Any]]:
        refs = list(req.references)
        if req.position is not None:
            if not 1 <= req.position <= len(session.last):
                return self._no_position(req.position, session), None, {}
            item = self.catalog[session.last[req.position - 1]]
            refs = [TitleRef(text=item.title, item_id=item.id)]
        if not refs:
            return "Which title should I find more like? Please name it.", None, {"unknown_title": True}
        if (problem := self._unresolved(refs)) is not None:
            return problem
        anchors = [r.item_id for r in refs if r.item_id is not None]
        if self.agent.index is None or any(a not in self.agent.index for a in anchors):
            names = join_words([display_title(self.catalog[a].title) for a in anchors])
            return (f"I found {names}, but I have no item vectors to find similar titles.", None, {"no_index": True})
        lists = [(self._neighbours(anchors, req.preference), 2.0)]
        names = join_words([display_title(self.catalog[a].title) for a in anchors])
        return self._answer(user_id, history, req, session, message, lists, f"Titles close to {names}",
                            personal_weight=0.5, extra={"anchor": anchors[0]}, skip=set(anchors))

    def _different(self, user_id: str, history: Sequence[Event], req: ChatRequest, session: ChatSession,
                   message: str) -> tuple[str, Recommendation | None, dict[str, Any]]:
        recent = self.agent.recent_categories(history)
        blocked = set(session.shown) | ({ev.item for ev in history} if not session.constraints.include_seen else set())
        # The recent categories are avoided, not forbidden: when nothing else is left (a catalogue of two
        # categories), the less frequent one is allowed back.
        while recent:
            constraints = session.constraints.model_copy(update={"exclude_categories": tuple(dict.fromkeys(
                session.constraints.exclude_categories + recent))})
            if any(i not in blocked and self._allowed(i, constraints) for i in self.catalog.ids):
                break
            recent = recent[:-1]
        else:
            constraints = session.constraints
        intro = (f"Something different from the {join_words(sorted(recent))} you watched lately" if recent
                 else "Something different from what you watched lately")
        return self._answer(user_id, history, req, session, message, [], intro, constraints=constraints)

    def _answer(self, user_id: str, history: Sequence[Event], req: ChatRequest, session: ChatSession,
                message: str, lists: list[tuple[list[Candidate], float]], intro: str, *,
                personal_weight: float = 1.0, constraints: Constraints | None = None,
                extra: dict[str, Any] | None = None, skip: set[str] | None = None,
                ) -> tuple[str, Recommendation | None, dict[str, Any]]:
        """Candidates satisfying the constraints, fused with the steering lists, reranked and explained."""
        constraints = constraints or session.constraints
        k = min(req.k or self.agent.config.chat_k, MAX_EXPLAINED)
        seen = {ev.item for ev in history}
        blocked = set(session.shown) | (skip or set()) | (set() if constraints.include_seen else seen)
        matching = [i for i in self.catalog.ids if i not in blocked and self._allowed(i, constraints)]
        extra = dict(extra or {}, matching=len(matching))
        if not matching:
            return self._none_match(constraints, session, seen), None, extra
        allowed = set(matching)
        need = max(self.agent.config.candidates, k)
        personal = self._personal(history, allowed, need)
        pool = _fuse([(personal, personal_weight), *lists], allowed)
        if len(pool) < need:  # the generators ran out: fill from the matching items by popularity
            popularity = self.agent.dataset.item_popularity()
            have = {c.item_id for c in pool}
            rest = sorted((i for i in matching if i not in have), key=lambda i: -popularity.get(i, 0))
            pool += [Candidate(i, 0.0, "popularity") for i in rest[: need - len(pool)]]
            extra["widened_to_popularity"] = True
        pool = self.agent.seen_titles.keep(history, pool) if not constraints.include_seen else pool
        pool = pool[:need]  # the reranker's candidates: the configured depth, as for `recommend`
        diag = Diagnostics(candidates=len(pool), generator=self.agent.generator.name)
        rec = self.agent.rank(user_id, history, pool, k, request=message, diag=diag)
        text = self._listing(f"{intro}{self._under(constraints)}:", rec)
        if len(rec.items) < k:
            text += (f"\nOnly {len(matching):,} title{'s' if len(matching) != 1 else ''} in the catalogue "
                     f"match{'es' if len(matching) == 1 else ''} that and you have not seen "
                     f"{'it' if len(matching) == 1 else 'them'} yet.")
        return text, rec, extra

    def _personal(self, history: Sequence[Event], allowed: set[str], need: int) -> list[Candidate]:
        """The agent's generator, retrieving deeper until `need` allowed items come back (or all are scored)."""
        total = len(self.catalog)
        depth = min(total, max(4 * need, 100))
        while True:
            picks = [c for c in self.agent.generator.generate(history, depth) if c.item_id in allowed]
            if len(picks) >= need or depth >= total:
                return picks
            depth = min(total, depth * 8)

    def _allowed(self, item_id: str, c: Constraints) -> bool:
        cats = self.catalog[item_id].categories
        if c.include_categories and not set(cats) & set(c.include_categories):
            return False
        if set(cats) & set(c.exclude_categories):
            return False
        return c.years is None or self.vocab.year(item_id) in c.years

    def _neighbours(self, anchors: Sequence[str], preference: str | None) -> list[Candidate]:
        """Nearest items to the named titles' vectors (plus the preference text), citing the titles."""
        index = self.agent.index
        assert index is not None  # checked by the caller
        vectors = [np.asarray(index.vector(a), dtype=np.float32) for a in anchors]
        if preference and (pref := self._embed(preference)) is not None:
            vectors.append(pref)
        query = np.mean(vectors, axis=0)
        query /= max(float(np.linalg.norm(query)), 1e-12)
        hits = index.search(query, min(len(index), 500))
        sims = {a: np.asarray(vectors[n]) for n, a in enumerate(anchors)}
        out = []
        for item_id, score in hits:
            if item_id in sims:
                continue
            vec = np.asarray(index.vector(item_id), dtype=np.float32)
            evidence = tuple(sorted((Evidence(a, max(0.0, float(v @ vec)), "more_like", "reference")
                                     for a, v in sims.items()), key=lambda e: -e.weight))
            out.append(Candidate(item_id, float(score), "more_like", evidence))
        return out

    def _text_search(self, text: str) -> list[Candidate]:
        """Items whose vectors are nearest to the embedded free text (the same embedder as the index)."""
        index = self.agent.index
        query = self._embed(text)
        if index is None or query is None:
            return []
        return [Candidate(i, float(s), "text") for i, s in index.search(query, min(len(index), 500))]

    def _embed(self, text: str) -> np.ndarray | None:
        embedder = self.agent.embedder
        index = self.agent.index
        if embedder is None or index is None or embedder.name != index.embedder:
            return None
        return np.asarray(embedder.embed([text], progress=False)[0], dtype=np.float32)

    # ------------------------------------------------------------------ other intents

    def _explain(self, user_id: str, history: Sequence[Event], req: ChatRequest, session: ChatSession,
                 message: str) -> tuple[str, Recommendation | None, dict[str, Any]]:
        if req.position is not None:
            if not 1 <= req.position <= len(session.last):
                return self._no_position(req.position, session), None, {}
            item_id: str | None = session.last[req.position - 1]
        elif req.references:
            ref = req.references[0]
            shown = self.vocab.resolve(ref.text, among=session.shown) if session.shown else None
            if shown is not None and shown.item_id is not None:
                item_id = shown.item_id
            elif ref.item_id is not None:
                title = display_title(self.catalog[ref.item_id].title)
                return (f"I did not suggest {title} in this conversation"
                        + (f"; I suggested {self._shown_titles(session)}." if session.shown else "."),
                        None, {"not_suggested": True})
            else:
                problem = self._unresolved([ref])
                assert problem is not None  # an unresolved reference always makes a reply
                return problem
        elif len(session.last) == 1:
            item_id = session.last[0]
        else:
            if not session.shown:
                return "I have not suggested anything yet in this conversation.", None, {}
            return f"Which title do you mean? I suggested {self._shown_titles(session)}.", None, {}
        assert item_id is not None
        exp = session.explanations.get(item_id)
        if exp is None:
            exp = self.agent.explain_items(user_id, [item_id])[0]
            session.explanations[item_id] = exp
        return (f"I suggested {display_title(self.catalog[item_id].title)} because: {exp.text.text}", None,
                {"anchor": item_id})

    def _interests(self, user_id: str, history: Sequence[Event], req: ChatRequest, session: ChatSession,
                   message: str) -> tuple[str, Recommendation | None, dict[str, Any]]:
        shift = self.agent.interest_shift(user_id)
        return shift.text, None, {"shift_source": shift.source}

    def _help(self, user_id: str, history: Sequence[Event], req: ChatRequest, session: ChatSession,
              message: str) -> tuple[str, Recommendation | None, dict[str, Any]]:
        cats = self.vocab.categories[:6]
        example = f" (\"no {cats[0].lower()}\", \"from the 90s\")" if cats and self.vocab.has_years else ""
        return ("I can recommend titles for you, with constraints you set" + example + ", find more like a title "
                "you name, suggest something different from what you watched lately, tell you why I suggested a "
                "title, or describe what you have been into lately."), None, {}

    # ------------------------------------------------------------------ wording

    def _unresolved(self, refs: Sequence[TitleRef]) -> tuple[str, None, dict[str, Any]] | None:
        for ref in refs:
            if ref.item_id is not None:
                continue
            said = ref.text[:80]
            options = [display_title(self.catalog[i].title) for i in ref.matches]
            if options and len(options) > 1 and not ref.exact:
                return (f"“{said}” matches several titles: {_or(options)}. Which one do you mean?",
                        None, {"ambiguous_title": True})
            closest = f" The closest I have: {_or(options)}." if options else ""
            return (f"I could not find a title matching “{said}” in the catalogue, so I will not guess.{closest}",
                    None, {"unknown_title": True})
        return None

    def _none_match(self, c: Constraints, session: ChatSession, seen: set[str]) -> str:
        wanted = c.describe() or "those constraints"
        everything = [i for i in self.catalog.ids if self._allowed(i, c)]
        if everything:
            return (f"You have already seen or been shown every title that matches {wanted} "
                    f"({len(everything):,} in the catalogue). Lift a constraint to see more.")
        text = f"No title in the catalogue matches {wanted}."
        years = [y for i in self.catalog.ids if (y := self.vocab.year(i)) is not None]
        if c.years is not None and years:
            text += f" Its titles were released from {min(years)} to {max(years)}."
        return text

    def _no_position(self, position: int, session: ChatSession) -> str:
        if not session.last:
            return "I have not shown you a list yet in this conversation."
        return f"My last list had {len(session.last)} titles, so there is no number {position}."

    def _shown_titles(self, session: ChatSession) -> str:
        return join_words([display_title(self.catalog[i].title) for i in session.shown[-5:]])

    def _under(self, c: Constraints) -> str:
        said = c.describe()
        return f" ({said})" if said else ""

    def _listing(self, intro: str, rec: Recommendation) -> str:
        lines = [intro]
        for n, (item_id, title) in enumerate(zip(rec.items, rec.titles, strict=True), 1):
            exp = rec.explanation(item_id)
            lines.append(f"{n}. {display_title(title)}" + (f" — {exp.text.text}" if exp else ""))
        return "\n".join(lines)


def _fuse(lists: Sequence[tuple[list[Candidate], float]], allowed: set[str]) -> list[Candidate]:
    """Weighted reciprocal-rank fusion over the allowed items; each item keeps the evidence of every list."""
    lists = [(c, w) for c, w in lists if c and w > 0]
    if len(lists) == 1:
        return [c for c in lists[0][0] if c.item_id in allowed]
    score: dict[str, float] = {}
    evidence: dict[str, list[Evidence]] = {}
    sources: dict[str, str] = {}  # the first list's source: the generator's evidence is computed for its items
    for cands, weight in lists:
        rank = 0
        for c in cands:
            if c.item_id not in allowed:
                continue
            rank += 1
            score[c.item_id] = score.get(c.item_id, 0.0) + weight / (RRF_K + rank)
            evidence.setdefault(c.item_id, []).extend(c.evidence)
            sources.setdefault(c.item_id, c.source)
    order = sorted(score, key=lambda i: -score[i])
    return [Candidate(i, score[i], sources[i], tuple(evidence[i])) for i in order]


def _or(words: Sequence[str]) -> str:
    """"A", "A or B", "A, B or C"."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
