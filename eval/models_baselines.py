"""Baselines every other model is measured against: random, popularity, item-kNN, EASE, interest retrieval.

All statistics come from `TrainData` (training events only); scores are (n_users, n_items) in the
column order `train.item_ids`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eval.models import Recommender, TrainData, ValidationData, register
from retrieval.candidates.attention import InterestConfig
from retrieval.candidates.ease import EASE
from retrieval.candidates.knn import ItemKNN
from retrieval.data.model import Event, item_counts
from retrieval.errors import ConfigError
from retrieval.vectors.embed import EmbeddingCache
from retrieval.vectors.index import VectorIndex

PACKAGED_MODEL = "all-MiniLM-L6-v2"  # SentenceTransformerEmbedder's name for the packaged model
# Recency half-lives (events) item-kNN and EASE search on validation; λ grid of EASE (each λ costs one
# items² inverse: under a second on ml-100k, about 4.5 minutes on Games).
HALF_LIVES: tuple[float | None, ...] = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0, None)
EASE_L2S: tuple[float, ...] = (100.0, 200.0, 400.0, 800.0, 1600.0)


def popularity_backoff(train: TrainData) -> np.ndarray:
    """Training popularity scaled far below any co-occurrence score: a tie-break, not a second signal."""
    pop = train_popularity(train)
    return (1e-6 * pop / max(pop.max(), 1.0)).astype(np.float32)


def train_popularity(train: TrainData) -> np.ndarray:
    """(n_items,) event counts per item over the training histories."""
    col = {item: c for c, item in enumerate(train.item_ids)}
    counts = np.zeros(len(train.item_ids), dtype=np.float64)
    for item, n in item_counts(train.histories.values()).items():
        counts[col[item]] = n
    return counts


@register("random")
class RandomModel(Recommender):
    """Uniform random scores, seeded: the floor (N@10 ≈ 0.227 on 20 candidates)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, train: TrainData) -> RandomModel:
        self.train = train
        self.rng = np.random.default_rng(self.seed)
        return self

    def score_batch(self, inputs: Sequence[Sequence[Event]]) -> np.ndarray:
        return self.rng.random((len(inputs), len(self.train.item_ids)))


@register("popularity")
class PopularityModel(Recommender):
    """Training-event count per item; equal counts tie (the harness ranks ties pessimistically)."""

    def fit(self, train: TrainData) -> PopularityModel:
        self.train = train
        self.counts = train_popularity(train)
        return self

    def score_batch(self, inputs: Sequence[Sequence[Event]]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(inputs), len(self.counts))).copy()


@register("itemknn")
class ItemKNNModel(Recommender):
    """Co-occurrence item-kNN (retrieval.candidates.knn.ItemKNN) over training histories.

    A popularity term scaled far below any similarity breaks ties and scores items that co-occur
    with nothing in the history (a back-off, not a second signal).

    `tune` picks the recency half-life on the validation stage (NDCG@10) from `half_lives`; the
    similarity does not depend on it, so tuning costs one scoring pass per value.

    Args:
        neighbours: similarities kept per item.
        alpha: asymmetric-cosine exponent (0.5 = cosine).
        half_life: recency half-life of history items, in events (None = uniform); the value used
            when not tuned.
        half_lives: grid for `tune` (empty = keep `half_life`).
    """

    def __init__(self, neighbours: int | None = 50, alpha: float = 0.5, half_life: float | None = 2.0,
                 half_lives: Sequence[float | None] = HALF_LIVES) -> None:
        self.neighbours, self.alpha, self.half_life = neighbours, alpha, half_life
        self.half_lives = tuple(half_lives)
        self.validation_ndcg: dict[str, float] = {}

    def fit(self, train: TrainData) -> ItemKNNModel:
        self.train = train
        self.knn = ItemKNN(train.histories, train.item_ids, self.neighbours, self.alpha, self.half_life)
        self.backoff = popularity_backoff(train)
        return self

    def score_batch(self, inputs: Sequence[Sequence[Event]]) -> np.ndarray:
        return self.knn.score_sequences(inputs) + self.backoff

    def tune(self, validation: ValidationData) -> None:
        from eval.harness import validation_metric

        if not self.half_lives or not validation.users:
            return
        for value in self.half_lives:
            self.knn.half_life = value
            self.validation_ndcg[str(value)] = validation_metric(self, validation, "ndcg@10")
        best = max(self.half_lives, key=lambda v: self.validation_ndcg[str(v)])  # first best on ties
        self.knn.half_life = self.half_life = best

    def diagnostics(self) -> dict[str, float]:
        """The half-life in use (0 = uniform weights) and its validation NDCG@10 when tuned."""
        out = {"half_life_events": float(self.half_life or 0.0)}
        if self.validation_ndcg:
            out["validation_ndcg@10"] = self.validation_ndcg[str(self.half_life)]
        return out


