"""Drift between interest windows, change points where interests shift, long- vs short-term categories.

Category distributions are plain ``dict[str, float]`` shares summing to 1 (an empty dict means "no
categories"); vectors are L2-normalised ``(dim,)`` arrays. Every distance here lies in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.errors import ConfigError

Shares = Mapping[str, float]


def js_divergence(p: Shares, q: Shares) -> float:
    """Jensen–Shannon divergence (base 2, so in [0, 1]) between two category distributions.

    An empty distribution carries no evidence: the divergence to or from it is 0.
    """
    if not p or not q:
        return 0.0
    keys = sorted(set(p) | set(q))
    a = np.array([p.get(k, 0.0) for k in keys], dtype=np.float64)
    b = np.array([q.get(k, 0.0) for k in keys], dtype=np.float64)
    a, b = a / a.sum(), b / b.sum()
    m = 0.5 * (a + b)

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return float(min(1.0, max(0.0, 0.5 * kl(a) + 0.5 * kl(b))))


def cosine_distance(u: np.ndarray | None, v: np.ndarray | None) -> float:
    """(1 - cos) / 2 between two (dim,) vectors, in [0, 1]; 0 when either is missing or zero."""
    if u is None or v is None:
        return 0.0
    nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
    if nu == 0.0 or nv == 0.0:
        return 0.0
    return float(min(1.0, max(0.0, (1.0 - float(u @ v) / (nu * nv)) / 2.0)))


def mean_shares(dists: Sequence[Shares], weights: Sequence[float] | None = None) -> dict[str, float]:
    """Average of category distributions (empty ones skipped), optionally weighted, renormalised to sum to 1."""
    total: dict[str, float] = {}
    n = 0
    for i, d in enumerate(dists):
        if not d:
            continue
        n += 1
        w = 1.0 if weights is None else float(weights[i])
        for k, v in d.items():
            total[k] = total.get(k, 0.0) + w * v
    if n == 0:
        return {}
    s = sum(total.values())
    return {k: v / s for k, v in sorted(total.items(), key=lambda kv: -kv[1])}


def consecutive_drift(dists: Sequence[Shares], vectors: Sequence[np.ndarray | None] | None = None,
                      ) -> tuple[float, ...]:
    """Drift between consecutive windows: JS on categories, or cosine distance where no categories exist.

    Args:
        dists: per-window category shares, oldest first.
        vectors: per-window (dim,) vectors, same length, or None.

    Returns:
        len(dists) - 1 values in [0, 1].
    """
    out = []
    for i in range(1, len(dists)):
        if dists[i - 1] and dists[i]:
            out.append(js_divergence(dists[i - 1], dists[i]))
        elif vectors is not None:
            out.append(cosine_distance(vectors[i - 1], vectors[i]))
        else:
            out.append(0.0)
    return tuple(out)


@dataclass(frozen=True)
class ShiftConfig:
    """Change-point detection settings.

    Attributes:
        span: how many windows on each side of a candidate point are averaged (fewer at the ends).
        threshold: minimum JS divergence between the before/after mean distributions to call a shift.
        min_gap: minimum distance in windows between two reported change points.
    """

    # Defaults chosen by F1 on synthetic users (eval/evolution_synthetic.py, seed 1); see docs/evolution.md.
    span: int = 3
    threshold: float = 0.45
    min_gap: int = 3

    def __post_init__(self) -> None:
        if self.span < 1 or self.min_gap < 1:
            raise ConfigError("span and min_gap must be ≥ 1")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError("threshold must lie in (0, 1]")


def shift_scores(dists: Sequence[Shares], span: int, weights: Sequence[float] | None = None) -> np.ndarray:
    """Score of a change at each window start: JS(mean of `span` windows before, mean of `span` after).

    Args:
        dists: per-window category shares, oldest first.
        span: windows averaged on each side.
        weights: per-window weights (events per window), so a one-event window sways the mean less.

    Returns:
        (len(dists),) scores; index 0 is always 0 (nothing before it).
    """
    scores = np.zeros(len(dists))
    for t in range(1, len(dists)):
        lo, hi = max(0, t - span), t + span
        w_before = None if weights is None else weights[lo:t]
        w_after = None if weights is None else weights[t:hi]
        before = mean_shares(dists[lo:t], w_before)
        after = mean_shares(dists[t:hi], w_after)
        scores[t] = js_divergence(before, after)
    return scores


def change_points(dists: Sequence[Shares], config: ShiftConfig | None = None,
                  weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """Windows where interests shift: local maxima of `shift_scores` above the threshold.

    Points are taken greedily by score, and any point within `min_gap` windows of a stronger one is
    dropped, so one shift spread over two windows is reported once.

    Returns:
        (window index, strength) pairs in time order; a pair (t, s) means window t starts the new regime.
    """
    config = config or ShiftConfig()
    scores = shift_scores(dists, config.span, weights)
    chosen: list[int] = []
    for t in np.argsort(-scores, kind="stable").tolist():
        if scores[t] < config.threshold:
            break
        if all(abs(t - c) >= config.min_gap for c in chosen):
            chosen.append(t)
    return [(t, float(scores[t])) for t in sorted(chosen)]


@dataclass(frozen=True)
class TermConfig:
    """Long- vs short-term interest settings.

    Attributes:
        min_share: a category counts as present in a window when its share is at least this.
        stable_fraction: long-term categories are present in at least this fraction of windows.
        recent: how many newest windows form "recent".
        lift: short-term categories have recent share ≥ lift × their share before the recent windows.
    """

    min_share: float = 0.1
    stable_fraction: float = 0.6
    recent: int = 2
    lift: float = 2.0


def long_short_terms(dists: Sequence[Shares], config: TermConfig | None = None,
                     ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Long-term (present in most windows) and short-term (recent and new or rising) categories.

    Returns:
        (long_term, short_term), each ordered by overall share, largest first; disjoint.
    """
    config = config or TermConfig()
    live = [d for d in dists if d]
    if not live:
        return (), ()
    overall = mean_shares(live)
    present = {k: sum(d.get(k, 0.0) >= config.min_share for d in live) / len(live) for k in overall}
    long_term = tuple(k for k in overall if present[k] >= config.stable_fraction and len(live) > 1)
    recent = mean_shares(live[-config.recent:])
    earlier = mean_shares(live[:-config.recent])
    short_term = tuple(
        k for k in recent
        if k not in long_term and recent[k] >= config.min_share
        and recent[k] >= config.lift * earlier.get(k, 0.0)
    )
    return long_term, short_term
