"""Interest-shift descriptions and per-item explanations, grounded in the evidence the LLM is given.

Flow for every text: build the evidence (categories, titles, dates) → ask the LLM → grounding check
(every catalogue category/title mentioned must be in the evidence; explanations must cite a history
title, and no history title outside their evidence) → bounded re-ask with the error → else a template
sentence built from the same evidence. An item's evidence is what its candidate generator measured
(`Candidate.evidence`): the explanation says which kind it is (co-occurrence, content, sequence, the
title asked about), so the user reads the reasons that produced the score.
Small models write poorly, so the template path is written to read well on its own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from agent.evidence import ItemEvidence, ShiftEvidence, item_evidence, join_words, shift_evidence
from agent.grounding import GroundingChecker, display_title, title_aliases
from agent.llm.client import LLMClient, to_messages
from agent.llm.deadline import expired
from agent.types import Explanation, GroundedText
from prompts import render
from retrieval.candidates.base import Evidence
from retrieval.data.model import Catalog, Event
from retrieval.errors import LLMError, LLMReplyError
from retrieval.log import get_logger
from retrieval.vectors.index import VectorIndex

log = get_logger(__name__)

_SPECIAL = re.compile(r"<\|[^|>]*\|>|</?s>|\[/?INST\]")
_LABEL = re.compile(r"^\s*(?:explanation|answer|description|summary|assistant)\s*:\s*", re.IGNORECASE)
_DATA_BLOCK = re.compile(r"<data name=[^>]*>.*?</data>", re.DOTALL)
# Small models narrate the task ("the recommended item is", "I'll add a category to the data") instead
# of doing it; the prompt asks for sentences addressed to "you", so these phrases mark a failed answer.
# "this pick", "with activity" and "whole history" are the prompt's own labels (every evidence line says
# how a title counted towards "this pick"); an answer using them copies the data instead of naming things.
# The titles are masked first, so a title such as "Death Sentence" is not narration.
_META = re.compile(r"\b(?:the user(?:'s)?|the data|as data|data block|evidence|recommended item|"
                   r"items that made|history titles?|sentences?|this pick|with activity|whole history|"
                   r"I'll|I'm|I am|I will|I have|as an AI|language model|summary)\b", re.IGNORECASE)
# The evidence holds titles, categories, dates and ratings, never reviews, people, awards or popularity:
# a sentence about those ("praised by critics", "directed by ...", "highly recommended by many people")
# is made up, however fluent.
_UNSUPPORTED = re.compile(r"\b(?:review(?:s|ed|ers?)?|critics?|critically|praised|acclaimed|directed|director|"
                          r"starring|actors?|actress|awards?|oscars?|box office|released|popular(?:ity)?|"
                          r"highly recommended|recommended by|best[- ]?sell(?:ing|ers?)|"
                          r"well[- ](?:regarded|known|received)|enjoyed by many)\b", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“])")
_WORD = re.compile(r"[\w'’]+")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_MASK = "\x00"  # stands in for an evidence title (or a date) while the rules read the rest of the text

# Why an attempt was rejected, by the fixed start of the message `Explainer._generate` (a failed call)
# or `Explainer._problem` (a rejected answer) records; the first matching start wins.
_REJECTIONS = (
    ("reply:", "unreadable reply"),
    ("backend:", "backend error"),
    ("LLM time budget spent", "time budget spent"),
    ("the answer is empty or too short", "empty or too short"),
    ("it repeats the instructions", "repeats the instructions"),
    ("it repeats itself", "repeats itself"),
    ("it says you ", "says the user already has the pick"),
    ("it states what the evidence cannot support", "states what the evidence cannot support"),
    ("it talks about the prompt or itself", "talks about the prompt or itself"),
    ("it cites none of the history titles", "cites none of the evidence titles"),
    ("it cites ", "cites a history item that did not contribute"),
    ("it mentions ", "mentions something outside the evidence"),
    ("it names none of the categories", "names none of the evidence categories"),
)


def rejection_kind(error: str) -> str:
    """The kind of one entry of `GroundedText.errors` ("other" for an unknown message)."""
    return next((kind for start, kind in _REJECTIONS if error.startswith(start)), "other")


@dataclass(frozen=True)
class ExplainConfig:
    """Settings of the explainer.

    Attributes:
        max_attempts: LLM answers tried per text (first + re-asks) before the template.
        max_tokens: generation cap per answer.
        shift_sentences: most sentences kept from a shift description.
        item_sentences: most sentences kept from an item explanation.
        supporting: most items an explanation cites (the largest contributions to the score).
        verb: past-tense verb for the user's behaviour in templates ("watched", "played").
        require_citation: an explanation must name at least one evidence history title.
    """

    max_attempts: int = 2
    max_tokens: int = 96
    shift_sentences: int = 4
    item_sentences: int = 3
    supporting: int = 3
    verb: str = "watched"
    require_citation: bool = True


def clean_text(text: str, max_sentences: int, max_chars: int = 700) -> str:
    """Strip chat tokens and labels, collapse whitespace, keep the first sentences, cap the length."""
    text = _LABEL.sub("", _SPECIAL.sub(" ", text))
    text = " ".join(text.split()).strip().strip('"').strip()
    sentences = _SENTENCE.split(text)
    text = " ".join(sentences[:max_sentences])
    if len(text) > max_chars:
        cut = text[:max_chars]
        text = cut[:cut.rfind(" ")].rstrip(",;:") + "…" if " " in cut else cut
    return text


class Explainer:
    """Writes grounded interest-shift descriptions and item explanations.

    Args:
        catalog: item catalogue (titles, categories, grounding vocabulary).
        client: LLM client; None writes template texts only (fast, deterministic).
        index: item vectors (kept for callers; explanations cite the generator's evidence, not similarity).
        config: settings.
    """

    def __init__(self, catalog: Catalog, client: LLMClient | None = None, index: VectorIndex | None = None,
                 config: ExplainConfig | None = None) -> None:
        self.catalog = catalog
        self.client = client
        self.index = index
        self.config = config or ExplainConfig()
        self.checker = GroundingChecker(catalog)

    # ------------------------------------------------------------------ interest shift

    def describe_shift(self, evolution: object) -> GroundedText:
        """2–4 sentences on what the user moved from and towards, and when.

        Args:
            evolution: `retrieval.evolution.summary.Evolution` of the user.
        """
        ev = shift_evidence(evolution, self.catalog)
        return self.describe_shift_evidence(ev)

    def describe_shift_evidence(self, ev: ShiftEvidence) -> GroundedText:
        """`describe_shift` on already-built evidence."""
        template = shift_template(ev, self.config)
        if not ev.windows or self.client is None:
            return GroundedText(text=template, source="template")
        user = render("shift", evidence=ev.as_lines(), verb=self.config.verb)
        # A description that names no category says nothing about the shift: require one.
        return self._generate(to_messages(render("system"), user), ev.titles, ev.categories, (), template,
                              self.config.shift_sentences, must_name=ev.categories)

    # ------------------------------------------------------------------ item explanations

    def explain(self, history: Sequence[Event], item_ids: Sequence[str],
                progress: Callable[[int], None] | None = None, *,
                evidence: Mapping[str, Sequence[Evidence]] | None = None,
                rising: Sequence[str] = (), cited: Mapping[str, Sequence[str]] | None = None) -> list[Explanation]:
        """One grounded explanation per recommended item, same order.

        Args:
            history: the user's events, oldest first.
            item_ids: recommended items.
            progress: called with the number of items done (for progress bars).
            evidence: item id → its generator evidence (`Candidate.evidence`): what the explanation cites.
                An item without any is explained by the history items sharing its categories, said as such.
            rising: categories rising in the user's recent history; an item in one says so.
            cited: item id → the history items to cite (a counterfactually verified set); an item
                without one cites its `supporting` largest contributions.
        """
        out = []
        history_titles = frozenset(self.catalog[ev.item].title for ev in history)
        for n, item_id in enumerate(item_ids, 1):
            ev = item_evidence(history, item_id, self.catalog, evidence=(evidence or {}).get(item_id),
                               n=self.config.supporting, rising=rising, cited=(cited or {}).get(item_id))
            out.append(self.explain_evidence(ev, history_titles))
            if progress is not None:
                progress(n)
        return out

    def explain_evidence(self, ev: ItemEvidence, history_titles: frozenset[str] = frozenset()) -> Explanation:
        """The explanation of one item from its evidence.

        Args:
            ev: the item's evidence.
            history_titles: titles of the user's history: an LLM text naming one outside the evidence
                is rejected (it would give a reason that had no part in the score).
        """
        item = self.catalog[ev.item_id]
        template = item_template(ev, self.catalog, self.config)
        if not ev.supporting or self.client is None:
            return Explanation(item_id=item.id, title=item.title, evidence=ev.supporting, evidence_detail=ev.detail,
                               text=GroundedText(text=template, source="template"))
        user = render("explain", item=ev.item_line, evidence=ev.as_lines())
        cite = tuple(self.catalog[i].title for i in ev.supporting) if self.config.require_citation else ()
        text = self._generate(to_messages(render("system"), user), ev.titles, ev.categories, cite, template,
                              self.config.item_sentences, outside=history_titles - set(ev.titles),
                              pick=item.title)
        return Explanation(item_id=item.id, title=item.title, evidence=ev.supporting, evidence_detail=ev.detail,
                           text=text)

    # ------------------------------------------------------------------ the shared loop

    def _generate(self, messages: list[BaseMessage], titles: Sequence[str], categories: Sequence[str],
                  must_cite: Sequence[str], template: str, max_sentences: int,
                  must_name: Sequence[str] = (), outside: frozenset[str] = frozenset(),
                  pick: str | None = None) -> GroundedText:
        start = time.perf_counter()
        if self.client is None:
            return GroundedText(text=template, source="template", latency_s=time.perf_counter() - start)
        errors: list[str] = []
        prompt = "\n".join(str(m.content) for m in messages)
        first: int | None = None
        attempts = 0
        for attempt in range(self.config.max_attempts):
            attempts += 1
            if expired():  # the caller's time budget is spent: the rest are templates
                errors.append("LLM time budget spent")
                break
            try:
                reply = self.client.chat(messages, max_tokens=self.config.max_tokens)
            except LLMReplyError as exc:  # an unreadable reply is an invalid output: ask again
                errors.append(f"reply: {exc}")
                continue
            except LLMError as exc:
                # A failing or timed-out backend will fail again: no re-ask, go straight to the template.
                errors.append(f"backend: {exc}")
                break
            text = clean_text(reply.text, max_sentences)
            problem = self._problem(text, titles, categories, must_cite, prompt, must_name, outside, pick)
            if first is None:
                first = len(self.checker.check(text, titles, categories, prompt).ungrounded) if text else 0
            if problem is None:
                return GroundedText(text=text, source="llm" if attempt == 0 else "regenerated", attempts=attempts,
                                    ungrounded_first=first, errors=tuple(errors),
                                    latency_s=time.perf_counter() - start)
            errors.append(problem)
            messages = [*messages, AIMessage(text or "(empty)"), HumanMessage(
                f"That answer was rejected: {problem}. Write it again using only the titles and "
                f"categories listed in the evidence, and nothing else.")]
        # Rejection reasons can quote the prompt (a user's message): WARNING has their kinds, DEBUG the text.
        kinds = sorted({e.split(":")[0].split("(")[0].strip()[:60] for e in errors})
        # INFO, not WARNING: small models often end here, and the text is flagged "template" already.
        log.info("explanation fell back to the template text after %d attempt(s): %s", attempts,
                    "; ".join(kinds) or "no attempt made")
        log.debug("explanation rejections: %s", errors)
        final = len(self.checker.check(template, titles, categories, prompt).ungrounded)
        return GroundedText(text=template, source="template", attempts=attempts, ungrounded_first=first or 0,
                            ungrounded_final=final, errors=tuple(errors), latency_s=time.perf_counter() - start)

    def _problem(self, text: str, titles: Sequence[str], categories: Sequence[str],
                 must_cite: Sequence[str], prompt: str = "", must_name: Sequence[str] = (),
                 outside: frozenset[str] = frozenset(), pick: str | None = None) -> str | None:
        """Why a generated text is rejected, or None when it is acceptable.

        `outside`: history titles that are not evidence; citing one gives a reason that did not score the item.
        `pick`: the title being explained; a text saying the user already watched it misstates the history.
        """
        if len(text.split()) < 4:
            return "the answer is empty or too short"
        if echo := _echoed(text, prompt):
            return f"it repeats the instructions ({echo!r}) instead of answering"
        unquoted = text
        for title in titles:
            for alias in sorted(title_aliases(title), key=len, reverse=True):
                unquoted = unquoted.replace(alias, _MASK)
        if again := _repeated(unquoted):
            return f"it repeats itself ({again!r})"
        if meta := _META.search(unquoted):
            return f"it talks about the prompt or itself ({meta.group(0)!r}) instead of speaking to the user"
        if pick is not None and _says_done(text, pick, self.config.verb):
            return f"it says you {self.config.verb} {pick!r}, the title being recommended"
        if claim := _UNSUPPORTED.search(unquoted):
            return f"it states what the evidence cannot support ({claim.group(0)!r})"
        report = self.checker.check(text, titles, categories, prompt)
        if cited_outside := [t for t in report.titles if t in outside]:
            listed = ", ".join(repr(t) for t in cited_outside[:5])
            return f"it cites {listed} from the history, which did not contribute to this recommendation"
        if report.ungrounded:
            listed = ", ".join(repr(m) for m in report.ungrounded[:5])
            return f"it mentions {listed}, which the evidence does not contain"
        if must_cite and not set(report.titles) & set(must_cite):
            return "it cites none of the history titles " + ", ".join(repr(t) for t in must_cite)
        if must_name and not set(report.categories) & set(must_name):
            return "it names none of the categories " + ", ".join(repr(c) for c in must_name[:6])
        return None


# ---------------------------------------------------------------------- templates


def shift_template(ev: ShiftEvidence, config: ExplainConfig) -> str:
    """Plain sentences built only from the evidence; used when no LLM answer passes the check."""
    verb = config.verb
    if not ev.windows:
        return "There is no history for this user yet, so there is no interest shift to describe."
    recent = ev.recent
    if ev.shift_at is None or ev.earlier is None:
        first = ev.windows[0].start
        cats = join_words(recent.categories) or "a mix of"
        text = (f"Your interests have been steady since {first:%B %Y}: you mostly {verb} {cats} titles."
                if len(ev.windows) > 1 else
                f"Between {_day(recent.start)} and {_day(recent.end)} you mostly {verb} {cats} titles.")
        if recent.titles:
            text += f" Recent examples are {_titles(recent.titles)}."
        return text
    earlier = ev.earlier
    sentences = [f"Until {_day(ev.shift_at)} you mostly {verb} {join_words(earlier.categories) or 'other'} titles"
                 + (f", such as {_titles(earlier.titles)}." if earlier.titles else ".")]
    towards = ev.to_categories or recent.categories
    sentences.append(f"Since then you have moved towards {join_words(towards)}"
                     + (f", for example {_titles(recent.titles)}." if recent.titles else "."))
    if ev.from_categories:
        sentences.append(f"You now choose fewer {join_words(ev.from_categories)} titles than before.")
    steady = [c for c in ev.long_term if c not in ev.from_categories]
    if steady:
        sentences.append(f"{join_words(steady)} stayed with you throughout.")
    return " ".join(sentences[:config.shift_sentences])


def item_template(ev: ItemEvidence, catalog: Catalog, config: ExplainConfig) -> str:
    """Sentences citing every cited item, saying which evidence it is; used when no LLM answer passes.

    One sentence per kind of evidence among the cited items (largest first): co-occurrence ("people
    who watched A also watched X"), sequence ("after A and B, ..."), content, the title asked about, or
    shared categories; then the categories shared with them, and the interest shift when the item
    belongs to a rising category.
    """
    item = catalog[ev.item_id]
    title = display_title(item.title)
    verb = config.verb
    sentences: list[str] = []
    if not ev.supporting:
        sentences.append(f"{title} is popular with users like you; your history has nothing close to it yet.")
    groups: dict[str, list[str]] = {}
    for i in ev.supporting:
        groups.setdefault(ev.kinds.get(i, "category"), []).append(i)
    for kind, ids in groups.items():
        if kind == "sequence" and all(i in ev.dates for i in ids):  # in the order the user consumed them
            ids = sorted(ids, key=lambda i: ev.dates[i])
        names = _titles([catalog[i].title for i in ids])
        if kind == "co_occurrence":
            sentences.append(f"People who {verb} {names} also {verb} {title}.")
        elif kind == "sequence":
            sentences.append(f"After {names}, {title} is a likely next choice.")
        elif kind == "content":
            sentences.append(f"{title} is close in content to {names}, which you {verb}.")
        elif kind == "reference":
            sentences.append(f"{title} is close to {names}, which you asked about.")
        else:
            common = [c for c in item.categories if any(c in catalog[i].categories for i in ids)]
            sentences.append(f"{title} shares {join_words(common)} with {names}, which you {verb}.")
    if ev.shared_categories and "category" not in groups:
        cats = join_words(list(ev.shared_categories))
        article = "an" if cats[:1].lower() in "aeiou" else "a"
        sharing = [i for i in ev.supporting if set(catalog[i].categories) & set(ev.shared_categories)]
        # "like them" only when several cited items all share; one is named ("like it" would read as the pick)
        like = "them" if len(sharing) > 1 and len(sharing) == len(ev.supporting) else \
            _titles([catalog[i].title for i in sharing])
        sentences.append(f"It is {article} {cats} title, like {like}.")
    if ev.rising:
        example = next((e.item_id for e in ev.detail if e.kind == "shift"), None)
        have = "has" if len(ev.rising) == 1 else "have"
        rise = f"{join_words(list(ev.rising))} {have} been rising in what you {verb} lately"
        sentences.append(rise + (f", most recently {_titles([catalog[example].title])}." if example else "."))
    return " ".join(sentences)


def _day(when: datetime) -> str:
    return f"{when.day} {when:%B %Y}"


def _titles(titles: Sequence[str]) -> str:
    return join_words([display_title(t) for t in titles])


def _echoed(text: str, prompt: str, n: int = 6) -> str | None:
    """An n-word run of the prompt's instruction lines found in the answer (a small model echoing it)."""
    runs = set(_runs(_DATA_BLOCK.sub(" ", prompt), n))  # punctuation aside: "sentences," = "sentences."
    return next((run for run in _runs(text, n) if run in runs), None)


def _repeated(text: str, n: int = 6) -> str | None:
    """An n-word run said twice in `text` (a small model looping), titles masked with `_MASK` first.

    Runs never cross a masked title or a date, so naming one long title twice, two titles in the same
    frame ("people who played X also played Y") or a date twice ("before the shift on 1998-02-09 ...
    since the shift on 1998-02-09") is not repetition.
    """
    seen: set[str] = set()
    for part in _DATE.sub(_MASK, text).split(_MASK):
        for run in _runs(part, n):
            if run in seen:
                return run
            seen.add(run)
    return None


def _runs(text: str, n: int) -> list[str]:
    """Every n-word run of `text`, lower-cased, punctuation aside."""
    words = _WORD.findall(text.lower())
    return [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]


def _says_done(text: str, title: str, verb: str) -> bool:
    """Whether the text says the user already `verb`-ed `title` ("Because you watched <title>, ...")."""
    aliases = "|".join(re.escape(a) for a in sorted(title_aliases(title), key=len, reverse=True))
    return re.search(rf"\byou(?:'ve| have)?\s+(?:also\s+|already\s+)?{re.escape(verb)}\s+"
                     rf"(?:the\s+(?:movie|film|game|title)\s+)?[\"“']?(?:{aliases})", text, re.IGNORECASE) is not None
