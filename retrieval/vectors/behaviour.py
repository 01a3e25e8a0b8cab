"""Behaviour-text vectors: what a user wrote about an item (a tag, a review), embedded beside the item.

An event's vector is its item's vector plus `text_weight` times the embedding of the event's own text,
L2-normalised; an event without text keeps the item's vector. Texts are embedded with the same
embedder as the index (so both live in one space), each distinct text once, through the on-disk
embedding cache when one is given. The interest retriever pools these event vectors instead of bare
item vectors when it is given a `BehaviourVectors` (`InterestRetriever(index, behaviour=...)`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from retrieval.data.model import Event
from retrieval.errors import ConfigError
from retrieval.vectors.embed import Embedder, EmbeddingCache
from retrieval.vectors.index import VectorIndex


class BehaviourVectors:
    """Per-event vectors from item vectors and behaviour text.

    Args:
        embedder: the embedder the index was built with (its `name` must match the index's).
        cache: on-disk embedding cache (optional); texts already embedded are not recomputed.
        text_weight: weight of the text vector added to the item vector, ≥ 0 (0 = item vectors only).
    """

    def __init__(self, embedder: Embedder, cache: EmbeddingCache | None = None, text_weight: float = 1.0) -> None:
        if not (text_weight >= 0 and np.isfinite(text_weight)):
            raise ConfigError(f"text_weight must be a finite number ≥ 0, got {text_weight}")
        self.embedder, self.cache, self.text_weight = embedder, cache, float(text_weight)
        self._vectors: dict[str, np.ndarray] = {}

    def with_weight(self, text_weight: float) -> BehaviourVectors:
        """The same embedded texts (shared, not copied) with another `text_weight`."""
        other = BehaviourVectors(self.embedder, self.cache, text_weight)
        other._vectors = self._vectors
        return other

    def prepare(self, histories: Iterable[Sequence[Event]], progress: bool | None = None) -> int:
        """Embed every distinct event text of `histories` not embedded yet, in batches.

        Returns:
            how many new texts were embedded (or read from the cache).
        """
        todo = sorted({ev.text for evs in histories for ev in evs if ev.text} - set(self._vectors))
        if todo:
            vecs = self.embedder.embed(todo, cache=self.cache, progress=progress)
            self._vectors.update(zip(todo, vecs, strict=True))
        return len(todo)

    def text_vector(self, text: str) -> np.ndarray:
        """(dim,) embedding of one behaviour text (embedded now if `prepare` did not see it)."""
        if text not in self._vectors:
            self._vectors[text] = self.embedder.embed([text], cache=self.cache, progress=False)[0]
        return self._vectors[text]

    def event_vectors(self, history: Sequence[Event], index: VectorIndex) -> np.ndarray:
        """(n, dim) float32 unit vectors of a history's events, oldest first.

        Raises:
            ConfigError: the index was built with another embedder (the spaces would not match).
            UnknownItemError: an event's item is not in the index.
        """
        if index.embedder != self.embedder.name:
            raise ConfigError(f"behaviour texts are embedded with {self.embedder.name!r} but the index was built "
                              f"with {index.embedder!r}: use the same embedder for both")
        out = index.vectors[index.rows([ev.item for ev in history])].astype(np.float32, copy=True)
        if self.text_weight == 0.0:
            return out
        for i, ev in enumerate(history):
            if ev.text:
                v = out[i] + self.text_weight * self.text_vector(ev.text)
                norm = float(np.linalg.norm(v))
                out[i] = v / norm if norm > 0 else out[i]
        return out
