"""EASE: a closed-form item × item weight matrix learned from who-consumed-what (Steck, WWW 2019).

`EASE` solves  min_B ‖X − XB‖² + λ‖B‖²  with diag(B) = 0 over the binary user × item matrix X:
with P = (XᵀX + λI)⁻¹, B_ij = −P_ij / P_jj. Unlike item-kNN's cosine, the weights are fitted jointly, so
an item explained by others already in the history gets less weight. A history's score for item i is
the recency-weighted sum of B_ji over its items j (the same recency weights as `ItemKNN`), so each
history item's part in the score is exact. `EASEGenerator` is `KNNGenerator` over it: candidates and
co-occurrence evidence come from the same code.

The matrix is dense (items² float32): 11 MB for ml-100k's 1,682 items, 1.1 GB for Games' 16,859.
Solving costs one items² inverse, cubic in the items: building takes under a second on ml-100k and
about 4.5 minutes per λ on Games (2 cores).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retrieval.candidates.base import Histories
from retrieval.candidates.knn import ItemItemModel, KNNGenerator
from retrieval.data.model import Event
from retrieval.errors import ConfigError

# Above this many items the dense solve needs more than ~10 GB (items² float64 matrices; Games'
# 16,859 items took 257–274 s per λ on 2 cores, with a 12.7 GB peak).
MAX_ITEMS = 20_000


class EASE(ItemItemModel):
    """EASE over training histories, scored with recency-weighted histories.

    Args:
        histories: user → events, oldest first (training data only).
        item_ids: column order of scores; history items outside it raise.
        l2: the ridge penalty λ (larger = smoother weights).
        half_life: recency weighting of a history in events, as `ItemKNN` (None = all events weigh 1).

    Raises:
        ConfigError: λ ≤ 0, a non-positive half-life, or more than `MAX_ITEMS` items.
    """

    kind = "EASE"

    def __init__(self, histories: Histories, item_ids: Sequence[str], l2: float = 400.0,
                 half_life: float | None = 10.0) -> None:
        if half_life is not None and half_life <= 0:
            raise ConfigError("half_life must be positive or None")
        self.item_ids = tuple(item_ids)
        if len(self.item_ids) > MAX_ITEMS:
            raise ConfigError(f"EASE keeps a dense {len(self.item_ids):,}² matrix; at most {MAX_ITEMS:,} items")
        self.column = {item: c for c, item in enumerate(self.item_ids)}
        self.half_life = half_life
        x = self.user_item_matrix(histories, np.float64)
        self.gram = np.asarray((x.T @ x).todense(), dtype=np.float64)
        self._solved: np.ndarray | None = None
        self.l2 = 0.0
        self.set_l2(l2)

    def set_l2(self, l2: float) -> None:
        """Use another λ; the matrix is re-solved (one inverse of the Gram matrix) when next needed."""
        if l2 <= 0:
            raise ConfigError("l2 must be positive")
        if float(l2) != self.l2:
            self._solved = None
        self.l2 = float(l2)

    @property
    def weights_matrix(self) -> np.ndarray:
        """B for the current λ: (items, items) float32, solved on first use after `set_l2`."""
        if self._solved is None:
            g = self.gram.copy()
            g[np.diag_indices_from(g)] += self.l2
            inverse = np.linalg.inv(g)  # XᵀX + λI is positive definite for λ > 0
            del g
            inverse /= -np.diag(inverse).copy()  # B_ij = -P_ij / P_jj, in place
            np.fill_diagonal(inverse, 0.0)
            self._solved = inverse.astype(np.float32)
        return self._solved

    def score_sequences(self, sequences: Sequence[Sequence[Event]]) -> np.ndarray:
        """Scores of every item for each history: (len(sequences), len(item_ids)) float32, seen items NOT masked."""
        profile = np.zeros((len(sequences), len(self.item_ids)), dtype=np.float32)
        for u, events in enumerate(sequences):
            cols, w = self.weights(events)
            np.add.at(profile[u], cols, w)
        return profile @ self.weights_matrix

    def terms(self, events: Sequence[Event], item_ids: Sequence[str]) -> np.ndarray:
        """Each history event's term in each given item's score: recency weight × B (may be negative).

        Summed over events, a column is exactly that item's `score_sequences` score.

        Returns:
            (len(events), len(item_ids)) float32.
        """
        cols, w = self.weights(events)
        targets = np.fromiter((self._col(i) for i in item_ids), dtype=np.int64, count=len(item_ids))
        return w[:, None] * self.weights_matrix[np.ix_(cols, targets)]

    def __repr__(self) -> str:
        return f"<EASE {len(self.item_ids):,} items, l2={self.l2:g}, half_life={self.half_life}>"


class EASEGenerator(KNNGenerator):
    """EASE candidates: top-k unseen items with a positive score; co-occurrence evidence from the positive terms.

    Args:
        knn: a fitted `EASE` (the parameter keeps `KNNGenerator`'s name).
    """

    name = "ease"
