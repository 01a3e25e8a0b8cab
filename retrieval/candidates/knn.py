"""Item-kNN on co-occurrence: item-item similarity from who-consumed-what, scored against a history.

`ItemKNN` learns an item × item similarity from histories (asymmetric cosine on the binary user ×
item matrix, pruned to each item's top neighbours); a history's score for item i is the
recency-weighted sum of its items' similarities to i. `KNNGenerator` turns it into a
`CandidateGenerator` (seen items dropped), for fusion with the interest retriever.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retrieval.candidates.base import Candidate, CandidateGenerator, Evidence, Histories, History, top_evidence
from retrieval.data.model import Event
from retrieval.errors import ConfigError, MissingDependencyError, UnknownItemError


def _sparse():  # type: ignore[no-untyped-def]
    try:
        from scipy import sparse
    except ImportError as exc:
        raise MissingDependencyError("scipy is missing: pip install scipy") from exc
    return sparse


class ItemItemModel:
    """What item-kNN and EASE share: item columns, recency-weighted histories, per-event score terms.

    A subclass sets `item_ids`, `column` (item → column) and `half_life`, and implements
    `score_sequences` and `terms`; `KNNGenerator` serves any of them.
    """

    kind = "item-item"  # names the model in errors
    item_ids: tuple[str, ...]
    column: dict[str, int]
    half_life: float | None

    def _col(self, item: str) -> int:
        try:
            return self.column[item]
        except KeyError:
            raise UnknownItemError(f"item {item!r} is not among the {self.kind} columns") from None

    def user_item_matrix(self, histories: Histories, dtype: type = np.float32):  # type: ignore[no-untyped-def]
        """The binary user × item CSR matrix of `histories` (a repeated item counts once)."""
        rows, cols = [], []
        for u, events in enumerate(histories.values()):
            for c in {self._col(ev.item) for ev in events}:
                rows.append(u)
                cols.append(c)
        return _sparse().csr_matrix((np.ones(len(rows), dtype=dtype), (rows, cols)),
                                    shape=(max(len(histories), 1), len(self.item_ids)))

    def weights(self, events: Sequence[Event]) -> tuple[np.ndarray, np.ndarray]:
        """Columns and recency weights of one history: ((n,), (n,)); repeated items add up."""
        cols = np.fromiter((self._col(ev.item) for ev in events), dtype=np.int64, count=len(events))
        return cols, recency_weights(len(cols), self.half_life)

    def score_sequences(self, sequences: Sequence[Sequence[Event]]) -> np.ndarray:
        """Scores of every item for each history: (len(sequences), len(item_ids)), seen items not masked."""
        raise NotImplementedError

    def terms(self, events: Sequence[Event], item_ids: Sequence[str]) -> np.ndarray:
        """Each history event's term in each given item's score: (len(events), len(item_ids))."""
        raise NotImplementedError


class ItemKNN(ItemItemModel):
    """Co-occurrence item-kNN.

    sim(i, j) = |U_i ∩ U_j| / (|U_i|^alpha · |U_j|^(1-alpha)), diagonal zero, each row pruned to its
    `neighbours` largest entries. alpha = 0.5 is plain cosine.

    Args:
        histories: user → events, oldest first (training data only: statistics must not see the future).
        item_ids: column order of scores (e.g. the catalogue ids); history items outside it raise.
        neighbours: similarities kept per item (None = all).
        alpha: asymmetry of the cosine normalisation.
        half_life: recency weighting of a history, in events: the newest event weighs 1, one
            `half_life` events older weighs 0.5 (None = all events weigh 1).
    """

    kind = "kNN"

    def __init__(self, histories: Histories, item_ids: Sequence[str], neighbours: int | None = 100,
                 alpha: float = 0.5, half_life: float | None = 20.0) -> None:
        if neighbours is not None and neighbours < 1:
            raise ConfigError("neighbours must be ≥ 1 or None")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError("alpha must lie in [0, 1]")
        if half_life is not None and half_life <= 0:
            raise ConfigError("half_life must be positive or None")
        sparse = _sparse()
        self.item_ids = tuple(item_ids)
        self.column = {item: c for c, item in enumerate(self.item_ids)}
        self.half_life = half_life
        x = self.user_item_matrix(histories)
        counts = np.asarray(x.sum(axis=0)).ravel()
        co = (x.T @ x).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        left = np.power(np.maximum(counts, 1.0), alpha)
        right = np.power(np.maximum(counts, 1.0), 1.0 - alpha)
        sim = sparse.diags(1.0 / left) @ co @ sparse.diags(1.0 / right)
        self.similarity = _prune_rows(sim.tocsr().astype(np.float32), neighbours)
        self.counts = counts

    def score_sequences(self, sequences: Sequence[Sequence[Event]]) -> np.ndarray:
        """Scores of every item for each history.

        Args:
            sequences: per user, events oldest first (may be empty: all-zero scores).

        Returns:
            (len(sequences), len(item_ids)) float32; seen items are NOT masked.
        """
        sparse = _sparse()
        rows, cols, vals = [], [], []
        for u, events in enumerate(sequences):
            c, w = self.weights(events)
            rows.append(np.full(len(c), u))
            cols.append(c)
            vals.append(w)
        n = len(self.item_ids)
        if not sequences:
            return np.zeros((0, n), dtype=np.float32)
        profile = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                    shape=(len(sequences), n))
        return np.asarray((profile @ self.similarity).todense(), dtype=np.float32)

    def terms(self, events: Sequence[Event], item_ids: Sequence[str]) -> np.ndarray:
        """Each history event's term in each given item's score: recency weight × similarity.

        Summed over events, a column is exactly that item's `score_sequences` score.

        Args:
            events: one history, oldest first.
            item_ids: the items to attribute.

        Returns:
            (len(events), len(item_ids)) float32.
        """
        cols, w = self.weights(events)
        targets = [self._col(i) for i in item_ids]
        if not len(cols) or not targets:
            return np.zeros((len(cols), len(targets)), dtype=np.float32)
        sims = np.asarray(self.similarity[cols][:, targets].todense(), dtype=np.float32)
        return w[:, None] * sims

    def __repr__(self) -> str:
        return f"<ItemKNN {len(self.item_ids):,} items, {self.similarity.nnz:,} similarities>"


def recency_weights(count: int, half_life: float | None) -> np.ndarray:
    """Weights of a history's `count` events, oldest first: the newest weighs 1, one `half_life` older 0.5.

    None = all events weigh 1.
    """
    if half_life is None:
        return np.ones(count, dtype=np.float32)
    age = np.arange(count - 1, -1, -1, dtype=np.float32)
    return np.power(0.5, age / half_life).astype(np.float32)


def _prune_rows(sim, neighbours: int | None):  # type: ignore[no-untyped-def]
    """Keep each row's `neighbours` largest entries of a CSR matrix."""
    if neighbours is None:
        return sim
    indptr, data = sim.indptr, sim.data
    keep = np.ones(len(data), dtype=bool)
    for r in range(sim.shape[0]):
        lo, hi = indptr[r], indptr[r + 1]
        if hi - lo > neighbours:
            drop = np.argpartition(data[lo:hi], hi - lo - neighbours)[: hi - lo - neighbours]
            keep[lo + drop] = False
    sim.data = np.where(keep, data, 0.0).astype(data.dtype)
    sim.eliminate_zeros()
    return sim


