"""Hybrid candidate generation: fuse several generators' ranked lists by weighted reciprocal rank.

Weighted RRF: an item's fused score is Σ_g w_g / (rrf_k + rank_g(item)), rank starting at 1, summed
over the generators that returned it. Ranks, not raw scores, are fused because the generators' scores
live on unrelated scales (softmax logits, cosine similarities, co-occurrence counts). The weights and
the rank offset `rrf_k` are set on a validation split with `tune_weights` (by NDCG@10 unless told
otherwise), from candidate lists computed once per generator.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from retrieval.candidates.base import Candidate, CandidateGenerator, Evidence, Histories, History
from retrieval.errors import ConfigError

# The search space of `tune_weights`: weights of the generators after the first, and RRF rank offsets.
WEIGHT_GRID = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
RRF_KS = (1.0, 5.0, 10.0, 20.0, 60.0)


def rrf_fuse(lists: Sequence[Sequence[Candidate]], weights: Sequence[float], k: int, rrf_k: float = 60.0,
             source: str = "fusion") -> list[Candidate]:
    """Fuse ranked candidate lists of one user into the top k.

    Args:
        lists: one best-first list per generator.
        weights: one non-negative weight per list.
        k: number of candidates to return.
        rrf_k: rank offset; larger values flatten the difference between top and lower ranks.
        source: the `source` of the fused candidates.

    Returns:
        up to k candidates, best first; ties keep the order of first appearance (generator order, then rank).
    """
    if len(lists) != len(weights):
        raise ConfigError(f"{len(lists)} candidate lists but {len(weights)} weights")
    score: dict[str, float] = {}
    for cands, w in zip(lists, weights, strict=True):
        if w <= 0:
            continue
        for rank, cand in enumerate(cands, 1):
            score[cand.item_id] = score.get(cand.item_id, 0.0) + w / (rrf_k + rank)
    # sorted() is stable, so equal scores keep first-appearance order: deterministic, not id order.
    best = sorted(score.items(), key=lambda kv: -kv[1])[:k]
    return [Candidate(item, s, source) for item, s in best]


class FusionGenerator(CandidateGenerator):
    """A CandidateGenerator that fuses other generators by weighted reciprocal-rank fusion.

    Args:
        generators: the generators to fuse (each drops its users' seen items itself).
        weights: one non-negative weight per generator (default: all 1.0, plain RRF).
        depth: candidates taken from each generator (default: max(k, 100)).
        rrf_k: RRF rank offset.
    """

    name = "fusion"

    def __init__(self, generators: Sequence[CandidateGenerator], weights: Sequence[float] | None = None,
                 depth: int | None = None, rrf_k: float = 60.0) -> None:
        if not generators:
            raise ConfigError("FusionGenerator needs at least one generator")
        self.generators = list(generators)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.generators)
        if len(self.weights) != len(self.generators) or any(w < 0 for w in self.weights) or not any(self.weights):
            raise ConfigError(f"weights {self.weights} must be {len(self.generators)} non-negative numbers, "
                              "not all zero")
        self.depth, self.rrf_k = depth, rrf_k
        # The generators' lists for the latest histories: evidence for just-generated candidates needs
        # their ranks, and generating them again would double the cost of a recommendation.
        self._latest: tuple[object, list[list[list[Candidate]]]] | None = None

    def __repr__(self) -> str:
        parts = ", ".join(f"{g.name}×{w:g}" for g, w in zip(self.generators, self.weights, strict=True))
        return f"<FusionGenerator RRF({parts}), rrf_k={self.rrf_k:g}>"

    def generate_batch(self, histories: Sequence[History], k: int) -> list[list[Candidate]]:
        per = self._lists(histories, max(k, self.depth or 100))
        return [rrf_fuse([p[u] for p in per], self.weights, k, self.rrf_k, self.name) for u in range(len(histories))]

    def _lists(self, histories: Sequence[History], depth: int) -> list[list[list[Candidate]]]:
        """Per generator, per history, its best-first list at `depth` (the latest call's are reused)."""
        key = (depth, tuple(tuple((ev.item, ev.timestamp) for ev in h) for h in histories))
        latest = self._latest
        if latest is not None and latest[0] == key:
            return latest[1]
        per: list[list[list[Candidate]]] = [g.generate_batch(histories, depth) if w > 0 else [[] for _ in histories]
               for g, w in zip(self.generators, self.weights, strict=True)]
        self._latest = (key, per)
        return per

    def evidence_batch(self, histories: Sequence[History],
                       item_ids: Sequence[Sequence[str]]) -> list[list[tuple[Evidence, ...]]]:
        """Each fused generator's evidence, weighted by that generator's share of the fused score.

        An item's fused score is Σ_g w_g / (rrf_k + rank_g); generator g's share is its term over that
        sum. Each generator's evidence for the item is rescaled to sum to g's share (the generators'
        own weights live on unrelated scales), so an item's merged weights sum to 1 minus the share of
        generators that gave no evidence (e.g. the popularity fallback). The ranks come from the generators'
        lists at the fusion depth (the latest `generate_batch`'s when the histories are the same); each
        generator is asked for evidence of the items it ranked.
        """
        depth = max(self.depth or 100, max((len(ids) for ids in item_ids), default=0))
        merged: list[list[list[Evidence]]] = [[[] for _ in ids] for ids in item_ids]
        fused: list[list[float]] = [[0.0] * len(ids) for ids in item_ids]
        for gen, w, lists in zip(self.generators, self.weights, self._lists(histories, depth), strict=True):
            if w <= 0:
                continue
            ranks = [{c.item_id: r for r, c in enumerate(cands, 1)} for cands in lists]
            asked = [[i for i in ids if i in ranks[u]] for u, ids in enumerate(item_ids)]
            found = gen.evidence_batch(histories, asked)
            for u, ids in enumerate(item_ids):
                by_item = dict(zip(asked[u], found[u], strict=True))
                for j, item in enumerate(ids):
                    if item not in ranks[u]:
                        continue
                    term = w / (self.rrf_k + ranks[u][item])
                    fused[u][j] += term
                    mass = sum(e.weight for e in by_item[item])
                    if mass > 0:
                        merged[u][j] += [replace(e, weight=e.weight / mass * term) for e in by_item[item]]
        return [[tuple(sorted((replace(e, weight=e.weight / total) for e in ev), key=lambda e: -e.weight))
                 if total > 0 else () for ev, total in zip(row, totals, strict=True)]
                for row, totals in zip(merged, fused, strict=True)]


FusionMetric = Literal["ndcg", "recall"]


@dataclass(frozen=True)
class FusionTrial:
    """One fusion setting tried on validation and its mean metric."""

    weights: tuple[float, ...]
    rrf_k: float
    value: float


@dataclass(frozen=True)
class FusionTuning:
    """The fusion chosen on validation: its weights, RRF offset, metric value, and every setting tried.

    Attributes:
        weights: one weight per generator (the first fixed at 1: only ratios matter).
        rrf_k: the chosen RRF rank offset.
        metric: what was maximised, e.g. "ndcg@10".
        value: its mean over the validation users.
        n_users: how many validation users.
        tried: every (weights, rrf_k) in search order with its value.
    """

    weights: tuple[float, ...]
    rrf_k: float
    metric: str
    value: float
    n_users: int
    tried: tuple[FusionTrial, ...]


def recall_at(lists: Sequence[Sequence[Candidate]], targets: Sequence[str], k: int) -> float:
    """Fraction of users whose target is in their top-k candidates."""
    if len(lists) != len(targets):
        raise ConfigError(f"{len(lists)} candidate lists but {len(targets)} targets")
    hits = sum(t in {c.item_id for c in cands[:k]} for cands, t in zip(lists, targets, strict=True))
    return hits / max(1, len(targets))


class _RankTable:
    """Every generator's rank of every item it returned, per user, for fast fused ranks of the targets.

    Per user the items are the union of the generators' lists; `ranks` is (n_generators, n_users,
    max_items) with inf where a generator did not return the item (and in padding).
    """

    def __init__(self, per_generator: Sequence[Sequence[Sequence[Candidate]]], targets: Sequence[str]) -> None:
        if not per_generator:
            raise ConfigError("fusion tuning needs at least one generator's candidates")
        if any(len(p) != len(targets) for p in per_generator):
            raise ConfigError(f"every generator needs one candidate list per target ({len(targets)})")
        columns: list[dict[str, int]] = []
        for u in range(len(targets)):
            col: dict[str, int] = {}
            for lists in per_generator:
                for c in lists[u]:
                    col.setdefault(c.item_id, len(col))
            columns.append(col)
        width = max((len(c) for c in columns), default=0) + 1  # +1: never empty
        self.ranks = np.full((len(per_generator), len(targets), width), np.inf)
        for g, lists in enumerate(per_generator):
            for u, cands in enumerate(lists):
                # A generator lists an item at most once (CandidateGenerator's contract).
                self.ranks[g, u, [columns[u][c.item_id] for c in cands]] = np.arange(1, len(cands) + 1)
        self.target = np.array([columns[u].get(t, -1) for u, t in enumerate(targets)])

    def target_ranks(self, weights: Sequence[float], rrf_k: float) -> np.ndarray:
        """(n_users,) 1-based rank of each target in `rrf_fuse`'s order (inf when no weighted list has it)."""
        n_gen, n_users, width = self.ranks.shape
        score = np.zeros((n_users, width))
        first = np.full((n_users, width), np.inf)  # rrf_fuse's first-appearance order: (generator, rank)
        for g, w in enumerate(weights):
            if w <= 0:
                continue
            found = np.isfinite(self.ranks[g])
            # Summed in generator order, like rrf_fuse, so equal fused scores are equal bit for bit.
            score = np.where(found, score + w / (rrf_k + self.ranks[g]), score)
            first = np.minimum(first, np.where(found, g * (width + 1) + self.ranks[g], np.inf))
        users = np.arange(n_users)
        t = np.maximum(self.target, 0)
        ts, tf = score[users, t][:, None], first[users, t][:, None]
        ahead = (score > ts) | ((score == ts) & (first < tf))
        ranks = 1.0 + ahead.sum(axis=1)
        return np.where((self.target >= 0) & np.isfinite(tf[:, 0]), ranks, np.inf)


def metric_of_ranks(ranks: np.ndarray, metric: FusionMetric, k: int) -> float:
    """Mean NDCG@k (one relevant item: 1 / log2(rank + 1)) or Recall@k over users; 0.0 for no users."""
    if not len(ranks):
        return 0.0
    hit = ranks <= k
    if metric == "recall":
        return float(hit.mean())
    return float(np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 1.0) + 1.0), 0.0).mean())


