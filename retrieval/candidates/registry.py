"""Candidate generators by name: the one place the CLI and the agent turn a name into a generator."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from retrieval.errors import ConfigError
from retrieval.candidates.fusion import FusionGenerator
from retrieval.vectors.index import VectorIndex
from retrieval.candidates.knn import ItemKNN, KNNGenerator
from retrieval.candidates.base import CandidateGenerator, Histories, InterestRetriever

GENERATORS = ("hybrid", "itemknn", "interest")
# RRF weight of the interest retriever beside item-kNN (weight 1), chosen on ml-100k's validation
# stage by Recall@20 from {0.1, 0.25, 0.5, 1.0}: docs/foundation.md has the table and the command.
INTEREST_WEIGHT = 0.5
# Item-kNN settings the harness tuned on ml-100k validation (docs/results.md): recency matters.
KNN_NEIGHBOURS = 50
KNN_HALF_LIFE = 1.0


def make_generator(name: str, index: VectorIndex, histories: Histories, item_ids: Sequence[str],
                   extra: Sequence[CandidateGenerator] = (), seq_model: str | Path | None = None) -> CandidateGenerator:
    """A candidate generator by name.

    Args:
        name: "hybrid" (RRF of item-kNN and the attention-pooled interest retriever), "itemknn" or
            "interest".
        index: item vectors (the interest retriever's index).
        histories: user → events, oldest first: what the generators may see.
        item_ids: the catalogue's item ids (item-kNN's columns).
        extra: further generators fused into "hybrid" with weight 1.
        seq_model: a directory written by `driftrec train`; its sequential model joins "hybrid" with
            weight 1 (it must have been trained on this catalogue: checked on load).

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
    """
    if name not in GENERATORS:
        raise ConfigError(f"unknown retriever {name!r}; valid: {', '.join(GENERATORS)}")
    if seq_model is not None:
        if name != "hybrid":
            raise ConfigError(f"a sequential model is fused only into the hybrid retriever, not {name!r}")
        from retrieval.sequential.model import SequentialGenerator, SequentialModel  # torch: only when asked for

        extra = [*extra, SequentialGenerator(SequentialModel.load(seq_model, item_ids=item_ids), histories)]
    if name == "interest":
        return InterestRetriever(index, histories)
    knn = KNNGenerator(ItemKNN(histories, item_ids, neighbours=KNN_NEIGHBOURS, half_life=KNN_HALF_LIFE), histories)
    if name == "itemknn":
        return knn
    interest = InterestRetriever(index, histories)
    return FusionGenerator([knn, interest, *extra], [1.0, INTEREST_WEIGHT, *([1.0] * len(extra))])