class KNNGenerator(CandidateGenerator):
    """Item-kNN candidates: top-k unseen items with a positive `ItemKNN` score (fewer when few co-occur).

    Args:
        knn: a fitted `ItemItemModel` (ItemKNN, or `retrieval.candidates.ease.EASE`); each history
            passed to `generate_batch` is scored (its items dropped as seen).
    """

    name = "itemknn"

    def __init__(self, knn: ItemItemModel) -> None:
        self.knn = knn

    def generate_batch(self, histories: Sequence[History], k: int) -> list[list[Candidate]]:
        seqs = list(histories)
        scores = self.knn.score_sequences(seqs)
        out = []
        for row, events in zip(scores, seqs, strict=True):
            seen = {self.knn.column[ev.item] for ev in events}
            order = np.argsort(-row, kind="stable")
            picks = [Candidate(self.knn.item_ids[c], float(row[c]), self.name)
                     for c in order[: k + len(seen)].tolist() if c not in seen and row[c] > 0]
            out.append(picks[:k])
        return out

    def evidence_batch(self, histories: Sequence[History],
                       item_ids: Sequence[Sequence[str]]) -> list[list[tuple[Evidence, ...]]]:
        """Co-occurrence evidence: each history item's term (similarity × recency weight) in the score."""
        out = []
        for events, ids in zip(histories, item_ids, strict=True):
            terms = self.knn.terms(events, ids)
            row = []
            for j in range(len(ids)):
                per: dict[str, float] = {}
                for e in np.flatnonzero(terms[:, j] > 0).tolist():
                    per[events[e].item] = per.get(events[e].item, 0.0) + float(terms[e, j])
                row.append(top_evidence(per, self.name, "co_occurrence"))
            out.append(row)
        return out
