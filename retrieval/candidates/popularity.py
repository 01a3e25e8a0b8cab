"""Popularity candidates: the most frequent items of some histories, minus what each user has seen."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from retrieval.candidates.base import Candidate, CandidateGenerator, Histories, History
from retrieval.data.model import Event, item_counts


class PopularityGenerator(CandidateGenerator):
    """Most frequent items in the given histories, minus what each user has seen.

    Args:
        histories: the events whose counts rank the items (a user → events mapping or the histories
            themselves); equal counts keep first-seen order.
    """

    name = "popularity"

    def __init__(self, histories: Histories | Iterable[Sequence[Event]]) -> None:
        counts = item_counts(histories.values() if isinstance(histories, Mapping) else histories)
        self.ranked = [(item, float(n)) for item, n in counts.most_common()]

    def generate_batch(self, histories: Sequence[History], k: int) -> list[list[Candidate]]:
        out = []
        for history in histories:
            seen = {ev.item for ev in history}
            # Only the top k + |seen| can contain the k best unseen items: no Candidate for the rest.
            picks = [Candidate(i, s, self.name) for i, s in self.ranked[:k + len(seen)] if i not in seen]
            out.append(picks[:k])
        return out
