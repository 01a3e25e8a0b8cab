"""The seen-titles rule: a catalogue may list one title under several ids (ml-100k lists 18 films
twice), and a user who rated one copy must not be offered another.

`RecommenderAgent.recommend` and `driftrec export` both apply it through `SeenTitles`, and both ask
the retriever for enough extra candidates to make up for the copies it drops, so a list is short only
when the user has truly run out of items.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from retrieval.candidates.base import Candidate
from retrieval.data.model import Catalog, Event


class SeenTitles:
    """The rule over one catalogue (its title counts are computed once)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._copies = Counter(item.title.casefold() for item in catalog)

    def titles(self, history: Sequence[Event]) -> set[str]:
        """The case-folded titles the user has rated."""
        return {self.catalog[ev.item].title.casefold() for ev in history}

    def depth(self, history: Sequence[Event], wanted: int) -> int:
        """`wanted` plus room for every other copy of a seen title the rule may drop."""
        return wanted + sum(self._copies[t] - 1 for t in self.titles(history))

    def keep(self, history: Sequence[Event], candidates: Sequence[Candidate]) -> list[Candidate]:
        """`candidates` without the items whose title the user has rated under any id (order kept)."""
        seen = self.titles(history)
        return [c for c in candidates if self.catalog[c.item_id].title.casefold() not in seen]
