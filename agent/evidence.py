"""The evidence given to the explainer: what the LLM may mention, as typed records and quoted data lines.

Shift evidence comes from `retrieval.evolution.summary.Evolution` (windows, shifts, long/short term, forecast);
item evidence is what the candidate generator measured: the history items whose terms made the item's
score (`retrieval.candidates.base.Evidence`), cited by size. Titles enter prompts only through `quote`, as data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prompts import data_block, quote
from retrieval.candidates.base import Evidence, cited_items
from retrieval.data.model import Catalog, Event

# Ratings at or above this (on a 1–5 scale) count as "liked"; lower-rated items are cited only when
# nothing else is close, since "because you watched X" about a film the user hated reads wrong.
LIKED_RATING = 4.0
RECENT_EVENTS = 100


def join_words(words: Sequence[str]) -> str:
    """"A", "A and B", "A, B and C"."""
    words = [w for w in words if w]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


@dataclass(frozen=True)
class Period:
    """A stretch of windows summarised: dates, top categories, example titles."""

    start: datetime
    end: datetime
    categories: tuple[str, ...]
    titles: tuple[str, ...]

    def line(self, name: str) -> str:
        cats = ", ".join(self.categories) or "(no categories)"
        ex = ", ".join(quote(t, 120) for t in self.titles) or "(none)"
        return f"{name} ({self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}): mostly {cats}; examples: {ex}"


@dataclass(frozen=True)
class ShiftEvidence:
    """Everything an interest-shift description may mention.

    Attributes:
        windows: the user's windows (kept for dates and counts).
        earlier: the stretch before the latest shift (None without a shift).
        recent: the stretch since the shift (or the whole history without one).
        shift_at: when the latest shift shows (None without one).
        strength: its strength in [0, 1].
        from_categories / to_categories: categories that lost / gained share across it.
        long_term / short_term / forecast: stable, rising and expected-next categories.
        n_shifts: shifts detected in the whole history.
    """

    windows: tuple[Any, ...]
    recent: Period
    earlier: Period | None = None
    shift_at: datetime | None = None
    strength: float = 0.0
    from_categories: tuple[str, ...] = ()
    to_categories: tuple[str, ...] = ()
    long_term: tuple[str, ...] = ()
    short_term: tuple[str, ...] = ()
    forecast: tuple[str, ...] = ()
    n_shifts: int = 0

    @property
    def categories(self) -> tuple[str, ...]:
        cats = [*self.recent.categories, *self.from_categories, *self.to_categories, *self.long_term,
                *self.short_term, *self.forecast, *(self.earlier.categories if self.earlier else ())]
        return tuple(dict.fromkeys(cats))

    @property
    def titles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*(self.earlier.titles if self.earlier else ()), *self.recent.titles]))

    def as_lines(self) -> str:
        """The evidence as data lines for the prompt."""
        lines = [f"Windows with activity: {len(self.windows)}; interest shifts detected: {self.n_shifts}"]
        if self.earlier is not None and self.shift_at is not None:
            lines.append(self.earlier.line("Before the shift"))
            lines.append(f"Shift on {self.shift_at:%Y-%m-%d} (strength {self.strength:.2f}): "
                         f"less {', '.join(self.from_categories) or '(none)'}; "
                         f"more {', '.join(self.to_categories) or '(none)'}")
            lines.append(self.recent.line("Since the shift"))
        else:
            lines.append(self.recent.line("Whole history"))
        if self.long_term:
            lines.append("Long-term (present throughout): " + ", ".join(self.long_term))
        if self.short_term:
            lines.append("Rising lately: " + ", ".join(self.short_term))
        if self.forecast:
            lines.append("Expected next: " + ", ".join(self.forecast))
        return data_block("interest_timeline", lines)


# Placeholder genres (ml-100k's "unknown") say nothing about a taste, and "unknown" is also a catalogue
# title, so a sentence naming it would cite a title outside the evidence.
_PLACEHOLDERS = frozenset({"unknown"})


def _real(categories: Sequence[str]) -> tuple[str, ...]:
    return tuple(c for c in categories if c.lower() not in _PLACEHOLDERS)


def _period(windows: Sequence[Any], catalog: Catalog, examples: int, prefer: Sequence[str] = (),
            newest: bool = True) -> Period:
    totals: dict[str, float] = {}
    for w in windows:
        for c, share in w.categories.items():
            if c.lower() in _PLACEHOLDERS:
                continue
            totals[c] = totals.get(c, 0.0) + share
    cats = tuple(sorted(totals, key=lambda c: (-totals[c], c))[:3])
    items = [i for w in windows for i in w.items]
    pool = [i for i in prefer if i in set(items)] + (items[::-1] if newest else items)
    titles = tuple(dict.fromkeys(catalog[i].title for i in pool))[:examples]
    return Period(windows[0].start, windows[-1].end, cats, titles)


def shift_evidence(evolution: Any, catalog: Catalog, examples: int = 3) -> ShiftEvidence:
    """Evidence for the shift description from a `retrieval.evolution.summary.Evolution`.

    The latest detected shift splits the windows into "before" and "since"; without one the whole
    history is one period. Example titles come from the shift's supporting items first.
    """
    windows = tuple(evolution.windows)
    forecast = _real(sorted(evolution.forecast, key=lambda c: -evolution.forecast[c]))[:3]
    common: dict[str, Any] = dict(long_term=_real(evolution.long_term)[:3], short_term=_real(evolution.short_term)[:3],
                  forecast=forecast, n_shifts=len(evolution.shifts))
    if not windows:
        return ShiftEvidence(windows=(), recent=_empty_period())
    if not evolution.shifts:
        return ShiftEvidence(windows=windows, recent=_period(windows, catalog, examples), **common)
    shift = evolution.shifts[-1]
    before, after = windows[:shift.window], windows[shift.window:]
    if not before:
        return ShiftEvidence(windows=windows, recent=_period(windows, catalog, examples), **common)
    support = list(shift.supporting_items)
    return ShiftEvidence(windows=windows, earlier=_period(before, catalog, examples, support[::-1]),
                         recent=_period(after, catalog, examples, support, newest=False), shift_at=shift.at,
                         strength=float(shift.strength), from_categories=_real(shift.from_categories)[:3],
                         to_categories=_real(shift.to_categories)[:3], **common)


def _empty_period() -> Period:
    from datetime import UTC

    now = datetime(1970, 1, 1, tzinfo=UTC)
    return Period(now, now, (), ())


# What each kind says of a cited history item, in the prompt's data lines.
_LINKS: dict[str, str] = {
    "co_occurrence": "people who chose it also chose this pick",
    "content": "close to this pick in content",
    "sequence": "this pick tends to come after it",
    "reference": "the title asked about",
    "category": "shares categories with this pick",
}


@dataclass(frozen=True)
class ItemEvidence:
    """Evidence for one item's explanation.

    Attributes:
        item_id: the recommended item.
        supporting: the cited items, largest contribution first: history items (or, for "more like X",
            X) whose evidence produced the score; history items sharing categories when there is none.
        kinds: cited item → the kind of its largest contribution ("co_occurrence", "content", ...).
        detail: the typed evidence of the cited items (all sources), and the "shift" example if any.
        dates: history item id → date of the user's event.
        ratings: history item id → the user's rating (None when unrated).
        shared_categories: categories the item shares with the cited items.
        rising: the item's categories that are rising in the user's recent history.
        item_line / titles / categories: what the prompt shows and the check accepts.
    """

    item_id: str
    supporting: tuple[str, ...]
    kinds: Mapping[str, str] = field(default_factory=dict)
    detail: tuple[Evidence, ...] = ()
    dates: Mapping[str, datetime] = field(default_factory=dict)
    ratings: Mapping[str, float | None] = field(default_factory=dict)
    shared_categories: tuple[str, ...] = ()
    rising: tuple[str, ...] = ()
    item_line: str = ""
    titles: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()

    def as_lines(self) -> str:
        """The cited items as a data block for the prompt."""
        return data_block("history_items", self.lines)


def category_evidence(history: Sequence[Event], item_id: str, catalog: Catalog, n: int = 3) -> tuple[Evidence, ...]:
    """History items sharing the item's categories (kind "category"): what to say when no score evidence exists.

    Weight = share of the item's categories the history item has; among the newest `RECENT_EVENTS`
    events, liked ones (rating ≥ LIKED_RATING or unrated) first, newer first on ties.
    """
    cats = set(catalog[item_id].categories)
    if not cats:
        return ()
    latest: dict[str, Event] = {ev.item: ev for ev in history[-RECENT_EVENTS:] if ev.item != item_id}
    scored = [(len(cats & set(catalog[i].categories)) / len(cats), _liked(ev), pos, i)
              for pos, (i, ev) in enumerate(latest.items())]
    best = sorted((t for t in scored if t[0] > 0), key=lambda t: (not t[1], -t[0], -t[2]))[:n]
    return tuple(Evidence(i, w, "category", "category") for w, _, _, i in best)


def item_evidence(history: Sequence[Event], item_id: str, catalog: Catalog, *,
                  evidence: Sequence[Evidence] | None = None, n: int = 3,
                  rising: Sequence[str] = (), cited: Sequence[str] | None = None) -> ItemEvidence:
    """What an explanation of `item_id` may cite: the items whose evidence produced its score.

    Args:
        history: the user's events, oldest first.
        item_id: the recommended item.
        catalog: titles and categories.
        evidence: the generator's evidence for the item (`Candidate.evidence`); without any, the
            history items sharing its categories are cited as such (`category_evidence`).
        n: most items cited.
        rising: categories rising in the user's recent history (the interest shift's short-term side).
        cited: the items to cite instead of the n largest contributions, e.g. a counterfactually
            verified set (`retrieval.candidates.counterfactual.verified_citations`), largest first.
    """
    item = catalog[item_id]
    ev = tuple(evidence or ())
    chosen = tuple(cited) if cited else cited_items(ev, n)
    if not chosen:
        ev = category_evidence(history, item_id, catalog, n)
        chosen = tuple(e.item_id for e in ev)
    detail = tuple(e for e in ev if e.item_id in chosen)
    kinds = {i: max((e for e in detail if e.item_id == i), key=lambda e: e.weight).kind for i in chosen}
    latest: dict[str, Event] = {e.item: e for e in history}
    shared = tuple(c for c in item.categories if any(c in catalog[i].categories for i in chosen))
    up = tuple(c for c in item.categories if c in set(rising))
    if up:
        example = next((e.item for e in reversed(history) if set(catalog[e.item].categories) & set(up)), None)
        if example is not None:
            detail += (Evidence(example, 0.0, "evolution", "shift"),)
    lines = [f"- {quote(catalog[i].title, 120)} ({', '.join(catalog[i].categories) or 'no categories'})"
             + (f", {latest[i].timestamp:%Y-%m-%d}" if i in latest else "")
             + (f", rated {latest[i].rating:g}" if i in latest and latest[i].rating is not None else "")
             + f": {_LINKS[kinds[i]]}" for i in chosen]
    shift_items = [e.item_id for e in detail if e.kind == "shift"]
    if up:
        lines.append("- categories rising lately: " + ", ".join(up)
                     + "".join(f" (most recent: {quote(catalog[i].title, 120)})" for i in shift_items))
    shown = (*chosen, *shift_items)
    ev_cats = tuple(dict.fromkeys([*item.categories, *(c for i in shown for c in catalog[i].categories)]))
    item_line = f"{quote(item.title, 120)} ({', '.join(item.categories) or 'no categories'})"
    return ItemEvidence(item_id=item_id, supporting=chosen, kinds=kinds, detail=detail,
                        dates={i: latest[i].timestamp for i in chosen if i in latest},
                        ratings={i: latest[i].rating for i in chosen if i in latest}, shared_categories=shared,
                        rising=up, item_line=data_block("recommended_item", [item_line]),
                        titles=tuple(dict.fromkeys((item.title, *(catalog[i].title for i in shown)))),
                        categories=ev_cats, lines=tuple(lines))


def _liked(event: Event) -> bool:
    return event.rating is None or event.rating >= LIKED_RATING
