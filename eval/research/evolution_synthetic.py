"""Synthetic users with planted interest shifts of known time, and precision/recall of shift detection.

Each user is active every week; week w is window w. A user follows one category mix (a sparse
Dirichlet draw over the genres) and at each planted week switches to a new mix whose JS divergence
from the old one is at least `min_js` (so the right answer is a real shift, not noise). A share of
users has no shift at all, so false alarms cost precision.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from retrieval.data.model import Catalog, Dataset, Event, Item
from retrieval.evolution.drift import ShiftConfig, change_points, js_divergence
from retrieval.evolution.timeline import build_timeline

GENRES = ("action", "comedy", "drama", "horror", "romance", "scifi", "documentary", "animation",
          "thriller", "western", "musical", "war")
START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday, so week w of the data is calendar week w


def _mix(rng: np.random.Generator) -> np.ndarray:
    return rng.dirichlet(np.full(len(GENRES), 0.3))


def _as_shares(p: np.ndarray) -> dict[str, float]:
    return {g: float(v) for g, v in zip(GENRES, p, strict=True) if v > 0}


@dataclass(frozen=True)
class SyntheticShifts:
    """A synthetic dataset and, per user, the windows where a new regime starts (the answer key)."""

    dataset: Dataset
    planted: dict[str, tuple[int, ...]]


def synthetic_shift_users(n_users: int = 200, n_weeks: int = 16, items_per_week: float = 8.0,
                          no_shift_share: float = 0.25, min_js: float = 0.5, seed: int = 0) -> SyntheticShifts:
    """Users with 0, 1 or 2 planted shifts; shifts are ≥ 3 weeks from each other and from the ends.

    Args:
        n_users: number of users.
        n_weeks: weeks (= windows) per user.
        items_per_week: Poisson mean of events per week (at least one event each week).
        no_shift_share: share of users with no shift.
        min_js: minimum JS divergence between the mixes before and after a shift.
        seed: random seed; the same seed gives the same data.
    """
    rng = np.random.default_rng(seed)
    items = [Item(id=f"{g}-{i}", title=f"{g} title {i}", categories=(g,)) for g in GENRES for i in range(40)]
    events: list[Event] = []
    planted: dict[str, tuple[int, ...]] = {}
    for u in range(n_users):
        user = f"s{u}"
        r = rng.random()
        n_shifts = 0 if r < no_shift_share else (1 if r < no_shift_share + (1 - no_shift_share) * 0.6 else 2)
        points: list[int] = []
        while len(points) < n_shifts:
            t = int(rng.integers(3, n_weeks - 2))
            if all(abs(t - p) >= 3 for p in points):
                points.append(t)
        points.sort()
        planted[user] = tuple(points)
        mix = _mix(rng)
        for w in range(n_weeks):
            if w in points:
                new = _mix(rng)
                while js_divergence(_as_shares(mix), _as_shares(new)) < min_js:
                    new = _mix(rng)
                mix = new
            for _ in range(max(1, int(rng.poisson(items_per_week)))):
                g = GENRES[int(rng.choice(len(GENRES), p=mix))]
                when = START + timedelta(days=7 * w + float(rng.uniform(0, 6.9)))
                events.append(Event(user=user, item=f"{g}-{int(rng.integers(0, 40))}", timestamp=when))
    return SyntheticShifts(Dataset(Catalog(items), events, name=f"synthetic-shifts-{seed}"), planted)


@dataclass(frozen=True)
class DetectionScore:
    """Precision and recall of detected change points within ±tolerance windows of planted ones."""

    precision: float
    recall: float
    detected: int
    planted: int
    matched: int

    @property
    def f1(self) -> float:
        s = self.precision + self.recall
        return 2 * self.precision * self.recall / s if s else 0.0


def match_points(detected: Sequence[int], planted: Sequence[int], tolerance: int = 1) -> int:
    """Number of planted points matched one-to-one by a detected point within ±tolerance."""
    free = list(detected)
    hits = 0
    for p in planted:
        near = [d for d in free if abs(d - p) <= tolerance]
        if near:
            free.remove(min(near, key=lambda d: abs(d - p)))
            hits += 1
    return hits


def consecutive_detector(dists: Sequence[dict[str, float]], threshold: float) -> list[int]:
    """Baseline detector: every window whose JS to the previous window exceeds the threshold."""
    return [t for t in range(1, len(dists)) if js_divergence(dists[t - 1], dists[t]) >= threshold]


def window_shares(data: SyntheticShifts) -> dict[str, tuple[list[dict[str, float]], list[float]]]:
    """Per user, weekly window shares and events per window (computed once, scored many times)."""
    out = {}
    for user, events in data.dataset.histories.items():
        windows = build_timeline(events, data.dataset.catalog, period="week")
        out[user] = ([w.categories for w in windows], [float(len(w.items)) for w in windows])
    return out


Detector = Callable[[list[dict[str, float]], list[float]], list[int]]


def score_detector(data: SyntheticShifts, detect: Detector, tolerance: int = 1,
                   shares: dict[str, tuple[list[dict[str, float]], list[float]]] | None = None) -> DetectionScore:
    """Score `detect(window shares, events per window) -> window indices` against the planted points."""
    shares = shares or window_shares(data)
    detected = planted = matched = 0
    for user, (dists, counts) in shares.items():
        found = detect(dists, counts)
        detected += len(found)
        planted += len(data.planted[user])
        matched += match_points(found, data.planted[user], tolerance)
    return DetectionScore(matched / detected if detected else 1.0, matched / planted if planted else 1.0,
                          detected, planted, matched)


def windowed(config: ShiftConfig | None = None) -> Detector:
    """The shipped detector (`retrieval.evolution.drift.change_points`, event-weighted) as a Detector."""
    return lambda dists, counts: [t for t, _ in change_points(dists, config, counts)]


def consecutive(threshold: float) -> Detector:
    """The baseline detector as a Detector."""
    return lambda dists, counts: consecutive_detector(dists, threshold)


def tune_and_test(tune_seed: int = 1, test_seeds: Sequence[int] = (2, 3, 4, 5, 6), n_users: int = 200,
                  ) -> dict[str, object]:
    """Pick each detector's settings by F1 on one synthetic draw; report them on fresh draws.

    Returns:
        JSON-ready dict: per detector the chosen settings and, per test seed, precision/recall.
    """
    tune = synthetic_shift_users(n_users, seed=tune_seed)
    tune_shares = window_shares(tune)
    grid = [ShiftConfig(span, float(thr), gap) for span in (1, 2, 3, 4) for gap in (1, 2, 3)
            for thr in np.arange(0.1, 0.75, 0.05).round(2)]
    best = max(grid, key=lambda c: score_detector(tune, windowed(c), shares=tune_shares).f1)
    thresholds = [float(t) for t in np.arange(0.1, 0.95, 0.05).round(2)]
    thr = max(thresholds, key=lambda t: score_detector(tune, consecutive(t), shares=tune_shares).f1)
    detectors = {"windowed (tuned)": windowed(best), "windowed (shipped default)": windowed(ShiftConfig()),
                 "consecutive (tuned)": consecutive(thr)}
    out: dict[str, object] = {"tune_seed": tune_seed, "n_users": n_users,
                              "chosen": {"windowed": best.__dict__, "consecutive_threshold": thr}}
    for name, det in detectors.items():
        per_seed = {}
        for seed in test_seeds:
            data = synthetic_shift_users(n_users, seed=seed)
            sc = score_detector(data, det)
            per_seed[seed] = {"precision": round(sc.precision, 3), "recall": round(sc.recall, 3),
                              "detected": sc.detected, "planted": sc.planted}
        out[name] = {"per_seed": per_seed,
                     "min_precision": min(v["precision"] for v in per_seed.values()),
                     "min_recall": min(v["recall"] for v in per_seed.values()),
                     "mean_precision": round(float(np.mean([v["precision"] for v in per_seed.values()])), 3),
                     "mean_recall": round(float(np.mean([v["recall"] for v in per_seed.values()])), 3)}
    return out
