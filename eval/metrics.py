"""Ranking metrics for one held-out target per user, bootstrap confidence intervals, paired comparison.

Everything starts from the target's 1-based rank per user (`np.inf` when the target cannot be
ranked, e.g. it is not among a retriever's candidates): HR@K = Recall@K = [rank ≤ K] (one relevant
item per user, so the two coincide), NDCG@K = 1/log2(rank + 1) if rank ≤ K else 0, MRR = 1/rank.

Ties never favour the target. `ties="pessimistic"` (the default) ranks the target below every
other item with the same score; `ties="random"` places it uniformly at random among them with a
seeded generator (the expected value of a random tie-break).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from retrieval.errors import ConfigError

KS: tuple[int, ...] = (1, 5, 10, 20)
Ties = Literal["pessimistic", "random"]


def _tie_offset(equal: np.ndarray, ties: Ties, rng: np.random.Generator | None) -> np.ndarray:
    if ties == "pessimistic":
        return equal
    if ties == "random":
        if rng is None:
            raise ConfigError("ties='random' needs a seeded rng")
        return np.floor(rng.random(equal.shape) * (equal + 1))
    raise ConfigError(f"unknown ties {ties!r}; valid: pessimistic, random")


def rank_full(scores: np.ndarray, targets: np.ndarray, excluded: np.ndarray, ties: Ties = "pessimistic",
              rng: np.random.Generator | None = None) -> np.ndarray:
    """Rank of each target among the non-excluded items.

    Args:
        scores: (n_users, n_items) float scores, higher is better (NaN counts as -inf).
        targets: (n_users,) int column of each user's target.
        excluded: (n_users, n_items) bool, True for items that are not ranked (seen items). A target
            that is itself excluded gets rank inf.
        ties: tie policy (module docstring).
        rng: generator for `ties="random"`.

    Returns:
        (n_users,) float ranks, 1-based; inf where the target is excluded.
    """
    scores = np.where(np.isnan(scores), -np.inf, scores)
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets][:, None]
    live = ~excluded
    greater = ((scores > target_scores) & live).sum(axis=1)
    equal = ((scores == target_scores) & live).sum(axis=1) - 1  # minus the target itself
    ranks = 1.0 + greater + _tie_offset(np.maximum(equal, 0).astype(np.float64), ties, rng)
    ranks[excluded[rows, targets]] = np.inf
    return ranks


def rank_candidates(scores: Sequence[np.ndarray], target_pos: np.ndarray, ties: Ties = "pessimistic",
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """Rank of each target within its user's candidate list.

    Args:
        scores: per user, (n_candidates_u,) scores of that user's candidates.
        target_pos: (n_users,) int position of the target in the user's candidates, -1 if absent.
        ties: tie policy.
        rng: generator for `ties="random"`.

    Returns:
        (n_users,) float ranks, 1-based; inf where the target is absent.
    """
    n = len(scores)
    width = max((len(s) for s in scores), default=0)
    padded = np.full((n, max(width, 1)), -np.inf)
    excluded = np.ones((n, max(width, 1)), dtype=bool)
    for u, s in enumerate(scores):
        padded[u, : len(s)] = s
        excluded[u, : len(s)] = False
    absent = np.asarray(target_pos) < 0
    pos = np.where(absent, 0, target_pos)
    ranks = rank_full(padded, pos, excluded, ties, rng)
    ranks[absent] = np.inf
    return ranks


def ndcg_at(ranks: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k of one held-out item per user: 1/log2(rank + 1) if rank ≤ k else 0.

    Args:
        ranks: (n_users,) 1-based ranks, inf for a miss.
        k: cut-off.

    Returns:
        (n_users,) float64.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    with np.errstate(divide="ignore"):
        gain = 1.0 / np.log2(ranks + 1.0)
    return np.where(ranks <= k, gain, 0.0)


def per_user_metrics(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, np.ndarray]:
    """Per-user metric values from ranks.

    Args:
        ranks: (n_users,) 1-based ranks, inf for a miss.
        ks: cut-offs.

    Returns:
        name → (n_users,) values: "hr@K", "recall@K", "ndcg@K" per K, and "mrr".
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = (ranks <= k).astype(np.float64)
        out[f"hr@{k}"] = hit
        out[f"recall@{k}"] = hit
        out[f"ndcg@{k}"] = ndcg_at(ranks, k)
    out["mrr"] = 1.0 / ranks
    return out


def coverage(top_items: Sequence[Sequence[str]] | np.ndarray, n_catalog: int) -> float:
    """Catalogue coverage: distinct recommended items / catalogue size.

    Args:
        top_items: per user, the recommended item ids or columns (e.g. the top 10).
        n_catalog: catalogue size.
    """
    if n_catalog < 1:
        raise ConfigError("coverage needs a non-empty catalogue")
    seen: set[object] = set()
    for row in top_items:
        seen.update(np.asarray(row).tolist())
    return len(seen) / n_catalog


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                 chunk: int = 100) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over users.

    Args:
        values: (n_users,) per-user metric values.
        n_boot: resamples.
        seed: generator seed (same seed → same interval).
        level: confidence level.
        chunk: resamples drawn at once (bounds memory at chunk × n_users indices).

    Returns:
        (low, high).
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    means = _boot_means(values, n_boot, seed, chunk)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _boot_means(values: np.ndarray, n_boot: int, seed: int, chunk: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(values)
    parts = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        parts.append(values[idx].mean(axis=1))
    return np.concatenate(parts)


@dataclass(frozen=True)
class PairedComparison:
    """Model A minus model B on the same users.

    Attributes:
        metric: metric name.
        mean_a, mean_b: the two means.
        diff: mean of per-user differences (A − B).
        ci95: bootstrap 95% interval of `diff`.
        p_value: two-sided paired bootstrap p-value for diff = 0.
        n_users: users compared.
        wins, losses: users where A is better / worse.
    """

    metric: str
    mean_a: float
    mean_b: float
    diff: float
    ci95: tuple[float, float]
    p_value: float
    n_users: int
    wins: int
    losses: int


def paired_comparison(a: np.ndarray, b: np.ndarray, metric: str = "", n_boot: int = 1000,
                      seed: int = 0) -> PairedComparison:
    """Paired bootstrap over per-user differences.

    Args:
        a, b: (n_users,) per-user values of the same metric for two models on the same users.
        metric: name for the result.
        n_boot: resamples.
        seed: generator seed.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ConfigError(f"paired comparison needs equal 1-d arrays, got {a.shape} and {b.shape}")
    d = a - b
    means = _boot_means(d, n_boot, seed, 100) if len(d) else np.zeros(1)
    low, high = np.quantile(means, [0.025, 0.975])
    # Two-sided percentile-bootstrap p-value: twice the share of resampled means on the far side of
    # zero (consistent with the percentile CI: the 95% CI excludes 0 exactly when p < 0.05).
    below, above = float(np.mean(means <= 0)), float(np.mean(means >= 0))
    p = min(1.0, 2 * min(below, above)) if len(d) else 1.0
    return PairedComparison(metric, float(a.mean()) if len(a) else 0.0, float(b.mean()) if len(b) else 0.0,
                            float(d.mean()) if len(d) else 0.0, (float(low), float(high)), p, len(d),
                            int((d > 0).sum()), int((d < 0).sum()))
