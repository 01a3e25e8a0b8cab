"""The candidate-generator interface: typed candidates for users given by their histories."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, get_args

from retrieval.data.model import Event

# What a piece of evidence says about a recommended item:
#   co_occurrence: people who consumed the history item also consumed this one (item-kNN);
#   content: the history item pulled the interest query that found this item (embedding retrieval);
#   sequence: the sequential model's score drops when the history item is masked out;
#   category: the history item shares categories with this item;
#   shift: the item belongs to the user's rising categories (the history item is an example of the rise);
#   reference: the item the user named ("more like X"): X itself.
EvidenceKind = Literal["co_occurrence", "content", "sequence", "category", "shift", "reference"]
EVIDENCE_KINDS: tuple[str, ...] = get_args(EvidenceKind)
# History items kept per candidate and generator: the largest contributions (an explanation cites ≤ 5).
EVIDENCE_PER_ITEM = 10
# The kinds that measure a history item's part in the score (category and shift evidence describe, not measure).
SCORE_KINDS: tuple[EvidenceKind, ...] = ("reference", "co_occurrence", "sequence", "content")


@dataclass(frozen=True, slots=True)
class Evidence:
    """One history item's part in a candidate's score.

    Attributes:
        item_id: the history item (for kind "reference", the item the user named).
        weight: its contribution to the score, ≥ 0 (comparable within one candidate's evidence).
        source: the generator that measured it, e.g. "itemknn", "interest", "sequential", "more_like".
        kind: what the contribution means (see `EvidenceKind`).
    """

    item_id: str
    weight: float
    source: str
    kind: EvidenceKind


@dataclass(frozen=True, slots=True)
class Candidate:
    """One recommended item from a generator.

    Attributes:
        item_id: external item id.
        score: generator score (higher is better; comparable within one source).
        source: the generator's name, e.g. "interest" or "popularity".
        evidence: the history items that produced the score and how much, largest first (empty when the
            generator has none to give, e.g. popularity, or when it was not asked to compute it).
    """

    item_id: str
    score: float
    source: str
    evidence: tuple[Evidence, ...] = ()


Histories = Mapping[str, Sequence[Event]]
History = Sequence[Event]


class CandidateGenerator:
    """Base class: produce candidates for many users from their histories. One method to implement.

    A generator never looks users up: callers pass each user's history (events, oldest first), so an
    unknown user is the caller's error (the agent raises UnknownUserError) and the harness passes its
    input sequences directly.
    """

    name = "generator"

    def generate_batch(self, histories: Sequence[History], k: int) -> list[list[Candidate]]:
        """Top-k unseen candidates per history, best first.

        Args:
            histories: per user, events oldest first (may be empty).
            k: candidates per user.

        Returns:
            len(histories) lists of at most k candidates; items of the history are never returned.
        """
        raise NotImplementedError

    def generate(self, history: History, k: int) -> list[Candidate]:
        """Top-k unseen candidates for one history: `generate_batch([history], k)[0]`."""
        return self.generate_batch([history], k)[0]

    def evidence_batch(self, histories: Sequence[History],
                       item_ids: Sequence[Sequence[str]]) -> list[list[tuple[Evidence, ...]]]:
        """Per history and given item, the history items that produced the item's score here.

        Optional: the default gives no evidence (a generator whose score does not come from the
        history's items, e.g. popularity). Called for the few items actually shown, not the whole list.

        Args:
            histories: per user, events oldest first.
            item_ids: per user, the items to attribute (e.g. the returned top-k).

        Returns:
            len(histories) lists, each with one tuple per given item: `Evidence` with weight > 0,
            largest first, at most `EVIDENCE_PER_ITEM` per source.
        """
        return [[() for _ in ids] for ids in item_ids]

    def with_evidence(self, histories: Sequence[History],
                      candidates: Sequence[Sequence[Candidate]]) -> list[list[Candidate]]:
        """The candidates with this generator's evidence attached (`evidence_batch` on their ids, batched)."""
        found = self.evidence_batch(histories, [[c.item_id for c in cands] for cands in candidates])
        return [[replace(c, evidence=ev) for c, ev in zip(cands, evs, strict=True)]
                for cands, evs in zip(candidates, found, strict=True)]


def cited_items(evidence: Sequence[Evidence], n: int) -> tuple[str, ...]:
    """The n items with the largest total contributions over all sources: what an explanation cites first.

    Only evidence that measures a part in the score counts (`SCORE_KINDS`); ties keep first-seen order.
    """
    total: dict[str, float] = {}
    for e in evidence:
        if e.kind in SCORE_KINDS and e.weight > 0:
            total[e.item_id] = total.get(e.item_id, 0.0) + e.weight
    return tuple(sorted(total, key=lambda i: -total[i])[:n])


def top_evidence(terms: Mapping[str, float], source: str, kind: EvidenceKind,
                 limit: int = EVIDENCE_PER_ITEM) -> tuple[Evidence, ...]:
    """History item → contribution as `Evidence`, positive terms only, largest first (ties: id order)."""
    best = sorted(((w, i) for i, w in terms.items() if w > 0), key=lambda t: (-t[0], t[1]))[:limit]
    return tuple(Evidence(i, float(w), source, kind) for w, i in best)
