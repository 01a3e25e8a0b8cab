"""A user's interest timeline: time windows with category shares and pooled vectors.

Windows are calendar periods (UTC day, ISO week starting Monday, month) or runs of N events. Only
periods with at least one event become windows: a user who is silent for a month has no "empty"
window, so drift is measured between consecutive *active* periods and `Window.start/end` show gaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from retrieval.candidates.attention import InterestConfig, attention_weights
from retrieval.data.model import Catalog, Event
from retrieval.errors import ConfigError
from retrieval.vectors.index import VectorIndex

PERIODS = ("day", "week", "month")


@dataclass(frozen=True)
class Window:
    """One time window of a user's history.

    Attributes:
        index: position among the user's windows, 0 = oldest.
        start: aware start of the window (inclusive).
        end: aware end (exclusive); for event-count windows, just after the last event.
        items: item ids, oldest first.
        categories: category share, sums to 1; an item with k categories adds 1/k to each; empty when
            no item has categories.
        vector: (dim,) attention-pooled, L2-normalised interest vector; None without an index.
    """

    index: int
    start: datetime
    end: datetime
    items: tuple[str, ...]
    categories: dict[str, float]
    vector: np.ndarray | None


def period_start(t: datetime, period: str) -> datetime:
    """Start (UTC) of the calendar period containing t."""
    t = t.astimezone(UTC)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ConfigError(f"unknown period {period!r}; valid: {', '.join(PERIODS)} or events:N")


def period_end(start: datetime, period: str) -> datetime:
    """Exclusive end of the calendar period that starts at `start`."""
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def _events_per_window(period: str) -> int | None:
    if not period.startswith("events:"):
        period_start(datetime(2000, 1, 1, tzinfo=UTC), period)  # validates the name
        return None
    try:
        n = int(period.split(":", 1)[1])
    except ValueError:
        raise ConfigError(f"bad period {period!r}; use events:N with an integer N") from None
    if n < 1:
        raise ConfigError(f"events per window must be ≥ 1, got {n}")
    return n


def category_shares(item_ids: Sequence[str], catalog: Catalog) -> dict[str, float]:
    """Category distribution of items: each item splits one unit equally over its categories.

    Returns:
        shares summing to 1, largest first; empty when no item has categories.
    """
    total: dict[str, float] = {}
    for item_id in item_ids:
        cats = catalog[item_id].categories
        for c in cats:
            total[c] = total.get(c, 0.0) + 1.0 / len(cats)
    s = sum(total.values())
    return {k: v / s for k, v in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))} if s else {}


def _pooled(events: Sequence[Event], index: VectorIndex, config: InterestConfig) -> np.ndarray:
    vectors = index.vectors[index.rows([ev.item for ev in events])]
    times = np.fromiter((ev.timestamp.timestamp() for ev in events), dtype=np.float64, count=len(events))
    v = attention_weights(vectors, times, config.long_half_life_days, config) @ vectors
    norm = float(np.linalg.norm(v))
    return (v / norm if norm > 0 else v).astype(np.float32)


def build_timeline(events: Sequence[Event], catalog: Catalog, index: VectorIndex | None = None,
                   period: str = "week", config: InterestConfig | None = None) -> list[Window]:
    """Split one user's events into windows.

    Args:
        events: the user's events (any order; sorted by time here, ties keep their order).
        catalog: item catalogue (for categories).
        index: item vectors; when given, each window gets an attention-pooled (dim,) vector.
        period: "day", "week", "month" or "events:N".
        config: attention-pooling settings for window vectors.

    Returns:
        Active windows, oldest first, indexed 0..n-1.
    """
    per = _events_per_window(period)
    config = config or InterestConfig()
    ordered = sorted(events, key=lambda e: e.timestamp)
    groups: list[tuple[datetime, datetime, list[Event]]] = []
    if per is not None:
        for i in range(0, len(ordered), per):
            chunk = ordered[i:i + per]
            groups.append((chunk[0].timestamp, chunk[-1].timestamp + timedelta(microseconds=1), chunk))
    else:
        for ev in ordered:
            start = period_start(ev.timestamp, period)
            if groups and groups[-1][0] == start:
                groups[-1][2].append(ev)
            else:
                groups.append((start, period_end(start, period), [ev]))
    windows = []
    for i, (start, end, evs) in enumerate(groups):
        items = tuple(ev.item for ev in evs)
        vector = _pooled(evs, index, config) if index is not None else None
        windows.append(Window(i, start, end, items, category_shares(items, catalog), vector))
    return windows
