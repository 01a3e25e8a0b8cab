"""A user's interest evolution: windows, drift, detected shifts, long/short-term interests and a forecast."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from retrieval.data.model import Catalog, Event
from retrieval.evolution.drift import (
    ShiftConfig,
    TermConfig,
    change_points,
    consecutive_drift,
    long_short_terms,
    mean_shares,
)
from retrieval.evolution.forecast import ExpSmoothingForecaster, Forecaster
from retrieval.evolution.timeline import Window, build_timeline
from retrieval.vectors.index import VectorIndex


@dataclass(frozen=True)
class InterestShift:
    """Evidence of one interest shift, for the LLM describer.

    Attributes:
        at: start of the window where the shift shows.
        window: that window's index.
        from_categories: categories that lost share across the shift, largest loss first.
        to_categories: categories that gained share, largest gain first.
        strength: JS divergence between the mean distributions before and after, in [0, 1].
        supporting_items: item ids from the windows just before and at the shift (oldest first).
    """

    at: datetime
    window: int
    from_categories: tuple[str, ...]
    to_categories: tuple[str, ...]
    strength: float
    supporting_items: tuple[str, ...]


@dataclass(frozen=True)
class Evolution:
    """A user's interest evolution: windows, drift, shifts, long/short-term interests, forecast.

    Attributes:
        user: user id.
        period: "day" | "week" | "month" | "events:N".
        windows: the active windows, oldest first.
        drift: drift between consecutive windows (JS on categories, cosine where none), len = windows - 1.
        shifts: detected interest shifts in time order.
        long_term: categories present across most windows.
        short_term: recent categories that are new or rising.
        forecast: predicted category shares of the next window (empty with < 1 window).
        forecast_vector: (dim,) predicted interest vector of the next window, or None.
        forecaster: name of the forecaster used.
    """

    user: str
    period: str
    windows: tuple[Window, ...]
    drift: tuple[float, ...]
    shifts: tuple[InterestShift, ...]
    long_term: tuple[str, ...]
    short_term: tuple[str, ...]
    forecast: dict[str, float]
    forecast_vector: np.ndarray | None = None
    forecaster: str = ""



def _shift_evidence(windows: Sequence[Window], t: int, strength: float, span: int,
                    per_side: int = 3) -> InterestShift:
    before = mean_shares([w.categories for w in windows[max(0, t - span):t]])
    after = mean_shares([w.categories for w in windows[t:t + span]])
    # Sorted keys and name tie-breaks: set order varies between runs (string hashing is randomised).
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in sorted(set(before) | set(after))}
    lost = tuple(k for k, d in sorted(delta.items(), key=lambda kv: (kv[1], kv[0])) if d < -0.05)
    gained = tuple(k for k, d in sorted(delta.items(), key=lambda kv: (-kv[1], kv[0])) if d > 0.05)
    support = windows[t - 1].items[-per_side:] + windows[t].items[:per_side]
    return InterestShift(windows[t].start, t, lost[:3], gained[:3], strength, support)


def summarize_evolution(user: str, events: Sequence[Event], catalog: Catalog, index: VectorIndex | None = None,
                        period: str = "week", forecaster: Forecaster | None = None,
                        shift_config: ShiftConfig | None = None, term_config: TermConfig | None = None,
                        ) -> Evolution:
    """Everything about one user's interest evolution.

    Args:
        user: user id (for the record).
        events: the user's events.
        catalog: item catalogue.
        index: item vectors, optional (window vectors and the forecast vector need it).
        period: window size, see `build_timeline`.
        forecaster: predicts the next window; default exponential smoothing (needs no training).
        shift_config: change-point settings.
        term_config: long/short-term settings.
    """
    shift_config = shift_config or ShiftConfig()
    windows = tuple(build_timeline(events, catalog, index, period))
    dists = [w.categories for w in windows]
    drift = consecutive_drift(dists, [w.vector for w in windows])
    weights = [float(len(w.items)) for w in windows]
    shifts = tuple(_shift_evidence(windows, t, s, shift_config.span)
                   for t, s in change_points(dists, shift_config, weights))
    long_term, short_term = long_short_terms(dists, term_config)
    forecaster = forecaster or ExpSmoothingForecaster()
    shares, vector = ({}, None) if not windows else forecaster.forecast(windows)
    return Evolution(user, period, windows, drift, shifts, long_term, short_term, shares, vector, forecaster.name)


@dataclass(frozen=True)
class ShiftPick:
    """A user picked because their history has a detected interest shift with events on both sides.

    Attributes:
        user: the picked user, or None when no user qualifies.
        candidates: how many users qualified.
        period: the window size the shifts were detected at.
        seed: the seed of the pick.
        min_events: a qualifying user has at least this many events.
        min_side_events: the latest shift has at least this many events in the `span` windows before it
            and in the `span` windows from it on (a one-event window can look like a full shift).
    """

    user: str | None
    candidates: int
    period: str
    seed: int
    min_events: int
    min_side_events: int

    def statement(self) -> str:
        """One line saying how the user was picked."""
        rule = (f"≥ {self.min_events} events and a detected interest shift ({self.period} windows) with "
                f"≥ {self.min_side_events} events on each side")
        if self.user is None:
            return f"no user has {rule}; showing the first user"
        return (f"user {self.user} picked at random (seed {self.seed}) among the {self.candidates:,} users with "
                f"{rule}; pass --user to choose")


def side_events(windows: Sequence[Window], t: int, span: int) -> tuple[int, int]:
    """Events in the `span` windows before window t and in the `span` windows from t on."""
    return (sum(len(w.items) for w in windows[max(0, t - span):t]),
            sum(len(w.items) for w in windows[t:t + span]))


def pick_shift_user(histories: dict[str, Sequence[Event]], catalog: Catalog, period: str = "week", seed: int = 0,
                    min_events: int = 20, min_side_events: int = 5,
                    shift_config: ShiftConfig | None = None) -> ShiftPick:
    """Pick, reproducibly, a user whose latest detected shift (categories only) has events on both sides.

    The latest shift is the one the agent describes. Users are considered in sorted id order, so the
    pick depends only on the data and `seed`.
    """
    import random

    config = shift_config or ShiftConfig()
    qualified = []
    for user in sorted(histories):
        events = histories[user]
        if len(events) < min_events:
            continue
        windows = build_timeline(events, catalog, None, period)
        weights = [float(len(w.items)) for w in windows]
        points = change_points([w.categories for w in windows], config, weights)
        if points and min(side_events(windows, points[-1][0], config.span)) >= min_side_events:
            qualified.append(user)
    picked = random.Random(seed).choice(qualified) if qualified else None
    return ShiftPick(picked, len(qualified), period, seed, min_events, min_side_events)
