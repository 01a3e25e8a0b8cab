"""Counterfactually verified citations: the fewest evidence items whose removal takes an item out of the list.

An explanation should cite what produced the recommendation. The evidence (`Candidate.evidence`)
measures each history item's part in the score, but a popular item is often held up by many history
items at once, so removing the three largest contributors may leave it in the list. Here the cited
set grows along the evidence order (largest contribution first, `cited_items`) until removing it from
the history and asking the same generator again pushes the item out of the top k: the smallest such
prefix is cited, and the citation is *verified*. This is the counterfactual explanation of PRINCE
(Ghazimatin et al., WSDM 2020), searched along the model's own attribution.

Contributions measured one item at a time miss interactions (two neighbours that each hold the item
up alone), so an item that no prefix takes out gets a second, greedy search over its `pool` largest
contributors: each step removes the contributor whose removal (with those already chosen) moves the
item furthest down, until it leaves the top k or `most` items are chosen. When neither search finds
a set, the first `fallback` items are cited, unverified.

Cost: at most `most` `generate_batch` calls per batch of users over the items not yet verified (one
shortened history per item), then at most `most` more over `pool` histories per item left.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from retrieval.candidates.base import Candidate, CandidateGenerator, History, cited_items

# Most items a verified citation may name; an explanation naming more would not be read.
MOST_CITED = 5
# Largest contributors the greedy search chooses from, and how deep it reads the re-scored lists.
GREEDY_POOL = 10
GREEDY_DEPTH = 100


@dataclass(frozen=True, slots=True)
class Citation:
    """The history items an explanation cites for one recommended item.

    Attributes:
        items: cited history item ids, largest contribution first.
        verified: removing `items` from the history took the item out of the generator's top k.
    """

    items: tuple[str, ...]
    verified: bool


def rank_among_unseen(candidates: Sequence[Candidate], item_id: str, seen: set[str]) -> int | None:
    """1-based rank of `item_id` among candidates not in `seen`, or None when it is not listed."""
    rank = 0
    for cand in candidates:
        if cand.item_id in seen:
            continue
        rank += 1
        if cand.item_id == item_id:
            return rank
    return None


def verified_citations(generator: CandidateGenerator, histories: Sequence[History],
                       candidates: Sequence[Sequence[Candidate]], k: int, most: int = MOST_CITED,
                       fallback: int = 3, pool: int = GREEDY_POOL) -> list[list[Citation]]:
    """Per user and candidate (with its evidence attached), the citation an explanation should make.

    Args:
        generator: the generator whose list the candidates come from (it scores the shortened histories).
        histories: per user, events oldest first (what the candidates were generated from).
        candidates: per user, the shown candidates with `evidence` (`CandidateGenerator.with_evidence`).
        k: the list length an item must fall out of.
        most: largest cited set tried.
        fallback: items cited (unverified) when no set of up to `most` items takes the item out.
        pool: largest contributors the greedy search (items no prefix takes out) chooses from.

    Returns:
        len(histories) lists with one `Citation` per candidate, same order. A candidate without
        score evidence gets an empty, unverified citation.
    """
    orders = [[cited_items(c.evidence, most) for c in cands] for cands in candidates]
    seen = [{ev.item for ev in history} for history in histories]
    found: dict[tuple[int, int], Citation] = {}
    for size in range(1, most + 1):
        jobs = [(u, j) for u, order in enumerate(orders) for j, items in enumerate(order)
                if (u, j) not in found and len(items) >= size]
        if not jobs:
            break
        shortened = []
        for u, j in jobs:
            removed = set(orders[u][j][:size])
            shortened.append([ev for ev in histories[u] if ev.item not in removed])
        # Removed items are unseen again and may come back; ask for room so k unseen items remain.
        again = generator.generate_batch(shortened, k + size)
        for (u, j), cands in zip(jobs, again, strict=True):
            rank = rank_among_unseen(cands, candidates[u][j].item_id, seen[u])
            if rank is None or rank > k:
                found[(u, j)] = Citation(orders[u][j][:size], True)
    left = [(u, j) for u, order in enumerate(orders) for j in range(len(order)) if (u, j) not in found]
    found.update(_greedy(generator, histories, seen, candidates, left, k, most, pool))
    return [[found.get((u, j), Citation(items[:fallback], False)) for j, items in enumerate(order)]
            for u, order in enumerate(orders)]


def _greedy(generator: CandidateGenerator, histories: Sequence[History], seen: Sequence[set[str]],
            candidates: Sequence[Sequence[Candidate]], jobs: Sequence[tuple[int, int]], k: int, most: int,
            pool: int) -> dict[tuple[int, int], Citation]:
    """Verified citations for (user, candidate) jobs, grown greedily by the largest rank drop."""
    pools = {job: cited_items(candidates[job[0]][job[1]].evidence, pool) for job in jobs}
    chosen: dict[tuple[int, int], list[str]] = {job: [] for job in jobs}
    active = [job for job in jobs if len(pools[job]) > 1]  # one contributor: the prefix search tried it
    found: dict[tuple[int, int], Citation] = {}
    for _ in range(most):
        trials = [(job, item) for job in active for item in pools[job] if item not in chosen[job]]
        if not trials:
            break
        shortened = []
        for (u, j), item in trials:
            removed = {*chosen[(u, j)], item}
            shortened.append([ev for ev in histories[u] if ev.item not in removed])
        again = generator.generate_batch(shortened, GREEDY_DEPTH)
        best: dict[tuple[int, int], tuple[float, str]] = {}
        for ((u, j), item), cands in zip(trials, again, strict=True):
            rank = rank_among_unseen(cands, candidates[u][j].item_id, seen[u])
            new_rank = math.inf if rank is None else float(rank)
            if (u, j) not in best or new_rank > best[(u, j)][0]:  # ties: the larger contribution
                best[(u, j)] = (new_rank, item)
        for job, (worst, item) in best.items():  # a job whose pool is used up has no trial and stops
            chosen[job].append(item)
            if worst > k:
                found[job] = Citation(tuple(chosen[job]), True)
        active = [job for job in best if job not in found]
    return found
