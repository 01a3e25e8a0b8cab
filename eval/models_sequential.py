"""Harness models of the sequential next-item model and its ablations (the `hybrid` is in eval/models_hybrid.py).

Registered names:
    sasrec          SASRec-style model, text vectors + time features, full-softmax CE.
    sasrec-notext   ablation: id embeddings only.
    sasrec-notime   ablation: no time-gap embedding, no relative-time attention bias.
    sasrec-bce      ablation: BCE with one sampled negative instead of full-softmax CE.

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
from retrieval.data.model import Event
from retrieval.errors import ConfigError
from retrieval.sequential.model import SeqConfig, SequentialModel
from retrieval.sequential.train import TrainReport, holdout_last, text_matrix, train


class SASRecModel(Recommender):
    """The sequential model as an evaluated model.

    Args:
        seed: seeds weights, data order and negatives (the harness passes the run's seed).
        embedder: text embedder for item vectors ("sentence-transformers" or "hashing").
        embedder_model: the embedder's model name or directory (`driftrec train --embedder-model`);
            None = the embedder's default.
        progress: tqdm bar while training.
        load: a directory written by `driftrec train`: load it, do not train. It must have been trained
            on this run's training events (same dataset and split), else `LeakageError`.
        **config: SeqConfig fields (hidden, blocks, dropout, epochs, patience, use_text, use_time, loss, ...).
            Without an explicit `use_time`, time features are switched off for data whose timestamps
            are synthetic (LLMRank's Games files hold order only).
    """

    def __init__(self, seed: int = 0, embedder: str = "sentence-transformers", progress: bool = False,
                 load: str | None = None, embedder_model: str | None = None, **config: Any) -> None:
        self.embedder_name, self.progress, self.load = embedder, progress, load
        self.embedder_model = embedder_model
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

            if self.embedder_model is not None:
                from retrieval.vectors.tune import check_tuned_on

                check_tuned_on(self.embedder_model, train.histories)  # LeakageError when tuned on other events
            embedder = make_embedder(self.embedder_name, self.embedder_model)
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
