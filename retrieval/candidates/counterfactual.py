"""Counterfactually verified citations: the fewest evidence items whose removal takes an item out of the list.

An explanation should cite what produced the recommendation. The evidence (`Candidate.evidence`)
measures each history item's part in the score, but a popular item is often held up by many history
items at once, so removing the three largest contributors may leave it in the list. Here the cited
set grows along the evidence order (largest contribution first, `cited_items`) until removing it from
the history and asking the same generator again pushes the item out of the top k: the smallest such
prefix is cited, and the citation is *verified*. When no prefix of up to `most` items does, the first
`fallback` items are cited, unverified. This is the counterfactual explanation of PRINCE (Ghazimatin et
al., WSDM 2020), searched greedily along the model's own attribution.

Cost: at most `most` extra `generate_batch` calls per batch of users, each over the items not yet
verified (one shortened history per item).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from retrieval.candidates.base import Candidate, CandidateGenerator, History, cited_items

# Most items a verified citation may name; an explanation naming more would not be read.
MOST_CITED = 5


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
                       fallback: int = 3) -> list[list[Citation]]:
    """Per user and candidate (with its evidence attached), the citation an explanation should make.

    Args:
        generator: the generator whose list the candidates come from (it scores the shortened histories).
        histories: per user, events oldest first (what the candidates were generated from).
        candidates: per user, the shown candidates with `evidence` (`CandidateGenerator.with_evidence`).
        k: the list length an item must fall out of.
        most: largest cited set tried.
        fallback: items cited (unverified) when no set of up to `most` items takes the item out.

    Returns:
        len(histories) lists with one `Citation` per candidate, same order. A candidate without
        score evidence gets an empty, unverified citation.
    """
    orders = [[cited_items(c.evidence, most) for c in cands] for cands in candidates]
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
            seen = {ev.item for ev in histories[u]}
            rank = rank_among_unseen(cands, candidates[u][j].item_id, seen)
            if rank is None or rank > k:
                found[(u, j)] = Citation(orders[u][j][:size], True)
    return [[found.get((u, j), Citation(items[:fallback], False)) for j, items in enumerate(order)]
            for u, order in enumerate(orders)]
