"""The evidence given to the explainer: what the LLM may mention, as typed records and quoted data lines.

Shift evidence comes from `retrieval.evolution.summary.Evolution` (windows, shifts, long/short term, forecast);
item evidence is the few history items closest to a recommended item (embedding similarity plus
shared categories, liked items preferred). Titles enter prompts only through `quote`, as data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from prompts import data_block, quote
from retrieval.data.model import Catalog, Event
from retrieval.vectors.index import VectorIndex

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


def _period(windows: Sequence[Any], catalog: Catalog, examples: int, prefer: Sequence[str] = (),
            newest: bool = True) -> Period:
    totals: dict[str, float] = {}
    for w in windows:
        for c, share in w.categories.items():
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
    forecast = tuple(sorted(evolution.forecast, key=lambda c: -evolution.forecast[c])[:3])
    common: dict[str, Any] = dict(long_term=tuple(evolution.long_term)[:3], short_term=tuple(evolution.short_term)[:3],
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
                         strength=float(shift.strength), from_categories=tuple(shift.from_categories)[:3],
                         to_categories=tuple(shift.to_categories)[:3], **common)


def _empty_period() -> Period:
    from datetime import UTC

    now = datetime(1970, 1, 1, tzinfo=UTC)
    return Period(now, now, (), ())


@dataclass(frozen=True)
class ItemEvidence:
    """Evidence for one item's explanation.

    Attributes:
        item_id: the recommended item.
        supporting: history item ids to cite, best first.
        dates: history item id → date of the user's event.
        ratings: history item id → the user's rating (None when unrated).
        shared_categories: categories the item shares with the supporting items.
        item_line / titles / categories: what the prompt shows and the check accepts.
    """

    item_id: str
    supporting: tuple[str, ...]
    dates: Mapping[str, datetime] = field(default_factory=dict)
    ratings: Mapping[str, float | None] = field(default_factory=dict)
    shared_categories: tuple[str, ...] = ()
    item_line: str = ""
    titles: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()

    def as_lines(self) -> str:
        """The supporting history items as a data block for the prompt."""
        return data_block("history_items", self.lines)


def item_evidence(history: Sequence[Event], item_id: str, catalog: Catalog, index: VectorIndex | None,
                  n: int = 3) -> ItemEvidence:
    """The `n` history items that best support recommending `item_id`.

    Score = cosine similarity of item vectors (when an index is given) + 0.3 × share of the item's
    categories the history item has. Only the newest `RECENT_EVENTS` events are considered, and liked
    items (rating ≥ LIKED_RATING or unrated) are preferred.
    """
    item = catalog[item_id]
    recent = [ev for ev in history[-RECENT_EVENTS:] if ev.item != item_id]
    latest: dict[str, Event] = {ev.item: ev for ev in recent}
    candidates = list(latest)
    liked = [i for i in candidates if _liked(latest[i])]
    pool = liked if len(liked) >= n else candidates
    sims = similarity(index, item_id, pool)
    cats = set(item.categories)
    overlap = np.array([len(cats & set(catalog[i].categories)) / max(1, len(cats)) for i in pool], dtype=np.float32)
    order = np.argsort(-(sims + 0.3 * overlap), kind="stable")
    chosen = tuple(pool[j] for j in order[:n])
    shared = tuple(c for c in item.categories if any(c in catalog[i].categories for i in chosen))
    lines = tuple(
        f"- {quote(catalog[i].title, 120)} ({', '.join(catalog[i].categories) or 'no categories'}), "
        f"{latest[i].timestamp:%Y-%m-%d}" + (f", rated {latest[i].rating:g}" if latest[i].rating is not None else "")
        for i in chosen)
    ev_cats = tuple(dict.fromkeys([*item.categories, *(c for i in chosen for c in catalog[i].categories)]))
    item_line = f"{quote(item.title, 120)} ({', '.join(item.categories) or 'no categories'})"
    return ItemEvidence(item_id=item_id, supporting=chosen, dates={i: latest[i].timestamp for i in chosen},
                        ratings={i: latest[i].rating for i in chosen}, shared_categories=shared,
                        item_line=data_block("recommended_item", [item_line]),
                        titles=(item.title, *(catalog[i].title for i in chosen)), categories=ev_cats, lines=lines)


def _liked(event: Event) -> bool:
    return event.rating is None or event.rating >= LIKED_RATING


def similarity(index: VectorIndex | None, item_id: str, others: Sequence[str]) -> np.ndarray:
    """Cosine similarity, shape (len(others),), of one item's vector to others'; zeros without an index."""
    out = np.zeros(len(others), dtype=np.float32)
    if index is None or item_id not in index or not others:
        return out
    present = [o in index for o in others]
    rows = index.rows([o for o, ok in zip(others, present, strict=True) if ok])
    out[np.flatnonzero(present)] = index.vectors[rows] @ index.vector(item_id)
    return out