@register("ease")
class EASEModel(Recommender):
    """EASE (retrieval.candidates.ease.EASE): a closed-form item × item regression over training histories.

    Scored like item-kNN: a recency-weighted sum of the history items' rows, plus the same
    popularity tie-break. `tune` picks λ and the recency half-life together for validation NDCG@10.

    Args:
        l2: the ridge penalty λ used when not tuned.
        half_life: recency half-life of history items, in events (None = uniform), used when not tuned.
        l2s, half_lives: grids for `tune` (an empty `l2s` keeps `l2` and `half_life`).
    """

    def __init__(self, l2: float = 400.0, half_life: float | None = 10.0, l2s: Sequence[float] = EASE_L2S,
                 half_lives: Sequence[float | None] = HALF_LIVES) -> None:
        self.l2, self.half_life = float(l2), half_life
        self.l2s, self.half_lives = tuple(float(v) for v in l2s), tuple(half_lives) or (half_life,)
        self.validation_ndcg: dict[tuple[float, float | None], float] = {}

    def fit(self, train: TrainData) -> EASEModel:
        self.train = train
        self.ease = EASE(train.histories, train.item_ids, self.l2, self.half_life)
        self.backoff = popularity_backoff(train)
        return self

    def score_batch(self, inputs: Sequence[Sequence[Event]]) -> np.ndarray:
        return self.ease.score_sequences(inputs) + self.backoff

    def tune(self, validation: ValidationData) -> None:
        from eval.harness import validation_metric

        if not self.l2s or not validation.users:
            return
        for l2 in self.l2s:
            self.ease.set_l2(l2)
            for value in self.half_lives:
                self.ease.half_life = value
                self.validation_ndcg[(l2, value)] = validation_metric(self, validation, "ndcg@10")
        best = max(self.validation_ndcg, key=lambda key: self.validation_ndcg[key])  # first best on ties
        self.l2, self.half_life = best
        self.ease.half_life = self.half_life
        self.ease.set_l2(self.l2)  # re-solved on next use only if λ changed

    def diagnostics(self) -> dict[str, float]:
        """λ and the half-life in use (0 = uniform weights), with their validation NDCG@10 when tuned."""
        out = {"l2": self.l2, "half_life_events": float(self.half_life or 0.0)}
        if self.validation_ndcg:
            out["validation_ndcg@10"] = self.validation_ndcg[(self.l2, self.half_life)]
        return out


@register("interest")
class InterestModel(Recommender):
    """The attention-pooled embedding retriever (retrieval.candidates.interest.InterestRetriever) as a scorer.

    Item texts are embedded (the whole catalogue is allowed: texts are not behaviour); each input
    history is pooled into one fused query whose inner product with every item is the score. Empty
    inputs fall back to training popularity.

    Args:
        embedder: "sentence-transformers" (packaged all-MiniLM-L6-v2, offline) or "hashing" (tests).
        embedder_model: a sentence-transformers model name or directory instead of the packaged model,
            e.g. one written by `driftrec tune-embedder` (`driftrec eval --embedder-model DIR`). A tuned
            directory must have been tuned on this run's training events, else `LeakageError`.
        backend: vector index backend.
        cache: use the shared on-disk embedding cache.
        short_weight, short_half_life_days, long_half_life_days, temperature, recent_events,
            short_half_life_events, long_half_life_events: InterestConfig fields (event half-lives: recency
            counted in events, e.g. `--model-arg interest.short_half_life_events=1`).
    """

    def __init__(self, embedder: str = "sentence-transformers", backend: str = "flat", cache: bool = True,
                 short_weight: float = 0.6, short_half_life_days: float = 7.0, long_half_life_days: float = 365.0,
                 temperature: float = 0.1, embedder_model: str | None = None, recent_events: int = 5,
                 short_half_life_events: float | None = None, long_half_life_events: float | None = None) -> None:
        if embedder_model is not None and embedder not in ("sentence-transformers", "st"):
            raise ConfigError(f"interest: embedder_model needs the sentence-transformers embedder, not {embedder!r}")
        self.embedder_name, self.backend, self.cache = embedder, backend, cache
        self.embedder_model = embedder_model
        self.config = InterestConfig(temperature=temperature, short_half_life_days=short_half_life_days,
                                     long_half_life_days=long_half_life_days, short_weight=short_weight,
                                     recent_events=recent_events, short_half_life_events=short_half_life_events,
                                     long_half_life_events=long_half_life_events)

    def fit(self, train: TrainData) -> InterestModel:
        from retrieval.vectors.build import build_index, default_cache
        from retrieval.vectors.embed import make_embedder

        self.train = train
        cache = default_cache() if self.cache else None
        if self.embedder_model is not None:
            from retrieval.vectors.tune import check_tuned_on

            check_tuned_on(self.embedder_model, train.histories)  # LeakageError when tuned on other events
        index = _index_from_cache(train, cache, self.backend) if self.embedder_name in (
            "sentence-transformers", "st") and self.embedder_model is None else None
        if index is None:
            index = build_index(train.catalog, make_embedder(self.embedder_name, self.embedder_model), self.backend,
                                cache=cache, progress=False)
        self.index = index
        self.item_vectors = self.index.vectors[self.index.rows(list(train.item_ids))]
        pop = train_popularity(train)
        self.fallback = pop / max(pop.max(), 1.0)
        return self

    def score_batch(self, inputs: Sequence[Sequence[Event]]) -> np.ndarray:
        from retrieval.candidates.interest import InterestRetriever

        queries, has = InterestRetriever(self.index, self.config).queries(inputs)
        scores = queries.astype(np.float32) @ self.item_vectors.T
        missing = ~np.asarray(has, dtype=bool)
        scores[missing] = self.fallback
        return scores


def _index_from_cache(train: TrainData, cache: EmbeddingCache | None, backend: str) -> VectorIndex | None:
    """The packaged all-MiniLM-L6-v2 index straight from the embedding cache when every item is there.

    Loading torch and the model costs 10–80 s on a loaded 2-core machine; vectors already cached
    under the packaged model's name are the same vectors, so the model is loaded only on a miss.
    """
    from retrieval.vectors.embed import packaged_minilm_path

    if cache is None or packaged_minilm_path() is None:
        return None
    items = list(train.catalog)
    found = cache.get_many(PACKAGED_MODEL, [it.embedding_text() for it in items])
    if any(v is None for v in found):
        return None
    vectors = np.stack(found).astype(np.float32)  # type: ignore[arg-type]
    index = VectorIndex(PACKAGED_MODEL, vectors.shape[1], backend)
    index.add([it.id for it in items], vectors)
    return index
