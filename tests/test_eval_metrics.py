"""Ranking metrics, CIs and paired comparison against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval.metrics import bootstrap_ci, coverage, paired_comparison, per_user_metrics, rank_candidates, rank_full
from retrieval.errors import ConfigError


def test_rank_full_counts_ties_against_the_target() -> None:
    scores = np.array([[0.1, 0.5, 0.3, 0.5],
                       [0.9, 0.2, 0.2, 0.2],
                       [0.4, 0.4, 0.4, 0.4]])
    targets = np.array([1, 2, 0])
    none = np.zeros_like(scores, dtype=bool)
    # user 0: nothing above, one tie → 2; user 1: 0.9 above, two ties → 4; user 2: three ties → 4
    np.testing.assert_array_equal(rank_full(scores, targets, none), [2.0, 4.0, 4.0])


def test_rank_full_skips_excluded_items_and_misses_excluded_targets() -> None:
    scores = np.array([[0.1, 0.5, 0.3, 0.5], [0.9, 0.2, 0.8, 0.1]])
    excluded = np.array([[False, False, False, True], [True, False, False, False]])
    # user 0: the tie (col 3) is excluded → rank 1; user 1: col 0 excluded, col 2 above → rank 2
    np.testing.assert_array_equal(rank_full(scores, np.array([1, 1]), excluded), [1.0, 2.0])
    assert rank_full(scores, np.array([3, 0]), excluded).tolist() == [math.inf, math.inf]


def test_rank_full_treats_nan_as_worst() -> None:
    scores = np.array([[np.nan, 0.1, np.nan]])
    assert rank_full(scores, np.array([1]), np.zeros((1, 3), dtype=bool))[0] == 1.0
    assert rank_full(scores, np.array([0]), np.zeros((1, 3), dtype=bool))[0] == 3.0  # tied with col 2, pessimistic


def test_random_ties_are_seeded_and_average_the_tie_range() -> None:
    scores = np.full((4000, 5), 0.3)
    targets = np.zeros(4000, dtype=int)
    none = np.zeros_like(scores, dtype=bool)
    a = rank_full(scores, targets, none, "random", np.random.default_rng(1))
    b = rank_full(scores, targets, none, "random", np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert abs(a.mean() - 3.0) < 0.1  # uniform over 1..5
    with pytest.raises(ConfigError):
        rank_full(scores, targets, none, "random", None)


def test_rank_candidates_variable_lengths_and_absent_targets() -> None:
    scores = [np.array([0.2, 0.9, 0.5]), np.array([0.1]), np.array([0.3, 0.3, 0.7, 0.1])]
    ranks = rank_candidates(scores, np.array([2, -1, 0]))
    # user 0: 0.5 has 0.9 above → 2; user 1: target absent → inf; user 2: 0.7 above, one tie → 3
    assert ranks.tolist() == [2.0, math.inf, 3.0]


def test_per_user_metrics_hand_computed() -> None:
    m = per_user_metrics(np.array([1.0, 3.0, 12.0, math.inf]), ks=(1, 5, 10, 20))
    assert m["hr@1"].tolist() == [1, 0, 0, 0]
    assert m["hr@5"].tolist() == [1, 1, 0, 0]
    assert m["recall@10"].tolist() == [1, 1, 0, 0]
    assert m["hr@20"].tolist() == [1, 1, 1, 0]
    np.testing.assert_allclose(m["ndcg@1"], [1, 0, 0, 0])
    np.testing.assert_allclose(m["ndcg@10"], [1.0, 0.5, 0.0, 0.0])  # 1/log2(3+1) = 0.5
    np.testing.assert_allclose(m["ndcg@20"], [1.0, 0.5, 1 / math.log2(13), 0.0])
    np.testing.assert_allclose(m["mrr"], [1.0, 1 / 3, 1 / 12, 0.0])


def test_random_expected_ndcg_on_twenty_candidates_is_the_llmrank_anchor() -> None:
    # Every rank 1..20 equally likely: N@10 = (1/20) Σ_{r≤10} 1/log2(r+1) = 0.2272 (LLMRank's 22.72).
    m = per_user_metrics(np.arange(1.0, 21.0))
    assert m["ndcg@10"].mean() == pytest.approx(0.22716, abs=1e-4)
    assert m["hr@10"].mean() == pytest.approx(0.5)


def test_coverage() -> None:
    assert coverage([["a", "b"], ["b", "c"]], 10) == pytest.approx(0.3)
    assert coverage(np.array([[0, 1], [1, 0]]), 4) == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        coverage([], 0)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean() -> None:
    assert bootstrap_ci(np.full(50, 0.25)) == (0.25, 0.25)
    values = np.array([0.0, 1.0] * 200)
    lo, hi = bootstrap_ci(values, n_boot=2000, seed=3)
    assert (lo, hi) == bootstrap_ci(values, n_boot=2000, seed=3)
    assert lo < 0.5 < hi
    # Normal approximation: half-width ≈ 1.96 · 0.5 / sqrt(400) = 0.049.
    assert 0.035 < (hi - lo) / 2 < 0.065


def test_paired_comparison() -> None:
    rng = np.random.default_rng(0)
    b = rng.random(300)
    same = paired_comparison(b, b.copy(), "m")
    assert same.diff == 0.0 and same.wins == same.losses == 0 and same.p_value == 1.0
    better = paired_comparison(b + 0.1, b, "m")
    assert better.diff == pytest.approx(0.1)
    assert better.ci95 == pytest.approx((0.1, 0.1))
    assert better.wins == 300 and better.p_value == 0.0
    noisy = paired_comparison(b + rng.normal(0, 0.3, 300), b, "m", seed=1)
    assert noisy.ci95[0] < 0 < noisy.ci95[1] and noisy.p_value > 0.05
    with pytest.raises(ConfigError):
        paired_comparison(b, b[:10])
