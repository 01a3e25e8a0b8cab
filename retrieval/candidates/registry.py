"""Candidate generators by name: the one place the CLI and the agent turn a name into a generator.

`GENERATORS` maps a name to a factory `(index, histories, item_ids, extra) -> CandidateGenerator`.
Third parties register under the entry-point group "driftrec.generators".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from retrieval.candidates.base import CandidateGenerator, Histories
from retrieval.candidates.fusion import FusionGenerator
from retrieval.candidates.interest import InterestRetriever
from retrieval.candidates.knn import ItemKNN, KNNGenerator
from retrieval.candidates.popularity import PopularityGenerator
from retrieval.errors import ConfigError
from retrieval.registry import Registry
from retrieval.vectors.index import VectorIndex

GeneratorFactory = Callable[[VectorIndex, Histories, Sequence[str], Sequence[CandidateGenerator]], CandidateGenerator]
GENERATORS: Registry[GeneratorFactory] = Registry("retriever", "driftrec.generators")
# RRF weight of the interest retriever beside item-kNN (weight 1), chosen on ml-100k's validation
# stage by Recall@20 from {0.1, 0.25, 0.5, 1.0}: docs/foundation.md has the table and the command.
INTEREST_WEIGHT = 0.5
# Item-kNN settings the harness tuned on ml-100k validation (docs/results.md): recency matters.
KNN_NEIGHBOURS = 50
KNN_HALF_LIFE = 1.0


def make_generator(name: str, index: VectorIndex, histories: Histories, item_ids: Sequence[str],
                   extra: Sequence[CandidateGenerator] = ()) -> CandidateGenerator:
    """A candidate generator by name.

    Args:
        name: a `GENERATORS` name: "hybrid" (RRF of item-kNN and the attention-pooled interest
            retriever), "itemknn", "interest", or a plugin's (entry-point group "driftrec.generators").
        index: item vectors (the interest retriever's index).
        histories: user → events, oldest first: what the generators may see.
        item_ids: the catalogue's item ids (item-kNN's columns).
        extra: further generators (e.g. a trained `retrieval.sequential.model.SequentialGenerator`)
            fused into "hybrid" with weight 1.

    Raises:
        ConfigError: unknown name (the message lists the valid ones), or `extra` with a retriever
            other than "hybrid".
    """
    check_fusable(name, bool(extra))
    return GENERATORS.get(name)(index, histories, item_ids, extra)


def check_fusable(name: str, has_extra: bool) -> None:
    """Fail early (before loading extra models) on an unknown name or extras for a non-hybrid retriever."""
    GENERATORS.get(name)
    if has_extra and name != "hybrid":
        raise ConfigError(f"a sequential model is fused only into the hybrid retriever, not {name!r}")


def _knn(histories: Histories, item_ids: Sequence[str]) -> KNNGenerator:
    return KNNGenerator(ItemKNN(histories, item_ids, neighbours=KNN_NEIGHBOURS, half_life=KNN_HALF_LIFE))


@GENERATORS.register("hybrid")
def _hybrid(index: VectorIndex, histories: Histories, item_ids: Sequence[str],
            extra: Sequence[CandidateGenerator] = ()) -> CandidateGenerator:
    """RRF of item-kNN (weight 1), the interest retriever (`INTEREST_WEIGHT`) and `extra` (weight 1 each)."""
    interest = InterestRetriever(index, popularity=PopularityGenerator(histories))
    generators = [_knn(histories, item_ids), interest, *extra]
    return FusionGenerator(generators, [1.0, INTEREST_WEIGHT, *([1.0] * len(extra))])


@GENERATORS.register("itemknn")
def _itemknn(index: VectorIndex, histories: Histories, item_ids: Sequence[str],
             extra: Sequence[CandidateGenerator] = ()) -> CandidateGenerator:
    return _knn(histories, item_ids)


@GENERATORS.register("interest")
def _interest(index: VectorIndex, histories: Histories, item_ids: Sequence[str],
              extra: Sequence[CandidateGenerator] = ()) -> CandidateGenerator:
    return InterestRetriever(index, popularity=PopularityGenerator(histories))