def fused_metric(per_generator: Sequence[Sequence[Sequence[Candidate]]], targets: Sequence[str],
                 weights: Sequence[float], rrf_k: float, metric: FusionMetric = "ndcg", k: int = 10) -> float:
    """Mean metric of `rrf_fuse(lists, weights, rrf_k=rrf_k)` over users (one-hot weights: one list alone).

    Args:
        per_generator: for each generator, per user its best-first candidate list.
        targets: per user, the held-out item.
        weights: one weight per generator.
        rrf_k: RRF rank offset.
        metric: "ndcg" or "recall".
        k: the metric's cut-off.
    """
    if len(weights) != len(per_generator):
        raise ConfigError(f"{len(per_generator)} generators but {len(weights)} weights")
    return metric_of_ranks(_RankTable(per_generator, targets).target_ranks(weights, rrf_k), metric, k)


def tune_weights(per_generator: Sequence[Sequence[Sequence[Candidate]]], targets: Sequence[str],
                 metric: FusionMetric = "ndcg", k: int = 10,
                 grid: Sequence[float] = WEIGHT_GRID, rrf_ks: Sequence[float] = RRF_KS) -> FusionTuning:
    """Grid-search RRF weights and rank offset that maximise a validation metric.

    The first generator's weight is fixed at 1 (only ratios matter); the others range over `grid`,
    and `rrf_k` over `rrf_ks`. Fused ranks are exactly `rrf_fuse`'s (ties included), computed for all
    users at once, so the search costs milliseconds per setting. Ties between settings go to the
    earlier one in search order (rrf_k outer, weights in grid order), so the result is deterministic.

    Args:
        per_generator: for each generator, per user its best-first candidate list (computed once).
        targets: per user, the held-out validation item.
        metric: "ndcg" (rank-sensitive: the final order) or "recall" (the candidate set for a reranker).
        k: the metric's cut-off.
        grid: candidate weights for the generators after the first.
        rrf_ks: candidate RRF rank offsets (small values let top ranks dominate).

    Raises:
        ConfigError: no generators, lists not aligned with targets, or an empty grid.
    """
    if not grid or not rrf_ks or any(w < 0 for w in grid) or any(r <= 0 for r in rrf_ks):
        raise ConfigError("tune_weights needs non-negative weights and positive rrf_ks")
    table = _RankTable(per_generator, targets)
    tried: list[FusionTrial] = []
    for rrf_k in rrf_ks:
        for rest in itertools.product(grid, repeat=len(per_generator) - 1):
            weights = (1.0, *(float(w) for w in rest))
            value = metric_of_ranks(table.target_ranks(weights, rrf_k), metric, k)
            tried.append(FusionTrial(weights, float(rrf_k), value))
    best = max(tried, key=lambda t: t.value)  # max() keeps the first of equal values
    return FusionTuning(best.weights, best.rrf_k, f"{metric}@{k}", best.value, len(targets), tuple(tried))


