"""The harness's `hybrid`: weighted RRF of item-kNN, the sequential model, the interest retriever,
popularity and EASE, with the fusion chosen on the validation stage.

Registered name:
    hybrid    `tune` trains the sequential model (unless loaded) with early stopping on validation, picks
              item-kNN's recency half-life and EASE's λ and half-life on validation NDCG@10 (as the
              `itemknn` and `ease` baselines do), then
              grid-searches the RRF weights and rank offset for validation NDCG@`tune_k`
              (`retrieval.candidates.fusion.tune_weights`). `diagnostics` reports what was chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eval.models import Recommender, TrainData, ValidationData, register
from eval.models_baselines import EASE_L2S, EASEModel, InterestModel, ItemKNNModel
from eval.models_sequential import SASRecModel
from retrieval.candidates.base import CandidateGenerator
from retrieval.candidates.fusion import FusionGenerator, FusionMetric, fused_metric, tune_weights
from retrieval.data.model import Event


@register("hybrid")
class HybridModel(Recommender):
    """Weighted RRF of item-kNN, the sequential model, the interest retriever, popularity and EASE.

    Generators in fusion order (item-kNN's weight is fixed at 1): itemknn, sequential (unless
    `sequential=False`), interest, popularity, ease (unless `ease=False`). Items outside the fused top
    `depth` keep item-kNN's order (popularity back-off) below every fused item. Before `tune` every
    weight is 1 with rrf_k 60 (plain RRF).

    Args:
        seed, embedder, progress, load: as SASRecModel (`load` = a `driftrec train` directory).
        depth: candidates taken from each generator.
        metric: what the fusion maximises on validation: "ndcg" (default) or "recall".
        tune_k: the metric's cut-off (10 for NDCG@10; 20 for the reranker's Recall@20).
        sequential: fuse the sequential model (False: item-kNN, interest and popularity only, as the
            agent's default `hybrid` without `--seq-model`).
        ease: fuse EASE (False: the four generators above only).
        ease_l2s: EASE's λ grid for `tune` (each value costs one items² inverse: about 4.5 minutes on Games).
        embedder_model: a sentence-transformers model directory instead of the packaged one, e.g. one
            written by `driftrec tune-embedder` (`driftrec eval --embedder-model DIR`), given to the
            interest retriever and the sequential model exactly as to the `interest` and `sasrec` rows.
        **config: SeqConfig fields for the sequential model.
    """

    def __init__(self, seed: int = 0, embedder: str = "sentence-transformers", progress: bool = False,
                 load: str | None = None, depth: int = 100, metric: FusionMetric = "ndcg", tune_k: int = 10,
                 sequential: bool = True, ease: bool = True, ease_l2s: Sequence[float] = EASE_L2S,
                 embedder_model: str | None = None, **config: Any) -> None:
        self.depth, self.metric, self.tune_k = int(depth), metric, int(tune_k)
        # Read by eval.provenance: the embedder, a tuned embedder directory, the loaded sequential model.
        self.embedder_name, self.load = embedder, load
        self.seq = (SASRecModel(seed, embedder, progress, load, embedder_model=embedder_model, **config)
                    if sequential else None)
        self.knn_model = ItemKNNModel()
        self.interest_model = InterestModel(embedder, embedder_model=embedder_model)
        self.embedder_model = embedder_model
        self.ease_model = EASEModel(l2s=ease_l2s) if ease else None
        self.names = ("itemknn", *(("sequential",) if self.seq is not None else ()), "interest", "popularity",
                      *(("ease",) if self.ease_model is not None else ()))
        self.weights: tuple[float, ...] = (1.0,) * len(self.names)
        self.rrf_k = 60.0
        self.validation: dict[str, float] = {}

    def fit(self, train: TrainData) -> HybridModel:
        self.train = train
        if self.seq is not None:
            self.seq.fit(train)
        self.knn_model.fit(train)
        self.interest_model.fit(train)
        if self.ease_model is not None:
            self.ease_model.fit(train)
        return self

    def generators(self) -> list[CandidateGenerator]:
        """The fused generators in `names` order; popularity counts training events (the back-off of all)."""
        from retrieval.candidates.ease import EASEGenerator
        from retrieval.candidates.interest import InterestRetriever
        from retrieval.candidates.knn import KNNGenerator
        from retrieval.candidates.popularity import PopularityGenerator
        from retrieval.sequential.model import SequentialGenerator

        popularity = PopularityGenerator(self.train.histories)
        seq = [SequentialGenerator(self.seq.trained(), popularity)] if self.seq is not None else []
        interest = InterestRetriever(self.interest_model.index, self.interest_model.config, popularity=popularity)
        ease = [EASEGenerator(self.ease_model.ease)] if self.ease_model is not None else []
        return [KNNGenerator(self.knn_model.knn), *seq, interest, popularity, *ease]

    def tune(self, validation: ValidationData) -> None:
        """Train/early-stop the sequential model, tune item-kNN and EASE, then the fusion (all on validation)."""
        if self.seq is not None:
            self.seq.tune(validation)
        full = ValidationData(validation.users, validation.inputs, validation.targets, None)
        self.knn_model.tune(full)
        if self.ease_model is not None:
            self.ease_model.tune(full)
        per = [g.generate_batch(validation.inputs, self.depth) for g in self.generators()]
        found = tune_weights(per, validation.targets, self.metric, self.tune_k)
        self.weights, self.rrf_k = found.weights, found.rrf_k
        self.validation = {}
        for name in self.names:
            alone = tuple(1.0 if n == name else 0.0 for n in self.names)  # its own list's order
            for metric, k in ((self.metric, self.tune_k), ("recall", 20)):
                self.validation[f"val_{metric}@{k}_{name}"] = fused_metric(per, validation.targets, alone, 60.0,
                                                                           metric, k)
        self.validation[f"val_{found.metric}_fusion"] = found.value
        self.validation["val_recall@20_fusion"] = fused_metric(per, validation.targets, self.weights, self.rrf_k,
                                                               "recall", 20)

    def score_batch(self, inputs: Sequence[Sequence[Event]]) -> np.ndarray:
        base = self.knn_model.score_batch(inputs).astype(np.float64)
        # Non-fused items keep item-kNN's order, strictly below every fused (positive RRF) score.
        scores = base - base.max(axis=1, keepdims=True) - 1.0
        col = self._columns()
        fusion = FusionGenerator(self.generators(), self.weights, self.depth, self.rrf_k)
        for u, cands in enumerate(fusion.generate_batch(inputs, self.depth)):
            if cands:
                scores[u, [col[c.item_id] for c in cands]] = [c.score for c in cands]
        return scores

    def diagnostics(self) -> dict[str, float]:
        """The sequential model's training record, item-kNN's half-life, the fusion's weights, rrf_k and
        validation metrics (per generator alone and fused)."""
        out = self.seq.diagnostics() if self.seq is not None else {}
        out["half_life_events"] = float(self.knn_model.half_life or 0.0)
        if self.ease_model is not None:
            out.update({f"ease_{k}": v for k, v in self.ease_model.diagnostics().items()})
        out.update({f"weight_{n}": w for n, w in zip(self.names, self.weights, strict=True)})
        out["rrf_k"] = self.rrf_k
        out.update({k: round(v, 5) for k, v in self.validation.items()})
        return out
