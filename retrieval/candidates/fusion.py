"""Hybrid candidate generation: fuse several generators' ranked lists by weighted reciprocal rank.

Weighted RRF: an item's fused score is Σ_g w_g / (rrf_k + rank_g(item)), rank starting at 1, summed
over the generators that returned it. Ranks, not raw scores, are fused because the generators' scores
live on unrelated scales (softmax logits, cosine similarities, co-occurrence counts). Weights are set
on a validation split with `tune_weights`, from candidate lists computed once per generator.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from retrieval.candidates.base import Candidate, CandidateGenerator, Evidence, History
from retrieval.errors import ConfigError


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


@dataclass
class FusionTuning:
    """The weights chosen on validation and the Recall@k of every weight vector tried."""

    weights: tuple[float, ...]
    recall: float
    k: int
    tried: list[tuple[tuple[float, ...], float]] = field(default_factory=list)


def recall_at(lists: Sequence[Sequence[Candidate]], targets: Sequence[str], k: int) -> float:
    """Fraction of users whose target is in their top-k candidates."""
    if len(lists) != len(targets):
        raise ConfigError(f"{len(lists)} candidate lists but {len(targets)} targets")
    hits = sum(t in {c.item_id for c in cands[:k]} for cands, t in zip(lists, targets, strict=True))
    return hits / max(1, len(targets))


def tune_weights(per_generator: Sequence[Sequence[Sequence[Candidate]]], targets: Sequence[str], k: int = 20,
                 grid: Sequence[float] = (0.0, 0.25, 0.5, 1.0), rrf_k: float = 60.0) -> FusionTuning:
    """Grid-search RRF weights that maximise validation Recall@k.

    The first generator's weight is fixed at 1 (only ratios matter); the others range over `grid`.
    Ties go to the earlier weight vector in grid order, so the result is deterministic.

    Args:
        per_generator: for each generator, per user its best-first candidate list (computed once).
        targets: per user, the held-out validation item.
        k: the cut-off of the recall being maximised.
        grid: candidate weights for the generators after the first.
    """
    if not per_generator:
        raise ConfigError("tune_weights needs at least one generator's candidates")
    tried: list[tuple[tuple[float, ...], float]] = []
    for rest in itertools.product(grid, repeat=len(per_generator) - 1):
        weights = (1.0, *rest)
        fused = [rrf_fuse([p[u] for p in per_generator], weights, k, rrf_k) for u in range(len(targets))]
        score = recall_at(fused, targets, k)
        tried.append((weights, score))
    best = max(tried, key=lambda t: t[1])  # max() keeps the first of equal scores
    return FusionTuning(best[0], best[1], k, tried)
