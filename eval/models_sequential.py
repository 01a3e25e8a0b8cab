"""Harness models of the sequential next-item model, its ablations, and the hybrid candidate generator.

Registered names:
    sasrec          SASRec-style model, text vectors + time features, full-softmax CE.
    sasrec-notext   ablation: id embeddings only.
    sasrec-notime   ablation: no time-gap embedding, no relative-time attention bias.
    sasrec-bce      ablation: BCE with one sampled negative instead of full-softmax CE.
    hybrid          weighted RRF of sequential + interest retrieval + item-kNN, weights tuned on validation.

Training happens in `tune` (the harness calls it after `fit`, with the validation targets), so early
stopping watches the real validation stage. If the harness skips `tune`, the first scoring call trains
with each user's last training event held out for early stopping instead (`diagnostics` says which).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eval.models import Recommender, TrainData, ValidationData, register
from retrieval.candidates.base import CandidateGenerator
from retrieval.data.model import Event
from retrieval.errors import ConfigError
from retrieval.sequential.model import SeqConfig, SequentialGenerator, SequentialModel
from retrieval.sequential.train import TrainReport, holdout_last, text_matrix, train


class SASRecModel(Recommender):
    """The sequential model as an evaluated model.

    Args:
        seed: seeds weights, data order and negatives (the harness passes the run's seed).
        embedder: text embedder for item vectors ("sentence-transformers" or "hashing").
        progress: tqdm bar while training.
        load: a directory written by `driftrec train`: load it, do not train. It must have been trained
            on this run's training events (same dataset and split), else `LeakageError`.
        **config: SeqConfig fields (hidden, blocks, dropout, epochs, patience, use_text, use_time, loss, ...).
            Without an explicit `use_time`, time features are switched off for data whose timestamps
            are synthetic (LLMRank's Games files hold order only).
    """

    def __init__(self, seed: int = 0, embedder: str = "sentence-transformers", progress: bool = False,
                 load: str | None = None, **config: Any) -> None:
        self.embedder_name, self.progress, self.load = embedder, progress, load
        self.overrides = {**config, "seed": int(seed)}
        SeqConfig(**self.overrides)  # fail fast on a bad setting, before any training
        self.model: SequentialModel | None = None
        self.report: TrainReport | None = None
        self.validated = False

    def fit(self, train: TrainData) -> SASRecModel:
        self.train = train
        overrides = dict(self.overrides)
        synthetic = any(ev.synthetic_time for evs in train.histories.values() for ev in evs[:1])
        if "use_time" not in overrides and synthetic:
            overrides["use_time"] = False  # one-day-per-position times carry no information
        self.config = SeqConfig(**overrides)
        self.text: np.ndarray | None = None
        self.text_embedder: str | None = None
        if self.config.use_text:
            from retrieval.vectors.build import default_cache
            from retrieval.vectors.embed import make_embedder

            embedder = make_embedder(self.embedder_name)
            self.text = text_matrix(train.catalog, train.item_ids, embedder, default_cache())
            self.text_embedder = embedder.name
        self.model, self.report = None, None
        self.loaded_report: dict[str, Any] = {}
        if self.load:
            self.model = SequentialModel.load(self.load, item_ids=train.item_ids, text_embedder=self.text_embedder)
            self.model.check_trained_on(train.histories, f"model {self.load}")  # LeakageError on another split
            found = Path(self.load) / "train_report.json"
            self.loaded_report = json.loads(found.read_text()) if found.is_file() else {}
        return self

    def tune(self, validation: ValidationData) -> None:
        """Train with early stopping on the validation stage (full-ranking NDCG@10); no-op for a loaded model."""
        if self.load:
            return
        self._train(self.train.histories, list(zip(validation.inputs, validation.targets, strict=True)))
        self.validated = True

    def _train(self, histories: Any, valid: Sequence[tuple[Sequence[Event], str]]) -> None:
        self.model = SequentialModel(self.train.item_ids, self.config, self.text, self.text_embedder)
        self.report = train(self.model, histories, valid, progress=self.progress)

    def trained(self) -> SequentialModel:
        """The trained model (trains with an internal hold-out if `tune` was not called)."""
        if not hasattr(self, "train"):
            raise ConfigError(f"{self.name}: call fit() before scoring")
        if self.model is None:
            histories, valid = holdout_last(self.train.histories)
            self._train(histories, valid)
        if self.model is None:  # pragma: no cover - _train always sets it
            raise ConfigError(f"{self.name}: training produced no model")
        return self.model

    def score_batch(self, inputs: Sequence[Sequence[Event]]) -> np.ndarray:
        return self.trained().score(inputs)

    def score_candidates(self, inputs: Sequence[Sequence[Event]],
                         candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        model = self.trained()
        queries = model.encode(inputs)
        items = model.index.vectors
        return [items[model.rows(list(c))] @ q for q, c in zip(queries, candidates, strict=True)]

    def diagnostics(self) -> dict[str, float]:
        if self.report is None:
            saved = self.loaded_report
            return {"loaded": 1.0, **{k: float(saved[k]) for k in ("seconds", "best_epoch", "epochs_run", "best_ndcg10")
                                      if isinstance(saved.get(k), int | float)}}
        r = self.report
        return {"train_s": round(r.seconds, 1), "best_epoch": float(r.best_epoch), "epochs_run": float(r.epochs_run),
                "val_ndcg@10": round(r.best_ndcg10, 5), "val_recall@10": round(r.best_recall10, 5),
                "early_stop_on_validation_stage": float(self.validated)}


def _variant(name: str, **fixed: Any) -> None:
    def factory(seed: int = 0, embedder: str = "sentence-transformers", progress: bool = False,
                load: str | None = None, **config: Any) -> SASRecModel:
        return SASRecModel(seed, embedder, progress, load, **{**fixed, **config})
    factory.__doc__ = f"{name}: SASRecModel with {fixed or 'the default settings'}."
    register(name)(factory)


_variant("sasrec")
_variant("sasrec-notext", use_text=False)
_variant("sasrec-notime", use_time=False)
_variant("sasrec-bce", loss="bce")


@register("hybrid")
class HybridModel(SASRecModel):
    """Weighted RRF of the sequential model, the attention-pooled interest retriever and item-kNN.

    The weights (sequential fixed at 1) are grid-searched for validation Recall@`tune_k`. Items outside
    the fused top `depth` keep the sequential model's order below every fused item.

    Args:
        depth: candidates taken from each generator.
        rrf_k: RRF rank offset.
        tune_k: recall cut-off maximised on validation (20 = the reranker's candidate count).
        (others as SASRecModel)
    """

    def __init__(self, seed: int = 0, embedder: str = "sentence-transformers", progress: bool = False,
                 load: str | None = None, depth: int = 100, rrf_k: float = 60.0, tune_k: int = 20,
                 **config: Any) -> None:
        super().__init__(seed, embedder, progress, load, **config)
        self.depth, self.rrf_k, self.tune_k = int(depth), float(rrf_k), int(tune_k)
        self.weights: tuple[float, ...] = (1.0, 1.0, 1.0)
        self.val_recall: dict[str, float] = {}

    def fit(self, train: TrainData) -> HybridModel:
        from retrieval.candidates.knn import ItemKNN
        from retrieval.vectors.build import build_index, default_cache
        from retrieval.vectors.embed import make_embedder

        super().fit(train)
        self.index = build_index(train.catalog, make_embedder(self.embedder_name), "flat", cache=default_cache(),
                                 progress=False)
        self.knn = ItemKNN(train.histories, train.item_ids)
        return self

    def generators(self, inputs: Sequence[Sequence[Event]]) -> list[CandidateGenerator]:
        """The three generators; empty inputs fall back to popularity over `inputs` themselves."""
        from retrieval.candidates.interest import InterestRetriever
        from retrieval.candidates.knn import KNNGenerator
        from retrieval.candidates.popularity import PopularityGenerator

        popularity = PopularityGenerator(inputs)
        return [SequentialGenerator(self.trained(), popularity), InterestRetriever(self.index, popularity=popularity),
                KNNGenerator(self.knn)]

    def tune(self, validation: ValidationData) -> None:
        from retrieval.candidates.fusion import recall_at, tune_weights

        super().tune(validation)
        gens = self.generators(validation.inputs)
        per = [g.generate_batch(validation.inputs, self.depth) for g in gens]
        found = tune_weights(per, validation.targets, self.tune_k, rrf_k=self.rrf_k)
        self.weights = found.weights
        self.val_recall = {f"val_recall@{self.tune_k}_{g.name}": recall_at(p, validation.targets, self.tune_k)
                           for g, p in zip(gens, per, strict=True)}
        self.val_recall[f"val_recall@{self.tune_k}_fusion"] = found.recall

    def score_batch(self, inputs: Sequence[Sequence[Event]]) -> np.ndarray:
        from retrieval.candidates.fusion import FusionGenerator

        model = self.trained()
        base = model.score(inputs)
        # Non-fused items stay in sequential order, strictly below every fused (positive RRF) score.
        scores = base - base.max(axis=1, keepdims=True) - 1.0
        gens = self.generators(inputs)
        fused = FusionGenerator(gens, self.weights, self.depth, self.rrf_k).generate_batch(inputs, self.depth)
        for u, cands in enumerate(fused):
            if cands:
                scores[u, model.rows([c.item_id for c in cands])] = [c.score for c in cands]
        return scores

    # Candidates (llmrank, rerank) are ranked by the fused scores, not by SASRecModel's sequential-only override.
    score_candidates = Recommender.score_candidates

    def diagnostics(self) -> dict[str, float]:
        out = super().diagnostics()
        out.update({f"weight_{n}": w for n, w in zip(("sequential", "interest", "itemknn"), self.weights, strict=True)})
        out.update({k: round(v, 5) for k, v in self.val_recall.items()})
        return out