def tune_on_holdout(build: Callable[[Histories], Sequence[CandidateGenerator]], histories: Histories,
                    users: int = 1000, seed: int = 0, depth: int = 100, metric: FusionMetric = "ndcg",
                    k: int = 10) -> FusionTuning | None:
    """`tune_weights` on each sampled user's last event, held out from the histories the generators learn from.

    For a generator built without a validation split (the agent's): a seeded sample of up to `users`
    users with at least two events loses its last event; `build` makes the generators from those
    histories (so item-kNN's co-occurrences never contain a held-out event), and each sampled user's
    remaining history is asked for candidates. Generators trained beforehand (a sequential model) are
    taken as given: if they saw the held-out events, their weight is overrated.

    Args:
        build: histories → the generators to fuse, in fusion order (the first one's weight is fixed at 1).
        histories: user → events, oldest first.
        users: most users held out.
        seed: seeds the sample.
        depth: candidates per generator.
        metric, k: what is maximised (default NDCG@10).

    Returns:
        The tuning, or None when no user has two events.
    """
    eligible = [u for u, events in histories.items() if len(events) >= 2]
    if not eligible:
        return None
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(eligible), size=min(users, len(eligible)), replace=False).tolist())
    held = {eligible[i] for i in picked}
    inputs = {u: (list(events[:-1]) if u in held else events) for u, events in histories.items()}
    sample = [inputs[eligible[i]] for i in picked]
    targets = [histories[eligible[i]][-1].item for i in picked]
    per = [g.generate_batch(sample, depth) for g in build(inputs)]
    return tune_weights(per, targets, metric, k)
